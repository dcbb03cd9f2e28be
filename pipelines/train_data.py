"""Training data on Ray Data: image folders, bucket prefixes or prepared datasets -> random augmented HR patches.

Kept apart from the Train loop and free of torch: the Ray Data workers that run these functions import this
module, and torch's imports would cost each of them seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import ray

from srcore.train.data import decode_rgb, sample_patches

from .prepare import MANIFEST, SHARDS
from .storage import Store, is_uri, join, read_location

if TYPE_CHECKING:  # the config module imports torch (the degradations)
    from srcore.train.config import TrainConfig


def decode_rows(batch: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Rows of prepared PNG crops, image locations, or already decoded pixels -> RGB uint8 images."""
    if "pixels" in batch:
        return [np.asarray(p).reshape(int(h), int(w), 3)
                for p, h, w in zip(batch["pixels"], batch["height"], batch["width"], strict=True)]
    # a batch may hold rows of both kinds (data.train lists a prepared dataset and an image folder)
    rows = len(batch["png"] if "png" in batch else batch["location"])
    pngs, names = batch.get("png", [None] * rows), batch.get("name", [None] * rows)
    locations = batch.get("location", [None] * rows)
    return [decode_rgb(bytes(png), str(name)) if png is not None else
            decode_rgb(read_location(str(location)), str(location))
            for png, name, location in zip(pngs, names, locations, strict=True)]


def decode_batch(batch: dict[str, np.ndarray]) -> dict[str, list]:
    """Ray Data batch function for ``cache_decoded``: flat pixel rows (images differ in size)."""
    images = decode_rows(batch)
    return {"pixels": [im.reshape(-1) for im in images], "height": [im.shape[0] for im in images],
            "width": [im.shape[1] for im in images]}


class PatchSampler:
    """Ray Data batch function: images (any form ``decode_rows`` reads) -> augmented random HR patches."""

    def __init__(self, patch_size: int, per_image: int):
        self.patch_size, self.per_image = patch_size, per_image

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rng = np.random.default_rng()  # fresh crops every pass over the data
        return {"hr": sample_patches(decode_rows(batch), self.patch_size, self.per_image, rng)}


def is_prepared(location: str) -> bool:
    """Is ``location`` a dataset made by :func:`pipelines.prepare.prepare_dataset` (it has its manifest)?"""
    store = Store(location)
    return store.exists(store.path(MANIFEST))


def training_dataset(cfg: TrainConfig) -> ray.data.Dataset:
    """Patches from every ``data.train`` entry: image folders/prefixes, or datasets made by prepare_dataset."""
    parts = []
    for location in cfg.data.train:
        if is_prepared(location):
            fs, root = Store(location).arrow_filesystem()
            parts.append(ray.data.read_parquet(f"{root}/{SHARDS}", filesystem=fs).select_columns(["name", "png"]))
        else:
            entries = Store(location).list()
            if not entries:
                raise ValueError(f"data.train: no images under {location}")
            prefix = location if is_uri(location) else None
            items = [{"location": join(prefix, e.relative) if prefix else e.path} for e in entries]
            parts.append(ray.data.from_items(items))
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    if cfg.data.cache_decoded:
        ds = ds.map_batches(decode_batch, batch_size=8).materialize()
    # block-order shuffling is cheap; a full random_shuffle is an all-to-all pass every epoch
    return ds.randomize_block_order().map_batches(PatchSampler(cfg.data.patch_size, cfg.data.patches_per_image),
                                           batch_size=4)
