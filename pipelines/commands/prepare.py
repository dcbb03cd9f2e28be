"""Turn a folder or bucket of HR images into sub-image shards (Parquet) for training, with a manifest.

    srcore prepare --input ../DIV2K/DIV2K_train_HR --output s3://my-bucket/sr/div2k-sub
    ray job submit --working-dir . -- python jobs/prepare_dataset.py --input s3://raw/DIV2K/ --output s3://sr/div2k

Rerunning the same command skips images already done (resumable). Train on it with data.train: [OUTPUT].
"""

from __future__ import annotations

import argparse
import sys

from srcore.redact import redact

from . import add_verbose_flag, parser_for

SUMMARY = "cut a folder or bucket of HR images into training shards (Parquet), resumably, on Ray"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, help="folder or s3:// prefix of HR images")
    p.add_argument("--output", required=True, help="folder or s3:// prefix for shards/ and manifest.json")
    p.add_argument("--crop", type=int, default=480, help="sub-image size (default: %(default)s)")
    p.add_argument("--step", type=int, default=240, help="distance between sub-images (default: %(default)s)")
    p.add_argument("--thresh", type=int, default=0, help="min leftover for a last, edge-flush crop (default: 0)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by key)")
    p.add_argument("--max-failure-rate", type=float, default=0.0,
                   help="exit with status 1 only when more than this fraction (0..1) of the images failed "
                        "(default: %(default)s: any failure)")
    add_verbose_flag(p)


def run(args: argparse.Namespace) -> int:
    if args.crop <= 0 or args.step <= 0 or args.thresh < 0:
        print("error: --crop and --step must be > 0 and --thresh >= 0", file=sys.stderr)
        return 2
    if not 0 <= args.max_failure_rate <= 1:
        print(f"error: --max-failure-rate must be in 0..1, got {args.max_failure_rate}", file=sys.stderr)
        return 2
    from ..cluster import connect_or_start, ray_noise_off_console  # Ray: the ray extra
    from ..prepare import CropSpec, prepare_dataset

    try:
        with ray_noise_off_console(args.verbose):
            connect_or_start()
            manifest = prepare_dataset(args.input, args.output, CropSpec(args.crop, args.step, args.thresh),
                                       args.limit)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {redact(exc)}", file=sys.stderr)
        return 2
    print(f"{manifest['image_count']} images -> {manifest['crop_count']} sub-images in {args.output} "
          f"({manifest['skipped_existing']} already done, {len(manifest['failed'])} failed, {manifest['seconds']} s)")
    for error in manifest["failed"].values():
        print(f"failed: {redact(error)}", file=sys.stderr)
    failed, total = len(manifest["failed"]), manifest["image_count"] + len(manifest["failed"])
    return 1 if failed and failed / max(total, 1) > args.max_failure_rate else 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = parser_for(__doc__, prog)
    add_arguments(parser)
    return run(parser.parse_args(argv))
