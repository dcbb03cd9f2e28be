"""Train a super-resolution model on Ray Train.

    python jobs/train.py --config configs/default-model.yaml
    python jobs/train.py --config configs/realesrgan-gan.yaml run.num_workers=8 run.use_gpu=true
    ray job submit --working-dir . -- python jobs/train.py --config configs/rrdbnet-psnr-df2k.yaml

Overrides are key.sub=value (YAML values). Re-running the same command resumes from the latest checkpoint.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.cluster import connect_or_start
from pipelines.train import run_training
from srcore.train.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML training config (see configs/)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. optim.lr_g=1e-4")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    worker_cpus = cfg.run.resources_per_worker.get("CPU", 1)
    connect_or_start(min_cpus=cfg.run.num_workers * worker_cpus + 1)  # + 1: the Ray Data tasks
    result = run_training(cfg)
    if result.error:
        print(f"training failed: {result.error}", file=sys.stderr)
        return 1
    metrics = {k: round(v, 4) if isinstance(v, float) else v for k, v in (result.metrics or {}).items()}
    print(f"done: {cfg.name} at iteration {metrics.get('iteration')}; checkpoint {result.checkpoint}")
    print(f"metrics: {metrics}")
    if cfg.export:
        print(f"model: {cfg.export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
