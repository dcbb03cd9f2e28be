"""A grid of RealWorld crops a person can judge: each row one real low-quality input, each column one way of
upscaling it x4 (input nearest-upscaled, bicubic, the PSNR model, the GAN model at realism 0.5 and 1, the
student distilled from x4plus, RealESRGAN_x4plus), and last the student's invention map (srcore.invention: white
where its output holds detail the input cannot attest, 32 levels or more).

    python scripts/realworld_grid.py --out docs/realworld-grid.png

Each crop is cut from an upscale of a larger window around it, so no model sees the crop's border. The crop
is the window of the image with the most detail (largest local variance), found the same way for every
image, not picked by hand.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from srcore.evaluation import model_upscaler, read_hr
from srcore.invention import invention_map
from srcore.resize import imresize_np
from srcore.weights import load_model, load_upscaling_model

SHARED = Path(os.environ.get("SRCORE_SHARED", "../shared"))
IMAGES = ["oldphoto2.png", "0014.jpg", "comic1.png", "dog.png", "building.png", "OST_009.png"]
CROP = 48  # LR pixels; 192 in the grid
MARGIN = 16  # LR context around the crop


def busiest_window(image: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the size x size window (on a size/2 grid) with the largest pixel variance."""
    gray = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float64)
    h, w = gray.shape
    best, corner = -1.0, (0, 0)
    for y in range(0, max(1, h - size + 1), size // 2):
        for x in range(0, max(1, w - size + 1), size // 2):
            var = float(gray[y:y + size, x:x + size].var())
            if var > best:
                best, corner = var, (y, x)
    return corner


def columns(shared: Path) -> list[tuple[str, object]]:
    def engine(model):
        return model_upscaler(model, "cpu", tile=None, runtime="torch")

    return [
        ("input (nearest)", lambda lr: np.kron(lr, np.ones((4, 4, 1), lr.dtype))),
        ("bicubic", lambda lr: imresize_np(lr, 4.0)),
        ("srcore-compact-x4 (PSNR)", engine(load_model("srcore-compact-x4"))),
        ("GAN, realism 0.5", engine(load_upscaling_model("srcore-compact-x4-gan", 0.5)[0])),
        ("GAN, realism 1", engine(load_model("srcore-compact-x4-gan"))),
        ("srcore-distill-x4 (student)", engine(load_model("srcore-distill-x4"))),
        ("RealESRGAN_x4plus", engine(load_model(shared / "weights" / "RealESRGAN_x4plus.pth"))),
        (INVENTED, None),  # the student's output's map, drawn from its column
    ]


INVENTED = "student: invention map"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("docs/realworld-grid.png"))
    p.add_argument("--shared", type=Path, default=SHARED)
    args = p.parse_args()
    cols = columns(args.shared)
    tile, label_h, gap = 4 * CROP, 22, 4
    grid = Image.new("RGB", (len(cols) * (tile + gap) - gap, label_h + len(IMAGES) * (tile + gap)), "white")
    draw = ImageDraw.Draw(grid)
    for c, (name, _) in enumerate(cols):
        draw.text((c * (tile + gap) + 4, 5), name, fill="black")
    for r, name in enumerate(IMAGES):
        image = read_hr(args.shared / "datasets" / "RealWorld" / name)
        image = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
        y, x = busiest_window(image, CROP)
        y0, x0 = max(0, y - MARGIN), max(0, x - MARGIN)
        window = image[y0:y + CROP + MARGIN, x0:x + CROP + MARGIN]
        student = None
        for c, (label, upscale) in enumerate(cols):
            if label == INVENTED:
                out = np.repeat(invention_map(student, 4).image()[..., None], 3, axis=2)
            else:
                out = upscale(window)
                student = out if label.startswith("srcore-distill-x4") else student
            crop = out[4 * (y - y0):4 * (y - y0 + CROP), 4 * (x - x0):4 * (x - x0 + CROP)]
            grid.paste(Image.fromarray(crop), (c * (tile + gap), label_h + r * (tile + gap)))
        print(f"{name}: crop at ({x}, {y}), {CROP}x{CROP} LR", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
