"""Where a command's CPU goes, by process kind, counted from /proc (Linux): Ray's daemons and workers included,
which leave the command's process tree and so escape ``time`` and ``getrusage``.

    python bench/cpu_profile.py -- python -m pytest -q tests/test_upscale_hard_inputs.py
    python bench/cpu_profile.py --per-process -- python bench/steady_state.py --smoke

Prints the machine's busy CPU-seconds over the run (/proc/stat), the sum over sampled processes (every
``--interval`` s; the two agree within a few percent when the machine is otherwise quiet), and the CPU-seconds
by process kind: a Ray worker counts under its last title (``ray::MapWorker``, ``ray::IDLE``, ...), another
process under its program and first arguments. The command's own output goes to ``--log``.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (CPU ticks so far, command line) for every readable process."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # ended while listed
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        found[int(entry)] = (int(fields[11]) + int(fields[12]), cmdline or stat[stat.find("(") + 1:stat.rfind(")")])
    return found


def kind(cmdline: str) -> str:
    if cmdline.startswith("ray::"):
        return cmdline.split("(")[0].split()[0].split(".")[0]
    words = cmdline.split()
    return " ".join([words[0].rsplit("/", 1)[-1], *(w.rsplit("/", 1)[-1] for w in words[1:3])])[:60]


def busy_ticks() -> tuple[int, int]:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values) - values[3] - values[4], values[3]  # all but idle and iowait; idle


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    p.add_argument("--log", default="cpu_profile.log", help="where the command's output goes")
    p.add_argument("--top", type=int, default=25, help="process kinds listed")
    p.add_argument("--per-process", action="store_true", help="also each process: CPU-s and the titles it had")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = p.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the command after --")
    before = processes()
    busy0, idle0 = busy_ticks()
    start = time.time()
    with open(args.log, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    seen: dict[int, int] = {}  # ticks counted per pid
    titles: dict[int, list[str]] = {}
    while True:
        done = proc.poll() is not None
        for pid, (ticks, cmdline) in processes().items():
            if pid in before and pid not in seen:
                seen[pid] = before[pid][0]  # only what it uses from now on
            name = kind(cmdline)
            if ticks > seen.get(pid, 0) or pid in titles:
                titles.setdefault(pid, [])
                if name not in titles[pid]:
                    titles[pid].append(name)
            seen[pid] = max(seen.get(pid, 0), ticks)
        if done:
            break
        time.sleep(args.interval)
    wall = time.time() - start
    busy1, idle1 = busy_ticks()
    by_kind: collections.Counter = collections.Counter()
    used = {pid: seen[pid] - (before[pid][0] if pid in before else 0) for pid in titles}
    for pid, ticks in used.items():
        by_kind[titles[pid][-1]] += ticks
    print(f"exit {proc.returncode}; wall {wall:.1f} s; machine busy {(busy1 - busy0) / TICKS:.1f} CPU-s "
          f"(idle {(idle1 - idle0) / TICKS:.1f}) on {os.cpu_count()} cores; sampled processes "
          f"{sum(used.values()) / TICKS:.1f} CPU-s")
    counts = collections.Counter(titles[pid][-1] for pid, ticks in used.items() if ticks)
    for name, ticks in by_kind.most_common(args.top):
        print(f"{ticks / TICKS:8.1f} CPU-s {counts[name]:4d} x {name}")
    if args.per_process:
        for pid in sorted(used):
            if used[pid]:
                print(f"{used[pid] / TICKS:8.2f} {pid} {' > '.join(titles[pid])}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
