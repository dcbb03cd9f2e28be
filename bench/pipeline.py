"""The bucket job's efficiency: end-to-end images/s and megapixels/s against the model alone on the same images.

End to end is the whole job on a running Ray: listing, reading from the store, decoding on CPU tasks,
upscaling on the actor pool, encoding, writing (atomically), the LR-consistency figure and the report.
The model-only loop is ``Upscaler.upscale_pixels`` over the same images, already decoded in memory, on the
same device with the same threads as one actor. Their ratio is what the pipeline keeps of the model's speed.

    python bench/pipeline.py                                   # 48 synthetic 128x128 PNGs on a loopback S3 server
    python bench/pipeline.py --images-from ../shared/datasets/B100 --store local
    python bench/pipeline.py --images 512 --size 256 --store local --json-out pipeline.json   # GPU actors

It names the bottleneck: each stage's summed seconds over the wall time and the workers that can run it at
once (decode tasks on the CPUs the actors leave free, upscaling on the actors, encode-write-check on their
threads) is its utilisation; the busiest stage limits the run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference import synthetic_images  # noqa: E402

from srcore.upscale import parse_batch  # noqa: E402


def image_files(args) -> dict[str, bytes]:
    if args.images_from:
        paths = sorted(p for p in Path(args.images_from).rglob("*") if p.suffix.lower() in (".png", ".jpg"))
        return {p.name: p.read_bytes() for p in paths[: args.images]}
    files = {}
    for i, pixels in enumerate(synthetic_images(args.images, args.size)):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        files[f"img_{i:04d}.png"] = buf.getvalue()
    return files


def model_only(job, files: dict[str, bytes], device: str) -> float:
    """Seconds for the engine alone over the decoded images, as one actor runs it."""
    import torch

    from srcore.imageio import decode
    from srcore.weights import load_model

    if device == "cpu":
        torch.set_num_threads(max(1, int(job.cpus_per_actor)))
    upscaler = job.engine.build(load_model(job.model), device)
    pictures = [decode(data, name).pixels for name, data in files.items()]
    upscaler.upscale_pixels(pictures[0])  # warm-up (cuDNN autotuning, allocator)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, len(pictures), job.images_per_batch):  # as an actor gets them: equal sizes share passes
        upscaler.upscale_many(pictures[i : i + job.images_per_batch])
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def name_bottleneck(stage_seconds: dict[str, float], wall: float, slots: dict[str, float]) -> dict:
    """Utilisation per stage group: summed seconds / (wall seconds x workers able to run it at once)."""
    groups = {"read+decode (CPU tasks)": ("read", "decode"), "upscale (actors)": ("upscale",),
              "encode+write+check (actor threads)": ("encode", "write", "check")}
    use = {name: round(sum(stage_seconds.get(s, 0) for s in stages) / (wall * slots[name]), 3)
           for name, stages in groups.items()}
    busiest = max(use, key=use.get)
    if use[busiest] < 0.5:  # small runs: Ray's start, planning and the report outweigh every stage
        busiest = f"fixed costs (start-up, listing, report): no stage busy half the run, {busiest} most"
    return {"utilisation": use, "slots": slots, "bottleneck": busiest}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--size", type=int, default=128, help="synthetic image side")
    p.add_argument("--images-from", help="a folder of PNG/JPEG images instead of synthetic ones")
    p.add_argument("--store", choices=["s3", "local"], default="s3", help="loopback S3 server, or a local folder")
    p.add_argument("--model", default="srcore-compact-x4")
    p.add_argument("--max-actors", type=int)
    p.add_argument("--images-per-batch", type=int, default=8)
    p.add_argument("--batch-size", type=parse_batch, default="auto", help="the engine's (auto: 1 on CPU)")
    p.add_argument("--json-out", help="also write the figures to this JSON file")
    p.add_argument("--dry-run", action="store_true", help="check the arguments and the model, exit")
    args = p.parse_args()
    if args.dry_run:
        from pipelines.upscale import UpscaleJob
        from srcore.upscale import EngineOptions
        from srcore.weights import load_model

        UpscaleJob(input="in", output="out", model=args.model, max_actors=args.max_actors,
                   images_per_batch=args.images_per_batch, engine=EngineOptions(batch_size=args.batch_size))
        load_model(args.model)
        print(json.dumps({"dry_run": True, "store": args.store, "model": args.model, "images": args.images}))
        return

    import ray
    import torch

    from pipelines.upscale import UpscaleJob, run
    from srcore.upscale import EngineOptions

    if args.store == "s3":
        from pipelines.local_s3 import local_s3_server, upload_folder

    files = image_files(args)
    in_mp = sum(np.prod(Image.open(io.BytesIO(d)).size) for d in files.values()) / 1e6
    device = "cuda" if torch.cuda.is_available() else "cpu"
    server = local_s3_server() if args.store == "s3" else contextlib.nullcontext()  # local needs no moto
    with tempfile.TemporaryDirectory() as tmp, server:
        folder = Path(tmp, "in")
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        if args.store == "s3":
            upload_folder(folder, "bench", "in")
            source, target = "s3://bench/in", "s3://bench/out"
        else:
            source, target = str(folder), str(Path(tmp, "out"))
        ray.init(address="local", num_cpus=max(2, os.cpu_count() or 1), include_dashboard=False,
                 log_to_driver=False)
        cpus = ray.cluster_resources().get("CPU", 1)
        job = UpscaleJob(input=source, output=target, model=args.model, max_actors=args.max_actors,
                         images_per_batch=args.images_per_batch, engine=EngineOptions(batch_size=args.batch_size),
                         previews=0)
        start = time.perf_counter()
        result = run(job, progress=False)
        end_to_end = time.perf_counter() - start
        ray.shutdown()
        # the report lives in the temporary folder: read its rows before the folder goes
        stages = {stage: round(sum(v or 0 for v in result.rows([f"{stage}_s"]).column(f"{stage}_s").to_pylist()),
                               2) for stage in ("read", "decode", "upscale", "encode", "write", "check")}
    assert result.summary["ok"] == len(files), result.summary
    alone = model_only(job, files, device)
    out_mp = result.summary["output_megapixels"]
    cpu_actors = max(1, int(cpus / 2 / job.cpus_per_actor))  # the job's default pool sizes
    actors = args.max_actors or (torch.cuda.device_count() if device == "cuda" else cpu_actors)
    slots = {"read+decode (CPU tasks)": max(1.0, cpus - actors * job.cpus_per_actor),
             "upscale (actors)": float(actors),
             "encode+write+check (actor threads)": float(min(actors * job.io_threads, cpus))}
    figures = {
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "store": args.store, "images": len(files), "input_megapixels": round(in_mp, 3),
        "output_megapixels": out_mp, "actors": result.summary["devices"],
        "pipeline_s": round(end_to_end, 2),
        "pipeline_images_per_s": round(len(files) / end_to_end, 3),
        "pipeline_output_mp_per_s": round(out_mp / end_to_end, 3),
        "model_only_s": round(alone, 2),
        "model_only_images_per_s": round(len(files) / alone, 3),
        "model_only_output_mp_per_s": round(out_mp / alone, 3),
        "efficiency": round(alone / end_to_end, 3),
        # summed over images (stages overlap: encode and write run on threads beside the next upscale)
        "stage_seconds": stages,
        **name_bottleneck(stages, end_to_end, slots),
    }
    print(json.dumps(figures, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
