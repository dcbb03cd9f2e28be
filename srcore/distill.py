"""Distillation without Ray: a teacher's outputs on degraded training patches become a student's targets.

A patch is fixed by its plan entry (image, seed): the crop position and the second-order degradation both
come from the seed, so the same plan always gives the same low-resolution patches. A teacher target is keyed
by a digest of the LR patch's pixels and of the teacher's weights (:func:`pair_key`), so a cache of targets is
reused by any run with the same teacher, and never by a run with another one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .degrade import DegradationConfig, real_esrgan_degrade


@dataclass(frozen=True)
class PatchSpec:
    """One planned training pair: ``location`` of an HR image, ``seed`` of its crop and degradation, and
    ``split`` (``train`` or ``holdout``)."""

    location: str
    seed: int
    split: str


def holds_out(name: str, holdout_percent: float) -> bool:
    """Whether an image belongs to the held-out split: by a digest of its name, so the split is stable when
    the training set grows or is listed in another order."""
    digest = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
    return digest % 10_000 < holdout_percent * 100


def plan_patches(images: list[tuple[str, str]], train_patches: int, holdout_patches: int, holdout_percent: float,
                 seed: int = 0) -> list[PatchSpec]:
    """Training and held-out patch specs from ``images``, (name, location) pairs: the name (the image's path
    within its data folder) decides its split, so the split is the same wherever the data lives. Each split's
    images are taken in turn, in sorted order (any listing order gives the same plan); a held-out image never
    gives a training patch."""
    ordered = sorted(images)
    held = [location for name, location in ordered if holds_out(name, holdout_percent)]
    train = [location for name, location in ordered if not holds_out(name, holdout_percent)]
    if not train:
        raise ValueError("distillation: every training image fell in the held-out split; lower holdout_percent")
    if holdout_patches and not held:
        raise ValueError(f"distillation: no image of {len(ordered)} is held out at holdout_percent "
                         f"{holdout_percent}; raise it or set holdout_patches to 0")
    specs = [PatchSpec(train[i % len(train)], seed * 1_000_003 + i, "train") for i in range(train_patches)]
    specs += [PatchSpec(held[i % len(held)], seed * 1_000_003 + 500_000 + i, "holdout")
              for i in range(holdout_patches)]
    return specs


def degraded_patch(image: np.ndarray, spec: PatchSpec, patch_size: int, scale: int,
                   degradations: DegradationConfig) -> np.ndarray:
    """The spec's (patch_size/scale)^2 LR patch, uint8 HWC: a random crop of the RGB ``image`` and Real-ESRGAN's
    second-order degradation, both drawn from ``spec.seed``."""
    from .train.data import random_patch

    rng = np.random.default_rng(spec.seed)
    hr = random_patch(image, patch_size, rng)
    tensor = torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1)[None].float() / 255
    lr = real_esrgan_degrade(tensor, scale, degradations, seed=spec.seed)
    return (lr[0].permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def teacher_digest(model: nn.Module) -> str:
    """A digest of a model's weights (names, shapes, values): the teacher's half of a target's key."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def pair_key(lr: np.ndarray, teacher: str) -> str:
    """The cache key of the teacher's target for the LR patch ``lr`` (uint8 HWC) and teacher digest ``teacher``."""
    h = hashlib.sha256()
    h.update(str(lr.shape).encode())
    h.update(np.ascontiguousarray(lr).tobytes())
    h.update(teacher.encode())
    return h.hexdigest()[:32]


@torch.inference_mode()
def teacher_outputs(model: nn.Module, lr: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """(N, h, w, 3) uint8 LR patches -> (N, h*s, w*s, 3) uint8 teacher outputs (whole patches: no tiling)."""
    x = torch.from_numpy(np.ascontiguousarray(lr)).to(device).permute(0, 3, 1, 2).float() / 255
    param = next(model.parameters())
    y = model(x.to(param.dtype)).float().clamp(0, 1)
    return (y * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def dihedral(lr: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The same random flip/transpose of an (h, w, 3) LR patch and its (H, W, 3) target."""
    flips = rng.random(3) < 0.5
    for flip, fn in zip(flips, (lambda a: a[:, ::-1], lambda a: a[::-1], lambda a: a.transpose(1, 0, 2)),
                        strict=True):
        if flip:
            lr, target = fn(lr), fn(target)
    return np.ascontiguousarray(lr), np.ascontiguousarray(target)
