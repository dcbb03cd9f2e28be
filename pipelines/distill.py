"""Distillation data on Ray: a teacher labels degraded training patches once; students train on the cache.

``label_with_teacher`` plans the patches (``srcore.distill.plan_patches``) and runs the teacher in a pool of Ray
actors over the ones whose target is not in the cache yet. Each target is written atomically as
``<cache>/<key[:2]>/<key>.npz`` (:class:`TeacherCache`), keyed by the patch's pixels and
the teacher's weights: an interrupted run resumes with what is written, a second run computes nothing, and
another teacher never reads this one's targets. The run folder gets ``teacher_pairs.json``: the teacher and the
keys of the training and held-out pairs, which the training dataset and the validation read.
"""

from __future__ import annotations

import io
import json
import time
from collections import OrderedDict
from dataclasses import asdict

import numpy as np
import ray

from srcore.distill import PatchSpec, degraded_patch, dihedral, pair_key, plan_patches, teacher_digest, teacher_outputs
from srcore.train.config import TrainConfig
from srcore.train.data import decode_rgb

from .cluster import quiet_ray_data
from .progress import ProgressLog
from .storage import Store, is_uri, join, read_location
from .train_data import is_prepared

PAIRS_FILE = "teacher_pairs.json"


class TeacherCache:
    """The teacher's targets under a folder or bucket prefix, ``<key[:2]>/<key>.npz`` (LR patch and target, uint8),
    through :class:`~pipelines.storage.Store`: its atomic writes and retries."""

    def __init__(self, location: str):
        self.store = Store(location)

    def path(self, key: str) -> str:
        return self.store.path(key[:2], f"{key}.npz")

    def has(self, key: str) -> bool:
        return self.store.exists(self.path(key))

    def read(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        with np.load(io.BytesIO(self.store.read(self.path(key)))) as data:
            return data["lr"], data["target"]

    def write(self, key: str, lr: np.ndarray, target: np.ndarray) -> None:
        buf = io.BytesIO()
        np.savez(buf, lr=lr, target=target)
        self.store.write_atomic(self.path(key), buf.getvalue())


class TeacherLabeler:
    """Ray Data actor: plan rows in, ``{key, split, computed, error}`` rows out. Holds the teacher and a few
    decoded images (the plan takes each image's patches in turn, so neighbours share images)."""

    def __init__(self, cfg_dict: dict, use_gpu: bool = False):
        import torch

        from srcore.train.config import from_dict
        from srcore.weights import load_model

        self.cfg: TrainConfig = from_dict(TrainConfig, cfg_dict)
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.teacher = load_model(self.cfg.data.teacher.model, device=self.device)
        self.digest = teacher_digest(self.teacher)
        self.cache = TeacherCache(self.cfg.data.teacher.cache)
        self.images: OrderedDict[str, np.ndarray] = OrderedDict()

    def image(self, location: str) -> np.ndarray:
        if location not in self.images:
            self.images[location] = decode_rgb(read_location(location), location)
            if len(self.images) > 8:
                self.images.popitem(last=False)
        return self.images[location]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        data = self.cfg.data
        rows: dict[str, list] = {"key": [], "split": [], "computed": [], "error": []}
        todo: list[tuple[int, str, np.ndarray]] = []
        for location, seed, split in zip(batch["location"], batch["seed"], batch["split"], strict=True):
            spec = PatchSpec(str(location), int(seed), str(split))
            key, error = "", ""
            try:
                lr = degraded_patch(self.image(spec.location), spec, data.patch_size, data.scale, data.degradations)
                key = pair_key(lr, self.digest)
                if not self.cache.has(key):
                    todo.append((len(rows["key"]), key, lr))
            except Exception as exc:  # a bad image is recorded; the other patches go on
                error = f"{spec.location}: {exc}"
            rows["key"].append(key)
            rows["split"].append(spec.split)
            rows["computed"].append(False)
            rows["error"].append(error)
        if todo:
            targets = teacher_outputs(self.teacher, np.stack([lr for _, _, lr in todo]), self.device)
            for (index, key, lr), target in zip(todo, targets, strict=True):
                self.cache.write(key, lr, target)
                rows["computed"][index] = True
        return rows


def label_with_teacher(cfg: TrainConfig, print_fn=print, progress_interval: float = 10.0) -> dict:
    """Make the teacher's targets that the cache lacks for ``cfg``'s plan (on the connected Ray), write
    ``<run_dir>/teacher_pairs.json``, and return it with the counts: ``computed``, ``reused``, ``failed``."""
    from ray.data import ActorPoolStrategy

    teacher = cfg.data.teacher
    start = time.perf_counter()
    locations = []
    for location in cfg.data.train:
        if is_prepared(location):
            raise ValueError(f"data.train: {location} is a prepared dataset; distillation reads image folders or "
                             "bucket prefixes (the teacher needs whole images to crop its patches from)")
        entries = Store(location).list()
        if not entries:
            raise ValueError(f"data.train: no images under {location}")
        prefix = location if is_uri(location) else None
        locations += [(e.relative, join(prefix, e.relative) if prefix else e.path) for e in entries]
    specs = plan_patches(locations, teacher.patches, teacher.holdout_patches, teacher.holdout_percent, cfg.seed)
    from srcore.weights import load_model

    load_model(teacher.model)  # an unloadable teacher fails here, named, not in every actor
    print_fn(f"[srcore] teacher {teacher.model}: {len(specs)} patches ({teacher.patches} training, "
             f"{teacher.holdout_patches} held out) from {len(locations)} images; targets cached in {teacher.cache}")
    quiet_ray_data()
    blocks = max(teacher.actors, -(-len(specs) // teacher.batch_size))  # a batch a block: every actor gets work
    ds = ray.data.from_items([asdict(s) for s in specs], override_num_blocks=blocks)
    rows = ds.map_batches(
        TeacherLabeler, batch_size=teacher.batch_size, num_gpus=1 if teacher.use_gpu else 0,
        compute=ActorPoolStrategy(size=teacher.actors),
        fn_constructor_kwargs={"cfg_dict": cfg.to_dict(), "use_gpu": teacher.use_gpu})
    keys: dict[str, list[str]] = {"train": [], "holdout": []}
    errors: list[str] = []
    computed = 0
    log = ProgressLog(len(specs), unit="patches", interval=progress_interval, print_fn=print_fn)
    with log:
        for batch in rows.iter_batches(batch_size=None, batch_format="numpy"):
            for key, split, done, error in zip(batch["key"], batch["split"], batch["computed"], batch["error"],
                                               strict=True):
                if error:
                    errors.append(str(error))
                    continue
                keys[str(split)].append(str(key))
                computed += bool(done)
            log.add(len(batch["key"]), sum(bool(e) for e in batch["error"]))
    pairs = {"teacher": teacher.model, "train": sorted(keys["train"]), "holdout": sorted(keys["holdout"]),
             "failed": errors, "computed": computed, "reused": len(keys["train"]) + len(keys["holdout"]) - computed,
             "seconds": round(time.perf_counter() - start, 1)}
    run = Store(cfg.run_dir)
    run.write_atomic(run.path(PAIRS_FILE), json.dumps(pairs, indent=1).encode())
    print_fn(f"[srcore] teacher targets: {pairs['computed']} computed, {pairs['reused']} reused from the cache, "
             f"{len(errors)} failed ({pairs['seconds']} s)")
    return pairs


def read_pairs_file(cfg: TrainConfig) -> dict:
    run = Store(cfg.run_dir)
    return json.loads(run.read(run.path(PAIRS_FILE)))


def load_pairs(cache: str, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(N, p, p, 3) LR and (N, P, P, 3) targets of ``keys``, stacked."""
    store = TeacherCache(cache)
    pairs = [store.read(key) for key in keys]
    return np.stack([lr for lr, _ in pairs]), np.stack([t for _, t in pairs])


class PairSampler:
    """Ray Data batch function: cache keys -> the pairs, each with the same random dihedral transform."""

    def __init__(self, cache: str):
        self.cache = TeacherCache(cache)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rng = np.random.default_rng()  # fresh flips every pass over the data
        pairs = [dihedral(*self.cache.read(str(key)), rng) for key in batch["key"]]
        return {"lr": np.stack([lr for lr, _ in pairs]), "target": np.stack([t for _, t in pairs])}


def distillation_dataset(cfg: TrainConfig) -> ray.data.Dataset:
    """The training pairs of ``teacher_pairs.json``, read from the cache and flipped at random every pass."""
    keys = read_pairs_file(cfg)["train"]
    if not keys:
        raise ValueError(f"data.teacher: no training pair in {cfg.run_dir}/{PAIRS_FILE}")
    ds = ray.data.from_items([{"key": k} for k in keys], override_num_blocks=max(1, len(keys) // 64))
    return ds.randomize_block_order().map_batches(PairSampler(cfg.data.teacher.cache), batch_size=16)
