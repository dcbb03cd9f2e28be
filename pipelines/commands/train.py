"""Train a super-resolution model on Ray Train.

    srcore train --config default-model
    srcore train --config configs/realesrgan-gan.yaml run.num_workers=8 run.use_gpu=true
    ray job submit --working-dir . -- python jobs/train.py --config configs/rrdbnet-psnr-df2k.yaml

--config is a bundled config's name (srcore train --list-configs) or a YAML file. Overrides are key.sub=value
(YAML values). The run lives in <run.storage_path>/<name>/: config.yaml as run, checkpoints,
net_g_<iteration>.safetensors (models `srcore upscale --model` loads), samples/ from each validation, logs/
(TensorBoard) and the export. Running it again resumes that run (--resume insists on one, --fresh moves it
aside and starts over); changed settings are listed when it resumes.
"""

from __future__ import annotations

import argparse
import sys

from srcore.redact import redact
from srcore.train.config import ConfigError, bundled_configs, load_config

from . import add_verbose_flag, parser_for

SUMMARY = "train a model on Ray Train from a bundled config (by name) or a YAML file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a bundled config's name (see --list-configs) or a YAML training config file")
    p.add_argument("--list-configs", action="store_true", help="list the bundled configs and exit")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. optim.lr_g=1e-4")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_const", const="resume", dest="mode",
                       help="continue the run in <storage_path>/<name>; an error if there is none")
    start.add_argument("--fresh", action="store_const", const="fresh", dest="mode",
                       help="move an existing run folder aside (<name>-archived-<time>) and start over")
    add_verbose_flag(p)


def run(args: argparse.Namespace) -> int:
    if args.list_configs:
        for name, path in bundled_configs().items():
            print(f"{name:28s} {path}")
        return 0
    if not args.config:
        print("error: --config is required (a bundled config's name, see --list-configs, or a YAML file)",
              file=sys.stderr)
        return 2
    from ..cluster import connect_or_start, ray_noise_off_console  # Ray Train: the ray extra
    from ..train import prepare_run, run_training

    try:
        cfg, changes = prepare_run(load_config(args.config, args.overrides), args.mode or "auto")
    except ConfigError as exc:
        print(f"error: {redact(exc)}", file=sys.stderr)
        return 2
    if changes is None:
        print(f"[srcore] run {cfg.name} in {cfg.run_dir}", file=sys.stderr)
    else:
        print(f"[srcore] resuming run {cfg.name} in {cfg.run_dir} (--fresh starts over)", file=sys.stderr)
        for change in changes:
            print(f"[srcore] warning: changed since the run's last start: {change}", file=sys.stderr)
    worker_cpus = cfg.run.resources_per_worker.get("CPU", 1)
    with ray_noise_off_console(args.verbose):
        connect_or_start(min_cpus=cfg.run.num_workers * worker_cpus + 1)  # + 1: the Ray Data tasks
        if cfg.data.teacher:
            from ..distill import label_with_teacher

            try:
                label_with_teacher(cfg, print_fn=lambda line: print(line, file=sys.stderr, flush=True))
            except ValueError as exc:
                print(f"error: {redact(exc)}", file=sys.stderr)
                return 2
        result = run_training(cfg)
    if result.error:
        message = redact(result.error)
        if "corrupted run directory" in message:  # Ray Train's advice (delete the folder) would destroy the run
            message = (f"the run folder {cfg.run_dir} records a checkpoint that is no longer there (deleted, or "
                       "not finished writing): --fresh moves the run aside and starts over; the checkpoints that "
                       "remain load with generator.pretrained")
        print(f"training failed: {message}", file=sys.stderr)
        return 1
    metrics = result.metrics or {}
    scores = " ".join(f"{k.removeprefix('val/')} {v:.4f}" for k, v in metrics.items() if k.startswith("val/"))
    print(f"done: {cfg.name} at iteration {metrics.get('iteration')}{'; ' + scores if scores else ''}")
    # srcore upscale loads local weights files: a bucket export is fetched first
    usage = "" if "://" in cfg.export else f"  (srcore upscale IN -o OUT --model {cfg.export})"
    print(f"model: {cfg.export}{usage}")
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = parser_for(__doc__, prog)
    add_arguments(parser)
    return run(parser.parse_args(argv))
