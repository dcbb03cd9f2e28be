"""The bucket job's efficiency: end-to-end images/s and megapixels/s against the model alone on the same images.

End to end is the whole job on a running Ray: listing, reading from the store, decoding on CPU tasks,
upscaling on the actor pool, encoding, writing (atomically), the LR-consistency figure and the report.
The model-only loop is ``Upscaler.upscale_pixels`` over the same images, already decoded in memory, on the
same device with the same threads as one actor. Their ratio is what the pipeline keeps of the model's speed.

    python bench/pipeline.py                                   # 48 synthetic 128x128 PNGs on a loopback S3 server
    python bench/pipeline.py --images-from ../shared/datasets/B100 --store local
    python bench/pipeline.py --images 512 --size 256 --max-actors 1   # on a GPU machine: GPU actors
"""

from __future__ import annotations

import argparse
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
    from srcore.inference import Upscaler
    from srcore.weights import load_model

    if device == "cpu":
        torch.set_num_threads(max(1, int(job.cpus_per_actor)))
    upscaler = Upscaler(load_model(job.model), device=device, precision=job.precision, tile=job.tile,
                        batch_size=job.batch_size)
    pictures = [decode(data, name).pixels for name, data in files.items()]
    upscaler.upscale_pixels(pictures[0])  # warm-up (cuDNN autotuning, allocator)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for pixels in pictures:
        upscaler.upscale_pixels(pixels)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--size", type=int, default=128, help="synthetic image side")
    p.add_argument("--images-from", help="a folder of PNG/JPEG images instead of synthetic ones")
    p.add_argument("--store", choices=["s3", "local"], default="s3", help="loopback S3 server, or a local folder")
    p.add_argument("--model", default="srcore-compact-x4")
    p.add_argument("--max-actors", type=int)
    p.add_argument("--images-per-batch", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=4)
    args = p.parse_args()

    import ray
    import torch

    from pipelines.local_s3 import local_s3_server, upload_folder
    from pipelines.upscale import UpscaleJob, run

    files = image_files(args)
    in_mp = sum(np.prod(Image.open(io.BytesIO(d)).size) for d in files.values()) / 1e6
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp, local_s3_server():
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
        job = UpscaleJob(input=source, output=target, model=args.model, max_actors=args.max_actors,
                         images_per_batch=args.images_per_batch, batch_size=args.batch_size, previews=0)
        start = time.perf_counter()
        result = run(job, progress=False)
        end_to_end = time.perf_counter() - start
        ray.shutdown()
    assert result.summary["ok"] == len(files), result.summary
    alone = model_only(job, files, device)
    out_mp = result.summary["output_megapixels"]
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
        "stage_seconds": {stage: round(sum(v or 0 for v in result.rows.column(f"{stage}_s").to_pylist()), 2)
                          for stage in ("read", "decode", "upscale", "encode", "write", "check")},
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
