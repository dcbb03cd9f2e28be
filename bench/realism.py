"""CPU seconds per image of the bundled models against RealESRGAN_x4plus, on the RealWorld inputs, side by side,
and how closely each copies x4plus (the distilled student's teacher).

Every model upscales the same images in one process, interleaved image by image (so a busy machine slows
all of them alike), through the one engine (srcore.Upscaler, fp32, PyTorch runtime, default tiling), and the
script prints seconds per image, each model's share of x4plus's time, and the PSNR of its outputs against
x4plus's outputs of the same inputs (8-bit RGB, all pixels of all images pooled).

    python bench/realism.py --images 8 --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from srcore.evaluation import list_images, read_hr  # noqa: E402
from srcore.inference import Upscaler  # noqa: E402
from srcore.weights import load_model, load_upscaling_model  # noqa: E402

SHARED = Path(os.environ.get("SRCORE_SHARED", ROOT.parent / "shared"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=8, help="the first N RealWorld images (sorted by name)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--crop", type=int, default=None, help="upscale only the central crop of this side")
    p.add_argument("--smoke", action="store_true", help="2 images, 48 px central crops, the figures checked "
                   "(make test)")
    args = p.parse_args()
    if args.smoke:
        args.images, args.crop = 2, 48
    torch.set_num_threads(args.threads)
    models = {
        "srcore-compact-x4": load_model("srcore-compact-x4"),
        "srcore-compact-x4-gan@realism=0.5": load_upscaling_model("srcore-compact-x4-gan", 0.5)[0],
        "srcore-compact-x4-gan": load_model("srcore-compact-x4-gan"),
        "srcore-distill-x4": load_model("srcore-distill-x4"),
        "RealESRGAN_x4plus": load_model(SHARED / "weights" / "RealESRGAN_x4plus.pth"),
    }
    engines = {name: Upscaler(m, device="cpu", precision="fp32", runtime="torch") for name, m in models.items()}
    images = [read_hr(p) for p in list_images(SHARED / "datasets" / "RealWorld")[: args.images]]
    if args.crop:
        images = [i[max(0, (i.shape[0] - args.crop) // 2):][:args.crop, max(0, (i.shape[1] - args.crop) // 2):]
                  [:, :args.crop] for i in images]
    seconds = {name: 0.0 for name in engines}
    squared = {name: 0.0 for name in engines}  # summed squared differences from x4plus's outputs
    compared = 0
    for engine in engines.values():  # warm-up
        engine.upscale_image(np.zeros((32, 32, 3), np.uint8))
    for _ in range(args.repeats):
        for image in images:
            pixels = image[..., None] if image.ndim == 2 else image
            outputs = {}
            for name, engine in engines.items():
                start = time.perf_counter()
                outputs[name] = engine.upscale_image(pixels)
                seconds[name] += time.perf_counter() - start
            teacher = outputs["RealESRGAN_x4plus"].astype(np.float64)
            for name, out in outputs.items():
                squared[name] += float(((out.astype(np.float64) - teacher) ** 2).sum())
            compared += teacher.size
    count = len(images) * args.repeats
    megapixels = sum(i.shape[0] * i.shape[1] for i in images) / 1e6
    print(f"{len(images)} RealWorld images ({megapixels:.2f} input MP), {args.threads} torch threads, "
          f"{args.repeats} repeat(s), CPU: {torch.get_num_threads()} threads")
    print("| model | s/image | share of x4plus's time | PSNR vs x4plus's output (dB) |")
    print("|---|---|---|---|")
    base = seconds["RealESRGAN_x4plus"]
    for name, total in seconds.items():
        mse = squared[name] / compared
        match = f"{10 * np.log10(255**2 / mse):.2f}" if mse else "-"
        print(f"| {name} | {total / count:.3f} | {total / base:.3f} | {match} |")
    if args.smoke:
        from smoke import check_positive

        check_positive([{"images": len(images), **seconds}], "images", *seconds)


if __name__ == "__main__":
    main()
