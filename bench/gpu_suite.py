"""The GPU suite's steps and its summary: correctness, engine, pipeline and training benches, in one run.

Run it through ``bench/gpu.sh`` (which unpacks the kit first). It writes four files into ``--out`` (the
device tool brings back at most eight): ``summary.md``, the same as ``YYYY-MM-DD-<gpu>.md`` (the name it is
committed under in ``bench/results/``), ``results.json`` (machine, steps, every figure) and ``logs.txt`` (every
step's output). Each step's own JSON and log go to ``--work``. All four are rewritten after every step, and
every step's time limit is cut to what is left of ``--budget-s``, so a run fits the device tool's 10-minute
command limit and a run cut short still leaves what it measured.

Modes: ``gpu`` (the real run, about 8 minutes on an H100), ``cpu-dry-run`` (every step's exact command with
``--dry-run``: the entry points exist and accept their flags; seconds), ``cpu-smoke`` (every step for real on
the CPU at toy sizes: the whole chain, summary included, works; about two minutes on two cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
BF16_DATASHEET_TFLOPS = 790.0  # H100/H200 dense bf16; the suite also measures it (env.json)
X4PLUS = "fresh:realesrgan-x4plus"


@dataclass
class Step:
    name: str
    script: str
    args: list[str]
    timeout_s: int
    what: str


def steps(mode: str, weights: Path, fixtures: Path) -> list[Step]:
    """The suite's steps with their exact arguments for ``mode``, in the order of what issues need most."""
    anime = weights / "realesr-animevideov3.pth"
    anime_spec = str(anime) if anime.exists() else "fresh:realesr-animevideov3"
    x4plus = weights / "RealESRGAN_x4plus.pth"
    if mode == "cpu-smoke":
        return [
            Step("correctness", "gpu_correctness.py", ["--device", "cpu", "--precisions", "bf16",
                 "--weights-dir", str(weights), "--fixtures-dir", str(fixtures)], 300, "bf16 vs fp32 on CPU"),
            Step("engine", "inference.py", ["--device", "cpu", "--models", f"srcore-compact-x4,{anime_spec}",
                 "--sizes", "32,64", "--images", "2", "--min-seconds", "0.05", "--no-isolate"], 300, "toy sizes"),
            Step("pipeline-compact", "steady_state.py", ["--synthetic", "32", "--count", "24", "--tools", "job",
                 "--ceiling-images", "8", "--input-format", "jpg", "--format", "jpg"], 300, "24 images"),
            Step("gpu-tests", "gpu_tests.py", [], 300, "the GPU tests (skipped without one) and their CPU halves"),
            Step("encoders", "encoders.py", ["--size", "256", "--rounds", "1"], 120, "PNG and JPEG encoders"),
            Step("train", "train.py", ["--workers", "1", "--generators", "srcore-compact-x4", "--stages", "psnr",
                 "--patch", "32", "--batch", "2", "--iterations", "6"], 300, "6 iterations"),
        ]
    gpu = [
        Step("correctness", "gpu_correctness.py", ["--device", "cuda", "--precisions", "bf16,fp16,fp32",
             "--weights-dir", str(weights), "--fixtures-dir", str(fixtures)], 90,
             "official weights, CUDA bf16/fp16/fp32 vs CPU fp32"),
        Step("gpu-tests", "gpu_tests.py", [], 120, "nvJPEG parity, the compiled engine against eager"),
        Step("engine", "inference.py", ["--device", "cuda", "--models",
             f"{X4PLUS},{anime_spec},srcore-compact-x4,fresh:swinir-s-x4", "--sizes", "256,512,1024",
             "--precisions", "bf16,fp16,fp32", "--compile", "graphs", "--compile-precisions", "fp16,bf16",
             "--images", "16", "--min-seconds", "0.6"], 140,
             "Upscaler vs plain fp16 loop, 4 models x 3 sizes x 3 precisions, eager and CUDA graphs"),
        Step("pipeline-x4plus", "steady_state.py", ["--synthetic", "256", "--count", "5000", "--tools", "job",
             "--model", str(x4plus), "--format", "png", "--delete-outputs", "--ceiling-images", "192"], 140,
             "the bucket job's steady state against its ceiling: x4plus, PNG outputs (>= 60 s of steady state)"),
        Step("pipeline-compact", "steady_state.py", ["--synthetic", "256", "--count", "60000", "--tools", "job",
             "--input-format", "jpg", "--format", "jpg", "--delete-outputs", "--ceiling-images", "1024"], 140,
             "the bucket job's steady state against its ceiling: the compact model, JPEG in and out"),
        Step("engine-inductor", "inference.py", ["--device", "cuda", "--models", f"{X4PLUS},srcore-compact-x4",
             "--sizes", "256", "--precisions", "fp16", "--compile", "inductor,auto", "--images", "16",
             "--min-seconds", "0.6"], 300, "torch.compile (Inductor) and auto against eager, fp16, 256 px"),
        Step("encoders", "encoders.py", ["--size", "4096"], 40,
             "PNG and JPEG encoders on a 16 MP output: CPU (Pillow, OpenCV, torchvision) and CUDA nvjpeg"),
        Step("train", "train.py", ["--gpu", "--workers", "1", "--generators", "realesrgan-x4plus,srcore-compact-x4",
             "--stages", "psnr,gan", "--patch", "256", "--batch", "8", "--iterations", "40"], 240,
             "Ray Train, 1 GPU worker, bf16 autocast"),
    ]
    # the job takes real weights only; a kit built with --no-x4plus leaves that step out
    return [step for step in gpu if step.name != "pipeline-x4plus" or x4plus.exists()]


def environment(kit: Path) -> dict:
    """Machine, versions and the kit's manifest, for the summary."""
    env = {"date": dt.date.today().isoformat(), "python": platform.python_version(), "cpus": os.cpu_count(),
           "commit": os.environ.get("SRCORE_COMMIT") or _git("rev-parse", "--short", "HEAD") or "unknown"}
    for module in ("torch", "torchvision", "numpy", "pyarrow", "ray", "PIL", "cv2"):
        try:
            env[module] = __import__(module).__version__
        except Exception as exc:  # the summary says what is missing instead of failing the suite
            env[module] = f"missing ({type(exc).__name__})"
    import torch

    env["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_GiB=round(props.total_memory / 2**30, 1),
                   sms=props.multi_processor_count, cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                              "--format=csv,noheader"], capture_output=True, text=True)
        env["nvidia_smi"] = out.stdout.strip() or out.stderr.strip()
    manifest = kit / "MANIFEST.json"
    if manifest.exists():
        env["kit"] = {k: v for k, v in json.loads(manifest.read_text()).items() if k != "files"}
    return env


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return None


def run_step(step: Step, mode: str, out: Path, timeout_s: float) -> dict:
    """Run one bench in its own process (a hang or crash ends only this step), its JSON into ``out``."""
    argv = [sys.executable, str(BENCH / step.script), *step.args]
    argv += ["--dry-run"] if mode == "cpu-dry-run" else ["--json-out", str(out / f"{step.name}.json")]
    print(f"\n== {step.name}: {step.what}\n$ {' '.join(argv[1:])}", flush=True)
    start = time.perf_counter()
    with open(out / f"{step.name}.log", "w") as log:
        try:
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=timeout_s, cwd=ROOT)
            output, status = proc.stdout, "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired as exc:
            output = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            status = f"timed out after {timeout_s:.0f} s"
        log.write(output)
    seconds = round(time.perf_counter() - start, 1)
    tail = "\n".join(output.strip().splitlines()[-(3 if status == "ok" else 25):])
    print(f"{tail}\n-- {step.name}: {status} in {seconds} s", flush=True)
    return {"step": step.name, "status": status, "seconds": seconds, "command": " ".join(argv[1:]),
            "tail": "" if status == "ok" else tail}


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _load(out: Path, name: str):
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def gpu_slug(env: dict) -> str:
    name = env.get("gpu") or ("cpu" if not env.get("cuda_available") else "gpu")
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def render(env: dict, results: list[dict], out: Path, mode: str, command: str) -> str:
    """The markdown summary: machine, each step's figures, and the steps' statuses."""
    lines = [f"# srcore GPU suite: {env['date']}, {env.get('gpu', 'no GPU')} ({mode})", "",
             f"Command: `{command}` at commit `{env['commit']}`.", "", "## Machine", "",
             "| | |", "|---|---|"]
    for key in ("gpu", "gpu_memory_GiB", "sms", "nvidia_smi", "cpus", "python", "torch", "cuda", "cudnn",
                "torchvision", "numpy", "pyarrow", "ray", "PIL", "cv2"):
        if key in env:
            lines.append(f"| {key} | {env[key]} |")
    lines += _correctness(_load(out, "correctness")) + _engine(_load(out, "engine"))
    lines += _encoders(_load(out, "encoders"))
    lines += _engine(_load(out, "engine-inductor"), "Engine, torch.compile")
    for step in ("pipeline-x4plus", "pipeline-compact"):
        lines += _steady_state(step, _load(out, step))
    lines += _gpu_tests(_load(out, "gpu-tests")) + _train(_load(out, "train"))
    lines += ["", "## Steps", "", "| step | status | seconds |", "|---|---|---|"]
    lines += [f"| {r['step']} | {r['status']} | {r['seconds']} |" for r in results]
    for r in results:
        if r["tail"]:
            lines += ["", f"`{r['step']}` ended with:", "", "```", r["tail"], "```"]
    return "\n".join(lines) + "\n"


def _correctness(rows) -> list[str]:
    if not rows:
        return []
    lines = ["", "## Correctness (8-bit levels; official weights)", "",
             "| weights | check | image | max | mean | share > 1 level |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['weights']} | {r['check']} | | failed: {r['error'][:160]} | | |")
        elif "max_abs" in r:
            lines.append(f"| {r['weights']} | {r['check']} | fixture | max abs {r['max_abs']:.2e} | | |")
        else:
            lines.append(f"| {r['weights']} | {r['check']} | {r['image']} | {r['max_levels']} | "
                         f"{r['mean_levels']} | {r['share_over_1_level']:.4%} |")
    return lines


def _engine(data, title: str = "Engine") -> list[str]:
    if not data:
        return []
    ctx, rows = data["context"], data["rows"]
    peak = ctx.get("bf16_peak_tflops")
    lines = ["", f"## {title} (`bench/inference.py`)", "",
             f"Output megapixels per second; the plain loop is Real-ESRGAN's (whole image, one at a time, "
             f"{'fp16' if ctx['device'] != 'cpu' else 'fp32'})."
             + (f" Roofline: bf16 dense, measured {peak} TFLOP/s by an 8192^3 matmul (datasheet "
                f"{BF16_DATASHEET_TFLOPS:g})." if peak else "") + " Forward MFLOP per input pixel: "
             + ", ".join(f"{k} {v}" for k, v in ctx["mflop_per_input_px"].items()) + ".", ""]
    best = _headline(rows, X4PLUS)
    if best:
        lines += [f"**x4plus headline:** best srcore {best['output_MP_per_s']} output MP/s ({best['path']}, "
                  f"{best['size']} px) = {best['speedup_vs_plain']}x the plain fp16 loop, "
                  f"{best.get('roofline_fraction', 0):.1%} of the bf16 roofline.", ""]
    lines += ["| model | size | path | output MP/s | vs plain | TFLOP/s | roofline | peak memory MB |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {Path(r['model']).name} | {r['size']} | {r['path']} | failed: {r['error'][:160]} "
                         "| | | | |")
            continue
        memory = r.get("peak_device_MB", r.get("peak_rss_MB", ""))
        roof = f"{r['roofline_fraction']:.1%}" if "roofline_fraction" in r else ""
        lines.append(f"| {Path(r['model']).name} | {r['size']} | {r['path']} | {r['output_MP_per_s']} | "
                     f"{r.get('speedup_vs_plain', '?')}x | {r.get('tflops', '')} | {roof} | {memory} |")
    return lines


def _headline(rows: list[dict], model: str) -> dict | None:
    mine = [r for r in rows if r["model"] == model and r["kind"] == "upscaler" and "speedup_vs_plain" in r]
    return max(mine, key=lambda r: r["output_MP_per_s"]) if mine else None


def _encoders(data) -> list[str]:
    if not data:
        return []
    lines = ["", f"## Encoders (`bench/encoders.py`, {data['size']}x{data['size']} RGB)", "",
             "| encoder | MP/s | ms | MB |", "|---|---|---|---|"]
    return lines + [f"| {r['encoder']} | {r['MP_per_s']} | {r['ms']} | {r['MB']} |" for r in data["rows"]]


def _steady_state(name: str, f) -> list[str]:
    """A steady-state step's table (``bench/steady_state.py`` makes it)."""
    if not f:
        return []
    sys.path.insert(0, str(BENCH))
    from steady_state import markdown

    return ["", *markdown(f).replace("## Steady state:", f"## {name} (`bench/steady_state.py`):").splitlines()]


def _gpu_tests(data) -> list[str]:
    if not data:
        return []
    lines = ["", "## GPU tests (`bench/gpu_tests.py`: tests/test_gpu_paths.py)", "", "| test | outcome | s | message |",
             "|---|---|---|---|"]
    return lines + [f"| {c['test']} | {c['outcome']} | {c['seconds']:.1f} | {c['message'][:160]} |"
                    for c in data["cases"]]


def _train(rows) -> list[str]:
    if not rows:
        return []
    lines = ["", "## Training (`bench/train.py`, Ray Train)", "",
             "| generator | stage | workers | patch | batch/worker | bf16 | it/s | samples/s |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['generator']} | {r['stage']} | {r['workers']} | {r['patch']} | {r['batch_per_worker']} | "
              f"{'yes' if r['bf16_autocast'] else 'no'} | {r['it_per_s']} | {r['samples_per_s']} |" for r in rows]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["gpu", "cpu-dry-run", "cpu-smoke"], default="gpu")
    p.add_argument("--kit", type=Path, default=ROOT / ".device-kit")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    p.add_argument("--work", type=Path, default=Path("/tmp/srcore-gpu-suite"), help="each step's JSON and log")
    p.add_argument("--budget-s", type=float, default=540, help="the whole suite's time limit (steps are cut)")
    p.add_argument("--only", default=None, help="comma-separated steps to run (default: all)")
    p.add_argument("--command", default="bash bench/gpu.sh", help=argparse.SUPPRESS)
    args = p.parse_args()
    shared = Path(os.environ.get("SRCORE_SHARED", ROOT.parent / "shared"))
    weights = args.kit / "weights" if (args.kit / "weights").is_dir() else shared / "weights"
    fixtures = args.kit / "fixtures" if (args.kit / "fixtures").is_dir() else shared / "fixtures"
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    deadline = time.monotonic() + args.budget_s
    env = environment(args.kit)
    if args.mode == "gpu" and not env["cuda_available"]:
        raise SystemExit("no CUDA device: run with --cpu-dry-run or --cpu-smoke on a machine without a GPU")
    print(json.dumps(env, indent=1), flush=True)
    chosen = steps(args.mode, weights, fixtures)
    if args.only:
        unknown = set(args.only.split(",")) - {s.name for s in chosen}
        if unknown:
            raise SystemExit(f"--only: unknown steps {sorted(unknown)}; steps: {[s.name for s in chosen]}")
        chosen = [s for s in chosen if s.name in args.only.split(",")]
    results = []
    name = f"{env['date']}-{gpu_slug(env)}.md"
    for step in chosen:
        left = deadline - time.monotonic()
        if left < 20:
            results.append({"step": step.name, "status": f"not run: the {args.budget_s:g} s budget is spent",
                            "seconds": 0, "command": "", "tail": ""})
        else:
            results.append(run_step(step, args.mode, args.work, min(step.timeout_s, left)))
        summary = render(env, results, args.work, args.mode, args.command)
        (args.out / "summary.md").write_text(summary)
        (args.out / name).write_text(summary)
        figures = {r["step"]: _load(args.work, r["step"]) for r in results}
        (args.out / "results.json").write_text(json.dumps({"env": env, "steps": results, "figures": figures},
                                                          indent=1))
        (args.out / "logs.txt").write_text("".join(
            f"===== {r['step']}: {r['status']}\n$ {r['command']}\n" + _read(args.work / f"{r['step']}.log")
            for r in results))
    failed = [r["step"] for r in results if r["status"] != "ok"]
    print(f"\n{len(results) - len(failed)} of {len(results)} steps ok"
          + (f"; failed: {', '.join(failed)}" if failed else "") + f". Summary: {args.out / 'summary.md'} "
          f"(commit it as bench/results/{name})", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
