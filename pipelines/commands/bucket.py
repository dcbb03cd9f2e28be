"""Upscale every image under a prefix (S3, GCS or a local folder) into another, with a report on every input.

    srcore bucket --input s3://archive/raw/ --output s3://archive/sr/
    python jobs/upscale_bucket.py --input s3://archive/raw/ --output s3://archive/sr/
    ray job submit --working-dir . -- python jobs/upscale_bucket.py --input s3://archive/raw/ --output s3://archive/sr/

Joins the Ray cluster it was submitted to (RAY_ADDRESS), else starts a local Ray. Reruns skip finished outputs.
The report (rows/*.parquet, summary.json, report.html) goes to <output>/_reports/<run id>/.
Exit status: 0 done, 1 the failure rate exceeded --max-failure-rate, 2 bad arguments, model, input prefix or an
output it cannot write to, 3 another run is writing to the output prefix (its lease in
<output>/_reports/lease.json), 130 interrupted (Ctrl-C): finished outputs are kept, the same command resumes.
"""
from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
import threading

from srcore.archs.registry import DEFAULT_REALISM, DEFAULT_UPSCALE_MODEL
from srcore.model_errors import WeightsError
from srcore.options import EngineOptions, OutputOptions, add_flags, add_realism_flag, from_flags
from srcore.redact import redact
from srcore.video import SEGMENT_SECONDS

from . import add_verbose_flag, parser_for

SUMMARY = "upscale every image under a bucket prefix or folder on Ray, with a report (the bucket job)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..upscale.options import STAGE_LAYOUTS, UpscaleJob  # imports Ray (the ray extra), as --help may

    p.add_argument("--input", required=True, help="s3://bucket/prefix, gs://..., or a local folder")
    p.add_argument("--input-manifest",
                   help="the inputs from a file instead of listing --input: an S3 Inventory manifest.json, or a "
                        "Parquet/CSV file with a 'key' column (optional 'size', 'etag'); keys are relative to the "
                        "bucket (local folders: to the folder)")
    p.add_argument("--output", required=True, help="where outputs go, same relative keys (and the report)")
    p.add_argument("--model", default=None, help="registered name or weights file (default: "
                   f"{DEFAULT_UPSCALE_MODEL} at --realism {DEFAULT_REALISM:g}, the bundled GAN / PSNR pair)")
    add_realism_flag(p)
    add_flags(p, OutputOptions)  # the same flags, defaults and checks as `srcore upscale`
    add_flags(p, EngineOptions)
    p.add_argument("--images-per-batch", type=int, help="images per actor call (default: 32 on GPUs, 8 on CPUs)")
    p.add_argument("--num-gpus-per-actor", type=float,
                   help="GPUs per actor (default: 1 when the cluster has GPUs, else CPU actors; on an "
                        "autoscaling cluster whose GPU nodes start at zero, pass 1)")
    p.add_argument("--cpus-per-actor", type=float, default=1, help="CPUs per actor (CPU actors: torch threads)")
    p.add_argument("--actor-concurrency", type=int,
                   help="batches per actor at once (default: 2 on GPUs, handing one on while upscaling the next; "
                        "1 on CPUs)")
    p.add_argument("--stage-layout", choices=STAGE_LAYOUTS, default="auto",
                   help="fused: each actor reads, decodes, upscales, encodes and writes its images; split: decoding "
                        "and encoding on CPU tasks beside the actors; auto: split on GPUs, fused on CPUs")
    p.add_argument("--min-actors", type=int, default=1, help="actors the pool keeps")
    p.add_argument("--max-actors", type=int, help="default: one per GPU; on CPUs one per --cpus-per-actor CPUs "
                                                  "(fused), half of that (split)")
    p.add_argument("--overwrite", action="store_true", help="redo inputs whose outputs are already finished")
    p.add_argument("--extensions", default=",".join(UpscaleJob.__dataclass_fields__["extensions"].default),
                   help="input file suffixes, comma-separated")
    p.add_argument("--limit", type=int, help="only the first N inputs (sorted by key)")
    p.add_argument("--sample", type=int, help="only N inputs drawn at random (with --seed)")
    p.add_argument("--seed", type=int, default=0, help="random seed of --sample")
    p.add_argument("--report", help="report location (default: <output>/_reports/<run id>)")
    p.add_argument("--previews", type=int, default=6,
                   help="before/after previews in report.html: half the lowest LR-consistency, half random "
                        "(default %(default)s)")
    p.add_argument("--run-id", help="this run's id, written into every output's provenance and naming the report "
                                    "(default: the UTC start time and a random suffix)")
    p.add_argument("--max-failure-rate", type=float, default=0.01,
                   help="exit with status 1 when more than this fraction of the inputs failed (default %(default)s)")
    p.add_argument("--break-lease", action="store_true",
                   help="write even though another run's lease on the output looks live (when you know that run "
                        "is dead; a killed run's lease otherwise expires within 5 minutes)")
    p.add_argument("--wait-for-nodes", type=float, default=600,
                   help="seconds to wait for a node that can run the actors (or the decode tasks) when the "
                        "cluster has none left, before ending the run with the inputs not done reported as "
                        "failed (default %(default)s: time for an autoscaler to start one)")
    p.add_argument("--video-segment-seconds", type=float, default=SEGMENT_SECONDS, metavar="S",
                   help="videos are cut at keyframes into segments of about S seconds, each upscaled by any actor and "
                        "joined without re-encoding (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs)")
    p.add_argument("--progress-interval", type=float, metavar="S",
                   help="seconds between progress lines (images, rate, ETA, failures), kept while a batch takes "
                        "longer (default: 10, or 60 with --no-progress)")
    add_verbose_flag(p)


def summary_table(s: dict, files: dict[str, str]) -> str:
    """The run's summary as a few aligned lines (summary.json in the report has every figure)."""
    from ..storage import CALL_ATTEMPTS, REQUEST_ATTEMPTS

    share = lambda n: f" ({100 * n / s['images']:.1f}%)" if s["images"] else ""  # noqa: E731
    median = f"{s['lr_psnr_median']} dB" if s["lr_psnr_median"] is not None else "-"
    rows = [("images", f"{s['images']} of {s['images_listed']} listed"),
            ("upscaled", f"{s['ok']}{share(s['ok'])}"),
            ("skipped", f"{s['skipped']}{share(s['skipped'])} (finished by earlier runs)"),
            ("failed", f"{s['failed']}{share(s['failed'])}" + (" (causes in the report)" if s["failed"] else "")),
            ("wall time", f"{dt.timedelta(seconds=round(s['wall_s']))} ({s['images_per_s'] or 0:.2f} images/s, "
                          f"{s['output_megapixels_per_s'] or 0:.2f} output MP/s)"),
            ("LR-consistency", f"{median} (median)"),
            *([("videos", f"{s['videos']}, {s['frames']} frames ({s['frames_per_s'] or 0:.2f} frames/s over the run)"
                          + (f"; flicker {s['flicker_median']:.2f} (median; output's frame-to-frame change / "
                             "bicubic's)" if s["flicker_median"] is not None else ""))] if s.get("videos") else []),
            ("store retries", f"{s['store_retries']} (S3 errors and throttling answered with backoff; each request "
                              f"tried at most {REQUEST_ATTEMPTS} x {CALL_ATTEMPTS} times)"),
            ("model", f"{s['model']} x{s['scale']:g}" if s["scale"] else str(s["model"])),
            ("outputs", s["output"]), ("report", files["html"])]
    return "\n".join(f"[srcore] {name:<15}{value}" for name, value in rows)


def run(args: argparse.Namespace) -> int:
    from srcore.cli import INTERRUPTED, INTERRUPTED_MESSAGE

    from ..cluster import ray_noise_off_console  # Ray: the ray extra

    # `ray job stop` and kill send SIGTERM: unwind (releasing the output's lease) instead of vanishing
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143)) if in_main_thread else None
    try:
        with ray_noise_off_console(args.verbose):
            return _run(args)
    except KeyboardInterrupt:
        # outputs are whole or absent (temporary names; a rerun removes those a killed writer left)
        print(f"\n[srcore] {INTERRUPTED_MESSAGE}", file=sys.stderr)
        return INTERRUPTED
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from ..cluster import connect_or_start  # Ray: the ray extra
    from ..lease import LeaseHeld
    from ..listing import ListingError
    from ..upscale.options import UpscaleJob
    from ..upscale.report import report_files
    from ..upscale.run import run as run_job

    try:
        if not 0 <= args.max_failure_rate <= 1:
            raise ValueError(f"--max-failure-rate must be in 0..1, got {args.max_failure_rate}")
        job = UpscaleJob(
            input=args.input, output=args.output, input_manifest=args.input_manifest, model=args.model,
            realism=args.realism,
            engine=from_flags(EngineOptions, args),
            output_options=from_flags(OutputOptions, args), images_per_batch=args.images_per_batch,
            num_gpus_per_actor=args.num_gpus_per_actor, cpus_per_actor=args.cpus_per_actor,
            actor_concurrency=args.actor_concurrency, stage_layout=args.stage_layout, min_actors=args.min_actors,
            max_actors=args.max_actors, overwrite=args.overwrite,
            extensions=tuple("." + e.strip().lstrip(".").lower() for e in args.extensions.split(",") if e.strip()),
            limit=args.limit, sample=args.sample, seed=args.seed, report=args.report, previews=args.previews,
            break_lease=args.break_lease, wait_for_nodes=args.wait_for_nodes,
            progress_interval=args.progress_interval, video_segment_seconds=args.video_segment_seconds,
            **({"run_id": args.run_id} if args.run_id else {}))
        result = run_job(job, progress=not args.no_progress,
                         connect=lambda: connect_or_start(min_cpus=2, dashboard=False))
    except (ValueError, WeightsError, FileNotFoundError, ListingError) as exc:
        print(f"error: {redact(exc)}", file=sys.stderr)
        return 2
    except LeaseHeld as exc:
        print(f"error: {redact(exc)}", file=sys.stderr)
        return 3
    s = result.summary
    print(summary_table(s, report_files(result.report)))
    if s["failure_rate"] > args.max_failure_rate:
        print(f"[srcore] failure rate {s['failure_rate']:.1%} is over --max-failure-rate "
              f"{args.max_failure_rate:.1%}: exiting with status 1", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = parser_for(__doc__, prog)
    add_arguments(parser)
    return run(parser.parse_args(argv))
