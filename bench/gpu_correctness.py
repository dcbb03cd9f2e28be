"""Reduced-precision correctness: the official weights' outputs on a device at bf16/fp16/fp32 against fp32 on CPU.

For each official weights file found, on the official fixture (64x48) and a synthetic 160x128 image, through
``Upscaler`` (the path every caller uses), it prints the error in 8-bit levels (max, mean, share of pixels off
by more than one level) of each device precision against the fp32 CPU output, and the fp32 CPU network
output's max error against the official (ncnn) output. On the device it also checks tiling: an image of
about 3 x 2.5 tiles (128 pixels, or more where the model's overlap needs it) tiled against whole.

    python bench/gpu_correctness.py --weights-dir .device-kit/weights --fixtures-dir .device-kit/fixtures
    python bench/gpu_correctness.py --device cpu --precisions bf16    # CPU bf16 against CPU fp32
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import srcore
from srcore.inference import Upscaler

OFFICIAL = {  # weights file -> the official output's fixture
    "realesr-animevideov3.pth": "realesr-animevideov3-x4_lincoln_crop_out.npy",
    "RealESRGAN_x4plus.pth": "realesrgan-x4plus_lincoln_crop_out.npy",
}
FIXTURE_INPUT = "lincoln_crop_64x48.png"


def synthetic(h: int, w: int, seed: int) -> np.ndarray:
    """Textured RGB with edges and noise: smooth images hide precision errors."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 90 * np.sin(xx[..., None] / rng.uniform(3, 9, 3)) * np.cos(yy[..., None] / rng.uniform(3, 9, 3))
    base[h // 3 : h // 2, w // 4 : w // 2] = 240  # a hard edge
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def level_error(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return {"max_levels": int(d.max()), "mean_levels": round(float(d.mean()), 4),
            "share_over_1_level": round(float((d > 1).mean()), 6)}


def check(weights: Path, fixtures: Path | None, device: str, precisions: list[str]) -> list[dict]:
    model = srcore.load_model(weights)
    rows = []
    images = {"synthetic 160x128": synthetic(128, 160, 0)}
    if fixtures and (fixtures / FIXTURE_INPUT).exists():
        fixture = np.array(Image.open(fixtures / FIXTURE_INPUT).convert("RGB"))
        images = {f"fixture {fixture.shape[1]}x{fixture.shape[0]}": fixture, **images}
        official = fixtures / OFFICIAL.get(weights.name, "-")
        if official.exists():  # the network itself, fp32 on CPU, against the official output
            x = torch.from_numpy(fixture).permute(2, 0, 1)[None].float() / 255
            with torch.no_grad():
                ours = model.float().eval()(x)[0].numpy()
            rows.append({"weights": weights.name, "check": "fp32 CPU network vs official output",
                         "max_abs": float(np.abs(ours - np.load(official)).max())})
    reference = Upscaler(model, device="cpu", precision="fp32")
    for label, image in images.items():
        ref = reference.upscale_image(image)
        for precision in precisions:
            out = Upscaler(model, device=device, precision=precision).upscale_image(image)
            rows.append({"weights": weights.name, "check": f"{device} {precision} vs CPU fp32", "image": label,
                         **level_error(out, ref)})
    if device != "cpu":
        # tiles must exceed the model's overlap (x4plus: 160 input pixels); the image spans about 3 x 2.5 tiles
        tile = max(128, 2 * model.descriptor.tile_overlap + 64)
        h, w = int(2.5 * tile), 3 * tile
        image = synthetic(h, w, 1)
        for precision in precisions:
            whole = Upscaler(model, device=device, precision=precision, tile=None).upscale_image(image)
            tiled = Upscaler(model, device=device, precision=precision, tile=tile).upscale_image(image)
            rows.append({"weights": weights.name, "check": f"{device} {precision} tiled ({tile}) vs whole",
                         "image": f"synthetic {w}x{h}", **level_error(tiled, whole)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights-dir", type=Path, required=True, help="folder with the official .pth files")
    p.add_argument("--fixtures-dir", type=Path, default=None, help="folder with the official-output fixtures")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precisions", default=None, help="default: bf16,fp16,fp32 on CUDA; bf16 on CPU")
    p.add_argument("--json-out")
    p.add_argument("--dry-run", action="store_true", help="list what would be checked, exit")
    args = p.parse_args()
    precisions = (args.precisions or ("bf16,fp16,fp32" if args.device.startswith("cuda") else "bf16")).split(",")
    found = [args.weights_dir / name for name in OFFICIAL if (args.weights_dir / name).exists()]
    if not found:
        print(json.dumps({"skipped": f"no official weights under {args.weights_dir}"}))
    if args.dry_run:
        print(json.dumps({"dry_run": True, "weights": [w.name for w in found], "precisions": precisions}))
        return
    rows = []
    failed = False
    for weights in found:
        try:
            checked = check(weights, args.fixtures_dir, args.device, precisions)
        except Exception as exc:  # the other weights file is still checked
            failed = True
            checked = [{"weights": weights.name, "check": "all", "error": f"{type(exc).__name__}: {exc}"}]
        for row in checked:
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))
    if failed:
        raise SystemExit("some checks failed (see the rows marked error)")


if __name__ == "__main__":
    main()
