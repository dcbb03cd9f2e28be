"""The invention map's figures per model on real low-quality inputs: how much detail above the input's Nyquist
limit each model makes (srcore.invention), side by side on the same RealWorld crops.

For each of the first N RealWorld images (sorted by name), its top-left crop is upscaled x4 by bicubic, the bundled
PSNR and GAN models, the distilled student and (with --x4plus) RealESRGAN_x4plus; the script prints, per crop and
model, the map's mean level (8-bit Y) and the share of the area over the threshold (4 levels).

    python bench/invention.py --images 6 --crop 96 [--x4plus]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from srcore.evaluation import list_images, read_hr  # noqa: E402
from srcore.inference import Upscaler  # noqa: E402
from srcore.invention import INVENTION_THRESHOLD, invention_map  # noqa: E402
from srcore.resize import imresize_np  # noqa: E402
from srcore.weights import load_model, load_upscaling_model  # noqa: E402

SHARED = Path(os.environ.get("SRCORE_SHARED", ROOT.parent / "shared"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=6)
    p.add_argument("--crop", type=int, default=96, help="side of each input's top-left crop (input pixels)")
    p.add_argument("--x4plus", action="store_true", help="also RealESRGAN_x4plus (about 40x the others' time)")
    p.add_argument("--smoke", action="store_true", help="2 images, 32 px crops, the figures checked (make test)")
    args = p.parse_args()
    if args.smoke:
        args.images, args.crop = 2, 32

    def engine(model):
        return Upscaler(model, device="cpu", precision="fp32", runtime="torch", tile=None).upscale_image

    models = {"bicubic": lambda lr: imresize_np(lr, 4.0),
              "srcore-compact-x4 (PSNR)": engine(load_model("srcore-compact-x4")),
              "srcore-compact-x4-gan (realism 1)": engine(load_upscaling_model("srcore-compact-x4-gan", 1.0)[0]),
              "srcore-distill-x4": engine(load_model("srcore-distill-x4"))}
    if args.x4plus:
        models["RealESRGAN_x4plus"] = engine(load_model(SHARED / "weights" / "RealESRGAN_x4plus.pth"))
    print(f"{args.images} RealWorld images, top-left {args.crop}x{args.crop} crops, x4; mean level / share of the "
          f"area over {INVENTION_THRESHOLD:g} levels")
    print("| crop | " + " | ".join(models) + " |")
    print("|---|" + "---|" * len(models))
    rows = []
    for path in list_images(SHARED / "datasets" / "RealWorld")[: args.images]:
        image = read_hr(path)
        crop = np.ascontiguousarray((image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2))
                                    [: args.crop, : args.crop])
        maps = {name: invention_map(upscale(crop), 4) for name, upscale in models.items()}
        rows.append({name: m.magnitude.mean() for name, m in maps.items()})
        print(f"| {path.name} | " + " | ".join(f"{m.magnitude.mean():.2f} / {100 * m.share:.1f}%"
                                               for m in maps.values()) + " |")
    means = {name: float(np.mean([r[name] for r in rows])) for name in models}
    print("| mean level | " + " | ".join(f"{v:.2f}" for v in means.values()) + " |")
    if args.smoke:
        from smoke import check_positive

        check_positive([{k: v for k, v in means.items() if k != "bicubic"}],
                       *[k for k in means if k != "bicubic"])


if __name__ == "__main__":
    main()
