"""Training throughput on Ray Train: iterations/s and samples/s for 1 and 2 workers (and more, if asked).

    python bench/train.py                      # CPU, the default-model network, synthetic images
    python bench/train.py --gpu --workers 1 --generators realesrgan-x4plus,srcore-compact-x4 --stages psnr,gan \
        --patch 256 --batch 8 --json-out train.json

Samples/s counts HR patches over all workers; timing starts after the first step (start-up excluded). On CUDA
the steps run under bf16 autocast (the trainer's default). The GAN stage's perceptual loss uses a VGG19 with
fresh weights here: its cost is the same as with ImageNet weights, and no quality is measured.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def synthetic_folder(root: Path, count: int = 24, size: int = 256) -> Path:
    folder = root / "hr"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        base = rng.integers(0, 256, (size // 8, size // 8, 3), np.uint8)
        Image.fromarray(np.kron(base, np.ones((8, 8, 1), np.uint8))).save(folder / f"{i}.png")
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--generators", "--generator", dest="generators", default="srcore-compact-x4",
                   help="comma-separated registered generator names")
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--batch", type=int, default=8, help="per worker")
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--stages", "--stage", dest="stages", default="psnr", help="comma-separated: psnr, gan")
    p.add_argument("--json-out", help="also write the rows to this JSON file")
    p.add_argument("--dry-run", action="store_true", help="check the arguments and the configs, exit")
    p.add_argument("--smoke", action="store_true", help="1 CPU worker, the bundled model, 32 px patches, 4 "
                   "iterations, the figures checked (make test)")
    args = p.parse_args()
    if args.smoke:
        args.workers, args.gpu, args.generators, args.stages = "1", False, "srcore-compact-x4", "psnr"
        args.patch, args.batch, args.iterations = 32, 2, 4
    workers = [int(w) for w in args.workers.split(",")]
    runs = [(g, s, n) for g in args.generators.split(",") for s in args.stages.split(",") for n in workers]

    import srcore
    from srcore.train.config import load_config

    for generator in args.generators.split(","):
        srcore.describe(generator)  # an unknown name fails here, not after Ray started
    configs = [load_config(base=bench_config(args, g, s, n, "/tmp/srcore-bench")) for g, s, n in runs]
    if args.dry_run:
        print(json.dumps({"dry_run": True, "runs": [f"{c.generator.name} {c.stage} x{n}"
                                                     for c, (_, _, n) in zip(configs, runs, strict=True)]}))
        return

    import ray

    from pipelines.train import run_training

    ray.init(address="local", num_cpus=None if args.gpu else max(workers) * 2 + 1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = synthetic_folder(Path(tmp), size=max(256, 2 * args.patch))
        for generator, stage, n in runs:
            result = run_training(load_config(base=bench_config(args, generator, stage, n, tmp, folder)))
            metrics = result.metrics
            rows.append({"workers": n, "device": "gpu" if args.gpu else "cpu", "generator": generator,
                         "stage": stage, "patch": args.patch, "batch_per_worker": args.batch,
                         "bf16_autocast": bool(args.gpu), "iterations": args.iterations,
                         "it_per_s": round(metrics["throughput/it_per_s"], 3),
                         "samples_per_s": round(metrics["throughput/samples_per_s"], 2)})
            print(json.dumps(rows[-1]), flush=True)
            if args.json_out:  # after every run: a suite cut short keeps what it measured
                Path(args.json_out).write_text(json.dumps(rows, indent=1))
    if args.smoke:
        from smoke import check_positive

        check_positive(rows, "it_per_s", "samples_per_s")


def bench_config(args, generator: str, stage: str, n: int, tmp: str, folder: Path | None = None) -> dict:
    """A short training run's config: no validation, no logging, three checkpoints."""
    base = {
        "name": f"bench-{generator}-{stage}-{n}", "stage": stage, "iterations": args.iterations,
        "checkpoint_every": max(1, args.iterations // 3), "val_every": 10**9, "log_every": 10**9,
        "data": {"train": [str(folder or tmp)], "patch_size": args.patch, "batch_size": args.batch,
                 "patches_per_image": 8},
        "generator": {"name": generator},
        "run": {"storage_path": f"{tmp}/runs", "num_workers": n, "use_gpu": args.gpu,
                "resources_per_worker": {"CPU": 1, **({"GPU": 1} if args.gpu else {})}},
    }
    if stage == "gan":
        base.update(loss={"perceptual": 1.0, "adversarial": 0.1}, vgg={"random_init": True})
    return base


if __name__ == "__main__":
    main()
