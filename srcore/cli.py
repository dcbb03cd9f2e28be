"""The ``srcore`` command: ``srcore models`` lists the registry, ``srcore upscale`` upscales image files."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from .archs.registry import DEFAULT_MODEL, VARIANTS, describe, list_models
from .imageio import DEFAULT_MAX_PIXELS, FORMATS, IMAGE_SUFFIXES
from .inference import Upscaler
from .upscale import OutputOptions, upscale_file
from .weights import WeightsError, load_model


def cmd_models(args: argparse.Namespace) -> int:
    for name in list_models():
        d = describe(name)
        weights = "bundled" if VARIANTS[name].bundled else "published" if VARIANTS[name].url else "-"
        print(f"{name:28s} {d.kind:13s} x{d.scale}  {d.arch:22s} {weights:9s} {VARIANTS[name].summary}")
    return 0


def expand_inputs(items: list[str]) -> list[tuple[Path, str]]:
    """(file, output stem) for files, folders (recursively; stems keep sub-folders) and globs, in order."""
    found: list[tuple[Path, str]] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            for q in sorted(p.rglob("*")):
                if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES:
                    found.append((q, str(q.relative_to(p).with_suffix(""))))
        elif any(ch in item for ch in "*?["):
            found += [(q, q.stem) for q in sorted(Path().glob(item)) if q.is_file()]
        else:
            found.append((p, p.stem))
    return found


def tile_option(tile: int | None) -> int | str | None:
    """--tile: unset = the engine's model-aware "auto", 0 = whole image, else the size."""
    return "auto" if tile is None else (None if tile == 0 else tile)


def cmd_upscale(args: argparse.Namespace) -> int:
    try:
        options = OutputOptions(args.format, args.quality, args.alpha, args.outscale, args.max_input_pixels)
        model = load_model(args.model)
        upscaler = Upscaler(model, device=args.device, precision=args.precision,
                            tile=tile_option(args.tile), tile_overlap=args.tile_overlap,
                            batch_size=args.batch_size)
    except (WeightsError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model_id = args.model if args.model in VARIANTS else Path(args.model).name
    inputs = expand_inputs(args.inputs)
    failures, megapixels, start = 0, 0.0, time.perf_counter()
    with tqdm(inputs, desc="upscaling", unit="img") as bar:
        for path, stem in bar:
            try:
                _, result = upscale_file(upscaler, path, args.output, model_id, options, stem)
                w, h = result.output.size
                megapixels += w * h / 1e6
                bar.set_postfix(MP=f"{megapixels:.1f}")
            except Exception as exc:  # one bad file must not stop the batch
                failures += 1
                message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
                tqdm.write(f"failed: {message}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    print(f"{len(inputs) - failures} of {len(inputs)} images upscaled, {megapixels:.1f} output MP in {elapsed:.1f} s "
          f"({megapixels / max(elapsed, 1e-9):.2f} MP/s), {failures} failed -> {args.output}")
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srcore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list registered models").set_defaults(func=cmd_models)
    up = sub.add_parser("upscale", help="upscale image files, folders or globs",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    up.add_argument("inputs", nargs="+", help="image files, folders or globs")
    up.add_argument("-o", "--output", required=True, help="output folder")
    up.add_argument("--model", default=DEFAULT_MODEL, help="weights file (.pth/.safetensors) or registered name")
    up.add_argument("--outscale", type=float, default=None, help="final scale (default: the model's)")
    up.add_argument("--tile", type=int, default=None,
                    help="tile size in input pixels; 0 = whole image (default: max(512, 3 x the model's overlap))")
    up.add_argument("--tile-overlap", type=int, default=None, help="tile overlap (default: the model's)")
    up.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass")
    up.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    up.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda if available)")
    up.add_argument("--format", default=None, choices=sorted(FORMATS), help="output format (default: input's)")
    up.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality")
    up.add_argument("--alpha", default="bicubic", choices=["bicubic", "network"], help="alpha channel upscaling")
    up.add_argument("--max-input-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                    help="refuse larger inputs before decoding (decompression bombs); default %(default)s")
    up.set_defaults(func=cmd_upscale)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
