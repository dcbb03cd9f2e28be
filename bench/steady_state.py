"""The bucket job against its own ceiling and against ``srcore upscale``, in steady state.

Both tools run as users run them, each in its own process, over the same input folder, writing PNG (or JPEG)
outputs to a local folder. Every output's completion time (its file's mtime) gives, for each run:

- the fixed cost: time to the first output, and from the last output to the process's end (start-up, planning,
  the report, shutdown);
- the steady-state rate: outputs per second between the 10th and the 90th percentile of completion times.

The ceiling is measured in the same run, with the model and codecs the job uses, and no Ray:

- engine alone: the network over the decoded images, as the job's actors batch them;
- codec capacity: decoding the inputs and encoding the outputs with every CPU of the node (one process per
  CPU); with ``--codecs auto`` on a GPU, JPEG decoding and encoding run on the GPU and count on its side;
- ceiling: on a CPU node the model and the codecs share the cores, so it is every core decoding, upscaling
  and encoding in turn (one process per core); on a GPU node it is the lower of the GPU's rate (engine plus
  its codecs) and the CPUs' codec capacity.

Efficiency is the job's steady state over the ceiling. The job's report rows give each stage's busy share.
Where the bytes go: what crosses Ray's object store per image in the job's layout.

    python bench/steady_state.py                                          # CPU: BSD200 crops of 96 px, compact
    python bench/steady_state.py --model ../shared/weights/realesr-animevideov3.pth --crop 128
    python bench/steady_state.py --synthetic 256 --count 60000 --format jpg --tools job --delete-outputs
                                                                          # GPU host: >= 60 s of steady state
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("SRCORE_SHARED", ROOT.parent / "shared"))


# --------------------------------------------------------------------------- inputs


def make_inputs(folder: Path, args) -> list[Path]:
    """``args.count`` inputs: crops of real photos (``--images-from``), or synthetic images (``--synthetic``);
    at most ``--distinct`` distinct files, the rest hard links to them (disk space on a GPU host)."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".jpg" if args.input_format == "jpg" else ".png"
    distinct = []
    if args.synthetic:
        sys.path.insert(0, str(ROOT / "bench"))
        from inference import synthetic_images

        distinct = [Image.fromarray(p) for p in synthetic_images(min(args.count, args.distinct), args.synthetic)]
    else:
        sources = sorted(p for p in Path(args.images_from).iterdir() if p.suffix.lower() in (".png", ".jpg"))
        if not sources:
            raise SystemExit(f"no PNG or JPEG images in {args.images_from}")
        for i in range(min(args.count, args.distinct)):
            im = Image.open(sources[i % len(sources)]).convert("RGB")
            k = i // len(sources)  # a later round crops elsewhere in the same photo
            x = (37 + 150 * k) % max(1, im.width - args.crop)
            y = (23 + 97 * k) % max(1, im.height - args.crop)
            distinct.append(im.crop((x, y, x + args.crop, y + args.crop)))
    paths = []
    for i in range(args.count):
        path = folder / f"img_{i:06d}{suffix}"
        if i < len(distinct):
            distinct[i].save(path, quality=95) if suffix == ".jpg" else distinct[i].save(path, compress_level=1)
        else:
            os.link(paths[i % len(distinct)], path)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- the two tools, timed by their outputs


class Janitor(threading.Thread):
    """Records each finished output's completion time and, with ``delete``, removes it (a GPU host's disk holds
    a few minutes of outputs at most). Temporary names (a leading dot) are left to their writer."""

    def __init__(self, folder: Path, delete: bool):
        super().__init__(daemon=True)
        self.folder, self.delete = folder, delete
        self.times: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            self.sweep()

    def sweep(self) -> None:
        for path in self.folder.rglob("*"):
            if "_reports" in path.parts or path.name.startswith(".") or not path.is_file():
                continue
            key = str(path)
            if key not in self.times:
                try:
                    self.times[key] = path.stat().st_mtime_ns
                except FileNotFoundError:
                    continue
                if self.delete:
                    path.unlink(missing_ok=True)


def run_tool(tool: str, inputs: Path, output: Path, args) -> dict:
    """One run of ``tool`` (cli or job) as a subprocess: wall time, and completion times from the outputs."""
    engine = ["--model", args.model, "--format", args.format, "--codecs", args.codecs]
    if args.repo != ROOT:  # an older checkout may lack the newer engine flags
        engine = [flag for flag in engine if flag not in ("--codecs", args.codecs)]
    if tool == "cli":
        command = [sys.executable, "-m", "srcore.cli", "upscale", str(inputs), "-o", str(output), *engine]
    else:
        command = [sys.executable, str(args.repo / "jobs" / "upscale_bucket.py"), "--input", str(inputs), "--output",
                   str(output), "--no-progress", "--previews", "0", *engine, *args.job_args]
    janitor = Janitor(output, args.delete_outputs)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(args.repo), os.environ.get("PYTHONPATH")])))
    start_ns = time.time_ns()
    janitor.start()
    result = subprocess.run(command, cwd=args.repo, env=env, capture_output=True, text=True)
    wall = (time.time_ns() - start_ns) / 1e9
    janitor.stop.set()
    janitor.join()
    janitor.sweep()
    if result.returncode != 0:
        raise SystemExit(f"{tool} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    done = np.sort((np.array(list(janitor.times.values()), np.int64) - start_ns) / 1e9)
    n = len(done)
    lo, hi = done[int(0.1 * (n - 1))], done[int(0.9 * (n - 1))]
    rate = (int(0.9 * (n - 1)) - int(0.1 * (n - 1))) / max(hi - lo, 1e-9)
    figures = {"tool": tool, "images": n, "wall_s": round(wall, 2), "first_output_s": round(float(done[0]), 2),
               "after_last_s": round(wall - float(done[-1]), 2), "steady_images_per_s": round(rate, 2),
               "fixed_s": round(wall - n / rate, 2), "command": " ".join(command)}
    if tool == "job":
        figures.update(job_stages(output, result.stdout, float(hi - lo), n))
    return figures


def job_stages(output: Path, stdout: str, steady_s: float, n: int) -> dict:
    """The job's layout line, and per-stage seconds from its report rows."""
    import pyarrow.parquet as pq

    layout = next((line.removeprefix("[srcore] ") for line in stdout.splitlines()
                   if " to upscale on " in line or " to decode and upscale on " in line), "")
    rows = pq.read_table(next((output / "_reports").glob("*/rows"))).to_pylist()
    stages = {s: sum(r[f"{s}_s"] or 0 for r in rows) for s in ("read", "decode", "upscale", "encode", "write",
                                                                 "check")}
    per_image = {s: round(1e3 * v / max(1, n), 2) for s, v in stages.items()}
    first = rows[0] if rows else {}
    w, h, ow, oh = (first.get(k) or 0 for k in ("input_width", "input_height", "output_width", "output_height"))
    return {"layout": layout, "stage_ms_per_image": per_image, "input_px": [w, h], "output_px": [ow, oh],
            "devices": sorted({r["device"] for r in rows if r["device"]})}


# --------------------------------------------------------------------------- the ceiling, without Ray


def _capacity_worker(task: dict) -> dict:
    """One process's share: (phase -> (start, end, images)). Phases: engine, codecs, all (decode + upscale +
    encode in turn). Starts each phase at the barrier, so the processes' work overlaps."""
    import torch

    from srcore.imageio import decode
    from srcore.options import EngineOptions, OutputOptions
    from srcore.provenance import Provenance
    from srcore.upscale import encode_output
    from srcore.weights import load_upscaling_model

    torch.set_num_threads(task["threads"])
    model, _ = load_upscaling_model(task["model"], None)
    upscaler = EngineOptions(codecs=task["codecs"]).build(model, task["device"])
    datas = [Path(p).read_bytes() for p in task["paths"]]
    pictures = [decode(d, "x", jpeg_pixels=upscaler.jpeg_pixels) for d in datas]
    options, provenance = OutputOptions(format=task["format"]), Provenance("bench", upscaler.scale)
    fmt = {"png": "PNG", "jpg": "JPEG"}[task["format"]]
    per_call = task["per_call"]
    if {"engine", "all"} & set(task["phases"]):
        outputs = upscaler.upscale_images([p.pixels for p in pictures[:per_call]])  # warm-up
        outputs = (outputs * (len(pictures) // len(outputs) + 1))[: len(pictures)]
    else:  # codecs only (CPU processes beside a GPU): outputs of the right size without running the model
        s = upscaler.scale
        outputs = [cv2.resize(p.pixels, (p.size[0] * s, p.size[1] * s), interpolation=cv2.INTER_CUBIC)
                   for p in pictures]
    phases = {}

    def engine():
        for i in range(0, len(pictures), per_call):
            upscaler.upscale_images([p.pixels for p in pictures[i : i + per_call]])
        if upscaler.device.type == "cuda":
            torch.cuda.synchronize()

    def codecs():
        for data, picture, out in zip(datas, pictures, outputs, strict=True):
            decode(data, "x", jpeg_pixels=upscaler.jpeg_pixels)
            encode_output(picture, out, fmt, options, provenance, upscaler.codec_device)

    def everything():
        for i in range(0, len(pictures), per_call):
            batch = [decode(d, "x", jpeg_pixels=upscaler.jpeg_pixels) for d in datas[i : i + per_call]]
            for picture, out in zip(batch, upscaler.upscale_images([p.pixels for p in batch]), strict=True):
                encode_output(picture, out, fmt, options, provenance, upscaler.codec_device)

    for _ in range(task["rounds"]):  # rounds interleaved, the best kept: this machine's speed drifts
        for name, work in (("engine", engine), ("codecs", codecs), ("all", everything)):
            if name not in task["phases"]:
                continue
            task["barrier"].wait()
            start = time.perf_counter()
            work()
            phases.setdefault(name, []).append((start, time.perf_counter(), len(pictures)))
    return phases


def capacity(paths: list[Path], args, processes: int, device: str, phases: tuple[str, ...], codecs: str) -> dict:
    """Images/s per phase with ``processes`` processes (1 torch thread each on CPUs) over ``paths``."""
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(processes)
        shares = [[str(p) for p in paths[i::processes]] for i in range(processes)]
        tasks = [{"model": args.model, "device": device, "threads": 1 if device == "cpu" else 4, "paths": share,
                  "format": args.format, "per_call": args.per_call, "barrier": barrier, "phases": phases,
                  "codecs": codecs, "rounds": args.rounds} for share in shares]
        with ctx.Pool(processes) as pool:
            results = pool.map(_capacity_worker, tasks)
    out = {}
    for name in phases:
        rates = []
        for k in range(args.rounds):
            start = min(r[name][k][0] for r in results)
            end = max(r[name][k][1] for r in results)
            rates.append(sum(r[name][k][2] for r in results) / (end - start))
        out[name] = round(max(rates), 2)
    return out


def ceiling(paths: list[Path], args) -> dict:
    import torch

    cpus = os.cpu_count() or 1
    sample = paths[: args.ceiling_images]
    if not torch.cuda.is_available() or args.device == "cpu":
        rates = capacity(sample, args, cpus, "cpu", ("engine", "codecs", "all"), "cpu")
        return {"where": f"cpu, {cpus} processes x 1 thread", "engine_images_per_s": rates["engine"],
                "codec_images_per_s": rates["codecs"], "ceiling_images_per_s": rates["all"],
                "rule": "every core decodes, upscales and encodes in turn (they share the cores)"}
    gpu_codecs = args.codecs == "auto" and "jpg" in (args.format, args.input_format)
    gpu = capacity(sample, args, 1, "cuda", ("engine", "codecs") if gpu_codecs else ("engine",), args.codecs)
    # the CPUs' share: PNG encoding (and decoding of what the GPU does not decode), one process per CPU but
    # the one the GPU actor's Python needs
    cpu = capacity(sample, args, max(1, cpus - 1), "cpu", ("codecs",), "cpu")
    gpu_side = 1 / (1 / gpu["engine"] + (1 / gpu["codecs"] if gpu_codecs else 0))
    cpu_side = cpu["codecs"] if not (args.codecs == "auto" and args.format == "jpg"
                                     and args.input_format == "jpg") else float("inf")
    return {"where": f"{torch.cuda.get_device_name()} + {cpus - 1} CPU processes",
            "engine_images_per_s": gpu["engine"], "gpu_codec_images_per_s": gpu.get("codecs"),
            "codec_images_per_s": cpu["codecs"], "ceiling_images_per_s": round(min(gpu_side, cpu_side), 2),
            "rule": "the lower of the GPU (engine + its JPEG codecs) and the CPUs' codecs"}


def object_store_costs(paths: list[Path], args) -> dict:
    """What crosses Ray's object store per image in each layout, and what a put + get of one actor call's
    block of it costs here (a local Ray of this machine)."""
    import pyarrow as pa
    import ray

    from srcore.imageio import decode

    picture = decode(paths[0].read_bytes())
    h, w, c = picture.pixels.shape
    scale = 4
    sizes = {"manifest row": 400, "decoded pixels": h * w * c, "output pixels": h * w * c * scale * scale,
             "report row": 600}
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        costs = {}
        for name, size in sizes.items():
            block = pa.table({"b": pa.array([os.urandom(size)] * args.per_call, pa.large_binary())})
            best = float("inf")
            for _ in range(5):
                t0 = time.perf_counter()
                ray.get(ray.put(block))
                best = min(best, time.perf_counter() - t0)
            costs[name] = {"bytes_per_image": size, "put_get_ms_per_image": round(1e3 * best / args.per_call, 3)}
    finally:
        ray.shutdown()
    return {"fused": ["manifest row", "report row"],
            "split": ["manifest row", "decoded pixels (or a JPEG's bytes)", "output pixels (or a GPU JPEG's bytes)",
                      "report row"], "costs": costs}


# --------------------------------------------------------------------------- report


def markdown(figures: dict) -> str:
    c = figures["ceiling"]
    lines = [f"## Steady state: {figures['label']}", "",
             f"{figures['machine']}; {figures['count']} inputs ({figures['inputs']}), model `{figures['model']}`, "
             f"{figures['format'].upper()} outputs, local folders.", "",
             "| | steady state images/s | vs `srcore upscale` | to first output s | after last s | fixed cost s |",
             "|---|---|---|---|---|---|"]
    cli = figures["runs"].get("cli")
    for tool, r in figures["runs"].items():
        ratio = f"{r['steady_images_per_s'] / cli['steady_images_per_s']:.2f}x" if cli else "-"
        name = "`srcore upscale` (one process)" if tool == "cli" else "`jobs/upscale_bucket.py`"
        lines.append(f"| {name} | {r['steady_images_per_s']} | {ratio} | {r['first_output_s']} | "
                     f"{r['after_last_s']} | {r['fixed_s']} |")
    job = figures["runs"].get("job")
    lines += ["", f"Ceiling ({c['where']}; {c['rule']}): engine alone {c['engine_images_per_s']} images/s, codecs "
              f"{c['codec_images_per_s']} images/s" + (f", GPU codecs {c['gpu_codec_images_per_s']} images/s"
                                                         if c.get("gpu_codec_images_per_s") else "")
              + f" -> **ceiling {c['ceiling_images_per_s']} images/s**."]
    if job:
        eff = job["steady_images_per_s"] / c["ceiling_images_per_s"]
        lines += ["", f"Job: {job['layout']}. **Efficiency {eff:.0%}** of the ceiling. Devices: "
                  f"{', '.join(job['devices'])}.", "", "| stage | ms per image (summed over workers) |", "|---|---|"]
        lines += [f"| {s} | {v} |" for s, v in job["stage_ms_per_image"].items()]
    if "object_store" in figures:
        o = figures["object_store"]
        lines += ["", "Object store crossings per image (put + get of one actor call's block, this machine):", "",
                  "| what | bytes per image | ms per image |", "|---|---|---|"]
        lines += [f"| {k} | {v['bytes_per_image']} | {v['put_get_ms_per_image']} |" for k, v in o["costs"].items()]
        lines += ["", f"Fused layout: {', '.join(o['fused'])}. Split layout: {', '.join(o['split'])}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images-from", default=str(SHARED / "datasets" / "BSD200" / "HR"),
                   help="photos to crop the inputs from (default: the shared BSD200)")
    p.add_argument("--crop", type=int, default=96, help="input side in pixels")
    p.add_argument("--synthetic", type=int, help="synthetic inputs of this side instead of crops")
    p.add_argument("--count", type=int, default=600, help="inputs per run")
    p.add_argument("--distinct", type=int, default=2000, help="distinct input files at most (the rest are links)")
    p.add_argument("--input-format", choices=["png", "jpg"], default="png")
    p.add_argument("--format", choices=["png", "jpg"], default="png", help="output format")
    p.add_argument("--model", default="srcore-compact-x4")
    p.add_argument("--codecs", choices=["auto", "cpu"], default="auto", help="the engine's --codecs")
    p.add_argument("--tools", default="cli,job", help="comma-separated: cli, job")
    p.add_argument("--job-args", default="", help="extra arguments for the job, as one string")
    p.add_argument("--per-call", type=int, default=None, help="images per engine call (default: the job's)")
    p.add_argument("--ceiling-images", type=int, default=256, help="inputs the ceiling is measured on")
    p.add_argument("--rounds", type=int, default=2, help="ceiling: rounds of each phase, the best kept")
    p.add_argument("--repo", type=Path, default=ROOT, help="run the two tools from this checkout (a before/after)")
    p.add_argument("--device", default=None, help="cpu to measure a CPU ceiling on a GPU host")
    p.add_argument("--delete-outputs", action="store_true", help="delete outputs as they are recorded (disk)")
    p.add_argument("--label", default=None, help="the table's title")
    p.add_argument("--json-out", help="also write every figure to this JSON file")
    p.add_argument("--markdown-out", help="also write the table to this file")
    p.add_argument("--dry-run", action="store_true", help="check the arguments and the model, exit")
    p.add_argument("--smoke", action="store_true", help="24 synthetic 32 px inputs through both tools, the "
                   "figures checked (make test)")
    args = p.parse_args()
    if args.smoke:
        args.synthetic, args.count, args.ceiling_images, args.rounds, args.tools = 32, 24, 8, 1, "cli,job"
    args.job_args = args.job_args.split()
    if Path(args.model).exists():  # a weights file: the tools may run from another checkout (--repo)
        args.model = str(Path(args.model).resolve())
    import torch

    from pipelines.upscale.run import CPU_IMAGES_PER_CALL, GPU_IMAGES_PER_CALL
    from srcore.weights import load_upscaling_model

    gpu = torch.cuda.is_available() and args.device != "cpu"
    args.per_call = args.per_call or (GPU_IMAGES_PER_CALL if gpu else CPU_IMAGES_PER_CALL)
    load_upscaling_model(args.model, None)
    if args.dry_run:
        print(json.dumps({"dry_run": True, "model": args.model, "count": args.count, "tools": args.tools}))
        return
    with tempfile.TemporaryDirectory(prefix="srcore-steady-") as tmp:
        paths = make_inputs(Path(tmp, "in"), args)
        runs = {}
        for tool in args.tools.split(","):
            runs[tool] = run_tool(tool, Path(tmp, "in"), Path(tmp, f"out-{tool}"), args)
            print(json.dumps(runs[tool]), flush=True)
        figures = {
            "label": args.label or f"{Path(args.model).stem} at {args.synthetic or args.crop} px"
                     + (f" ({args.repo.name})" if args.repo != ROOT else ""),
            "machine": (torch.cuda.get_device_name() if gpu else "CPU") + f", {os.cpu_count()} cores",
            "count": args.count, "model": args.model, "format": args.format,
            "inputs": (f"synthetic {args.synthetic} px" if args.synthetic else
                       f"{args.crop} px crops of {Path(args.images_from).parent.name}") + f" {args.input_format}",
            "runs": runs, "ceiling": ceiling(paths, args), "object_store": object_store_costs(paths, args)}
    text = markdown(figures)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(figures, indent=1))
    if args.smoke:
        from smoke import check_positive

        check_positive(list(figures["runs"].values()), "steady_images_per_s", "first_output_s")
        check_positive([figures["ceiling"]], "engine_images_per_s", "codec_images_per_s", "ceiling_images_per_s")
    if args.markdown_out:
        Path(args.markdown_out).write_text(text)


if __name__ == "__main__":
    main()
