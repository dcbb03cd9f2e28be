"""The ``srcore`` command: ``srcore models`` lists the registry, ``srcore upscale`` upscales image files."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .archs.registry import VARIANTS, describe, list_models
from .atomic import atomic_path
from .weights import WeightsError, load_model

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def cmd_models(args: argparse.Namespace) -> int:
    for name in list_models():
        d = describe(name)
        print(f"{name:28s} {d.kind:13s} x{d.scale}  {d.arch:22s} {VARIANTS[name].summary}")
    return 0


def expand_inputs(items: list[str]) -> list[Path]:
    """Files, folders (their images, recursively) and globs, in a stable order."""
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES)
        elif any(ch in item for ch in "*?["):
            paths += sorted(Path().glob(item))
        else:
            paths.append(p)
    return paths


def upscale_rgb(model: torch.nn.Module, image: Image.Image) -> Image.Image:
    """Whole-image RGB inference (no tiling yet: small images only)."""
    x = torch.from_numpy(np.asarray(image.convert("RGB"), np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.inference_mode():
        y = model(x)[0].clamp_(0, 1).permute(1, 2, 0).numpy()
    return Image.fromarray((y * 255.0).round().astype(np.uint8))


def cmd_upscale(args: argparse.Namespace) -> int:
    try:
        model = load_model(args.model)
    except (WeightsError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out_dir = Path(args.output)
    inputs = expand_inputs(args.inputs)
    failures, pixels, start = 0, 0, time.perf_counter()
    for path in tqdm(inputs, desc="upscaling", unit="img"):
        target = out_dir / f"{path.stem}.png"
        try:
            with Image.open(path) as image:
                result = upscale_rgb(model, image)
            with atomic_path(target) as tmp:
                result.save(tmp, format="PNG")
            pixels += result.width * result.height
        except Exception as exc:  # one bad file must not stop the batch
            failures += 1
            tqdm.write(f"failed: {path}: {exc}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    print(f"{len(inputs) - failures} images upscaled x{model.descriptor.scale}, {pixels / 1e6:.1f} output MP, "
          f"{elapsed:.1f} s, {failures} failed -> {out_dir}")
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srcore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list registered models").set_defaults(func=cmd_models)
    up = sub.add_parser("upscale", help="upscale image files, folders or globs")
    up.add_argument("inputs", nargs="+", help="image files, folders or globs")
    up.add_argument("-o", "--output", required=True, help="output folder")
    up.add_argument("--model", required=True, help="weights file (.pth/.safetensors) or registered model name")
    up.set_defaults(func=cmd_upscale)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
