"""Shared pieces of the Ray Train tests: a tiny image folder and tiny configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image


def image_folder(root: Path, count: int = 6, size: int = 48) -> Path:
    folder = root / "hr"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        base = rng.integers(0, 256, (size // 8, size // 8, 3), np.uint8)
        Image.fromarray(np.kron(base, np.ones((8, 8, 1), np.uint8))).save(folder / f"img{i}.png")
    return folder


def tiny_config(name: str, root: Path, stage: str = "psnr", workers: int = 2, **extra) -> dict:
    cfg = {
        "name": name, "stage": stage, "iterations": 4, "checkpoint_every": 2, "val_every": 2, "log_every": 1,
        "data": {"train": [str(image_folder(root))], "patch_size": 32, "batch_size": 2, "patches_per_image": 2},
        "generator": {"name": "realesr-animevideov3", "kwargs": {"num_feat": 8, "num_conv": 2}},
        "optim": {"lr_g": 1e-3},
        "run": {"storage_path": str(root / "runs"), "num_workers": workers, "torch_threads": 1},
    }
    if stage == "gan":
        cfg.update(loss={"perceptual": 1.0, "adversarial": 0.1, "relativistic": True,
                         "perceptual_layers": {"conv1_2": 1.0}},
                   vgg={"random_init": True},
                   discriminator={"name": "unet-discriminator-sn", "kwargs": {"num_feat": 8}})
    for key, value in extra.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def rank_dumps(dump: Path, name: str, workers: int) -> list[dict]:
    return [torch.load(dump / name / f"rank{r}.pt", weights_only=True) for r in range(workers)]


def assert_same_weights(states: list[dict], key: str) -> None:
    first = states[0][key]
    for other in states[1:]:
        assert first.keys() == other[key].keys()
        for name, tensor in first.items():
            assert torch.equal(tensor, other[key][name]), f"{key}.{name} differs between ranks"
