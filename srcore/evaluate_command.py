"""Score a model (or bicubic) on SR benchmark sets and write a markdown table and JSON.

    srcore evaluate --model bicubic --scale 4 --sets Set5,Set14,B100,Urban100
    srcore evaluate --model path/to/model.safetensors --scale 4 --sets Set5 --out eval-out
    srcore evaluate --model srcore-compact-x4-gan --realism 0.5 --scale 4 --sets RealWorld
    python jobs/evaluate.py ... (the same flags)

Sets with an HR folder (<data-root>/<set>/HR) are scored as papers do: PSNR/SSIM on Y against the HR images,
from their MATLAB-bicubic LR. Folders of real low-quality inputs without ground truth (<data-root>/RealWorld)
are upscaled as they are and get the no-reference scores only: NIQE of the output (lower is more natural)
and LR-consistency (the output downscaled by MATLAB bicubic against the input, Y, dB). Every set also
reports NIQE and the upscaling seconds per image.

Runs on one machine; no Ray needed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .evaluation import bicubic_upscaler, evaluate_set, markdown_table, model_upscaler, resolve_sets, write_report
from .model_errors import WeightsError
from .options import add_realism_flag
from .redact import redact
from .weights import load_upscaling_model

SUMMARY = "score a model or bicubic on benchmark sets or folders (PSNR/SSIM on Y, NIQE, LR-consistency)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="'bicubic', a registered model name, or a weights file")
    p.add_argument("--scale", type=int, default=None,
                   help="upscaling factor, e.g. 2, 3, 4 (default: the model's; bicubic needs it)")
    p.add_argument("--sets", default="Set5,Set14,B100,Urban100",
                   help="comma-separated set names under --data-root, or folder paths (default: %(default)s)")
    default_root = Path(os.environ.get("SRCORE_SHARED", "../shared")) / "datasets"
    p.add_argument("--data-root", type=Path, default=default_root,
                   help="folder holding <Set>/HR (default: $SRCORE_SHARED/datasets = %(default)s)")
    p.add_argument("--out", type=Path, default=Path("eval-out"), help="output folder (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device for the model (default: %(default)s)")
    add_realism_flag(p)
    p.add_argument("--no-reference", action="store_true",
                   help="treat every set as real LR inputs without ground truth (NIQE and LR-consistency only)")


def run(args: argparse.Namespace) -> int:
    if args.scale is not None and args.scale < 1:
        print(f"error: --scale must be >= 1, got {args.scale}", file=sys.stderr)
        return 2
    try:
        sets = resolve_sets([s for s in args.sets.split(",") if s], args.data_root,
                            reference=False if args.no_reference else None)
        name = args.model
        if args.model == "bicubic":
            if args.realism is not None:
                raise ValueError("--realism blends a GAN model with its PSNR partner; bicubic has none")
            if args.scale is None:
                raise ValueError("--model bicubic needs --scale")
            upscale = bicubic_upscaler(args.scale)
        else:
            model, name = load_upscaling_model(args.model, args.realism)
            args.scale = args.scale or model.descriptor.scale
            if model.descriptor.scale != args.scale:
                raise ValueError(f"{args.model} is a x{model.descriptor.scale} model, but --scale is {args.scale}")
            upscale = model_upscaler(model, args.device)
    except (ValueError, KeyError, WeightsError) as exc:
        print(f"error: {redact(exc)}", file=sys.stderr)
        return 2
    results = [evaluate_set(upscale, folder, args.scale, label, reference=reference)
               for label, folder, reference in sets]
    md, js = write_report(args.out, name, results)
    print(markdown_table(name, results), end="")
    print(f"wrote {md} and {js}")
    return 0



def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))
