"""Training data on Ray Data: image folders, bucket prefixes or prepared datasets -> random augmented HR patches.

Kept apart from the Train loop and free of torch: the Ray Data workers that run these functions import this
module, and torch's imports would cost each of them seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import ray

from srcore.train.data import decode_rgb, sample_patches

from .storage import filesystem, is_uri, join, list_files, read_bytes

if TYPE_CHECKING:  # the config module imports torch (the degradations)
    from srcore.train.config import TrainConfig


def decode_rows(batch: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Rows of prepared PNG crops, image locations, or already decoded pixels -> RGB uint8 images."""
    if "pixels" in batch:
        return [np.asarray(p).reshape(int(h), int(w), 3)
                for p, h, w in zip(batch["pixels"], batch["height"], batch["width"], strict=True)]
    if "png" in batch:
        return [decode_rgb(bytes(data), str(name)) for data, name in zip(batch["png"], batch["name"], strict=True)]
    images = []
    for location in batch["location"]:
        fs, path = filesystem(str(location))
        images.append(decode_rgb(read_bytes(fs, path), str(location)))
    return images


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
    fs, path = filesystem(location)
    return fs.get_file_info(f"{path}/manifest.json").type.name == "File"


def training_dataset(cfg: TrainConfig) -> ray.data.Dataset:
    """Patches from every ``data.train`` entry: image folders/prefixes, or datasets made by prepare_dataset."""
    parts = []
    for location in cfg.data.train:
        if is_prepared(location):
            fs, path = filesystem(location)
            parts.append(ray.data.read_parquet(f"{path}/shards", filesystem=fs).select_columns(["name", "png"]))
        else:
            _, entries = list_files(location)
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
