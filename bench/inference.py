"""Throughput and peak memory: srcore's Upscaler against a plain reference loop (Real-ESRGAN's path).

The reference runs each image whole, fp32, one at a time; the Upscaler tiles, batches and (on CUDA)
runs in bf16/fp16. Both run the same model on the same images. Prints output megapixels per second,
peak host RSS growth and, on CUDA, peak device memory, and their ratio.

    python bench/inference.py --model ../shared/weights/realesr-animevideov3.pth --images 8 --size 128
    python bench/inference.py --model ../shared/weights/RealESRGAN_x4plus.pth --device cuda --tiles 256,512,1024
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

import srcore
from srcore.inference import Upscaler


def synthetic_images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth, textured RGB images (SR networks do data-independent work, but keep them image-like)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        f = rng.uniform(2, 12, 3)
        img = np.dstack([0.5 + 0.4 * np.sin(2 * np.pi * (f[c] * xx + f[(c + 1) % 3] * yy)) for c in range(3)])
        out.append(np.clip(img * 255 + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8))
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reference_loop(model: torch.nn.Module, images: list[np.ndarray], device: torch.device) -> None:
    model = model.to(device).float().eval()
    for img in images:
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255).to(device)
        with torch.no_grad():
            y = model(x).clamp(0, 1)
        (y[0].permute(1, 2, 0) * 255).round().byte().cpu().numpy()


def run_config(config: dict) -> dict:
    """One measurement, in this (fresh) process: peak RSS is a per-process high-water mark."""
    device = torch.device(config["device"])
    model = srcore.load_model(config["model"])
    scale = model.descriptor.scale
    images = synthetic_images(config["images"], config["size"])
    if config["kind"] == "reference":
        def fn(ims):
            reference_loop(model, ims, device)
    else:
        up = Upscaler(model, device=device, precision=config["precision"], tile=config["tile"],
                      batch_size=config["batch_size"])
        fn = up.upscale_arrays
    small = synthetic_images(1, 64)
    fn(small)  # warm-up (cudnn autotune, allocator) on a small image, so the peak below is the real one
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    for _ in range(config["repeats"]):
        fn(images)
    sync(device)
    seconds = (time.perf_counter() - start) / config["repeats"]
    out_mp = sum(im.shape[0] * im.shape[1] for im in images) * scale**2 / 1e6
    result = {"name": config["name"], "seconds": round(seconds, 3), "output_MP_per_s": round(out_mp / seconds, 3),
              "peak_rss_MB": round(peak_rss_mb(), 1), "rss_growth_MB": round(peak_rss_mb() - rss_before, 1)}
    if device.type == "cuda":
        result["peak_device_MB"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="weights file or registered name")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--size", type=int, default=128, help="square input size")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--tiles", default="512", help="comma-separated tile sizes for the Upscaler")
    p.add_argument("--precisions", default=None, help="default: fp32 on CPU; fp32,bf16,fp16 on CUDA")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(run_config(json.loads(args.child))))
        return

    common = dict(model=args.model, device=args.device, images=args.images, size=args.size, repeats=args.repeats)
    configs = [dict(common, kind="reference", name="reference (whole image, fp32, one at a time)")]
    precisions = (args.precisions or ("fp32,bf16,fp16" if args.device.startswith("cuda") else "fp32")).split(",")
    for precision in precisions:
        for tile in (int(t) for t in args.tiles.split(",")):
            configs.append(dict(common, kind="upscaler", precision=precision, tile=tile, batch_size=args.batch_size,
                                name=f"srcore Upscaler ({precision}, tile {tile}, batch {args.batch_size})"))
    print(f"model {args.model}, {args.images} images of {args.size}x{args.size}, device {args.device}")
    base = None
    for config in configs:
        out = subprocess.run([sys.executable, __file__, "--model", args.model, "--child", json.dumps(config)],
                             capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        base = base or row["output_MP_per_s"]
        row["speedup_vs_reference"] = round(row["output_MP_per_s"] / base, 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
