"""Training throughput on Ray Train: iterations/s and samples/s for 1 and 2 workers (and more, if asked).

    python bench/train.py                      # CPU, the default-model network, synthetic images
    python bench/train.py --gpu --workers 1,2,4 --generator realesrgan-x4plus --patch 256 --batch 8

Samples/s counts HR patches over all workers; timing starts after the first step (start-up excluded).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import ray
from PIL import Image

from pipelines.train import run_training
from srcore.train.config import load_config


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
    p.add_argument("--generator", default="srcore-compact-x4")
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--batch", type=int, default=8, help="per worker")
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--stage", default="psnr", choices=["psnr", "gan"])
    args = p.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    ray.init(address="local", num_cpus=None if args.gpu else max(workers) * 2 + 1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = synthetic_folder(Path(tmp))
        for n in workers:
            base = {
                "name": f"bench-{n}", "stage": args.stage, "iterations": args.iterations,
                "checkpoint_every": args.iterations // 3, "val_every": 10**9, "log_every": 10**9,
                "data": {"train": [str(folder)], "patch_size": args.patch, "batch_size": args.batch,
                         "patches_per_image": 8},
                "generator": {"name": args.generator},
                "run": {"storage_path": f"{tmp}/runs", "num_workers": n, "use_gpu": args.gpu,
                        "resources_per_worker": {"CPU": 1, **({"GPU": 1} if args.gpu else {})}},
            }
            if args.stage == "gan":
                base.update(loss={"perceptual": 1.0, "adversarial": 0.1}, vgg={"random_init": True})
            result = run_training(load_config(base=base))
            metrics = result.metrics
            print(json.dumps({"workers": n, "device": "gpu" if args.gpu else "cpu", "generator": args.generator,
                              "patch": args.patch, "batch_per_worker": args.batch,
                              "it_per_s": round(metrics["throughput/it_per_s"], 3),
                              "samples_per_s": round(metrics["throughput/samples_per_s"], 2)}), flush=True)


if __name__ == "__main__":
    main()
