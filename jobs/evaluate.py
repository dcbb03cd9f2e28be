"""Score a model (or bicubic) on SR benchmark sets and write a markdown table and JSON.

    python jobs/evaluate.py --model bicubic --scale 4 --sets Set5,Set14,B100,Urban100
    python jobs/evaluate.py --model path/to/model.safetensors --scale 4 --sets Set5 --out eval-out

Runs on one machine; no Ray needed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from srcore.evaluation import bicubic_upscaler, evaluate_set, markdown_table, model_upscaler, resolve_sets, write_report
from srcore.weights import load_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="'bicubic', a registered model name, or a weights file")
    p.add_argument("--scale", type=int, required=True, help="upscaling factor, e.g. 2, 3, 4")
    p.add_argument("--sets", default="Set5,Set14,B100,Urban100",
                   help="comma-separated set names under --data-root, or folder paths (default: %(default)s)")
    default_root = Path(os.environ.get("SRCORE_SHARED", "../shared")) / "datasets"
    p.add_argument("--data-root", type=Path, default=default_root,
                   help="folder holding <Set>/HR (default: $SRCORE_SHARED/datasets = %(default)s)")
    p.add_argument("--out", type=Path, default=Path("eval-out"), help="output folder (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device for the model (default: %(default)s)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.scale < 1:
        print(f"error: --scale must be >= 1, got {args.scale}", file=sys.stderr)
        return 2
    try:
        sets = resolve_sets([s for s in args.sets.split(",") if s], args.data_root)
        if args.model == "bicubic":
            upscale = bicubic_upscaler(args.scale)
        else:
            model = load_model(args.model)
            if model.descriptor.scale != args.scale:
                raise ValueError(f"{args.model} is a x{model.descriptor.scale} model, but --scale is {args.scale}")
            upscale = model_upscaler(model, args.device)
    except (ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = [evaluate_set(upscale, folder, args.scale, name) for name, folder in sets]
    md, js = write_report(args.out, args.model, results)
    print(markdown_table(args.model, results), end="")
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
