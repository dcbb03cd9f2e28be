"""prepare_dataset: HR images (DIV2K/Flickr2K layout, a folder or a bucket prefix) -> sub-image shards.

Each source image becomes one Parquet shard of PNG-encoded crops (BasicSR's extract_subimages: 480x480
every 240 px), written atomically under ``<output>/shards/``; ``<output>/manifest.json`` lists what was
done. A rerun skips images whose shard exists, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from srcore.train.data import decode_rgb, extract_subimages, png_bytes

from .storage import Store

SCHEMA = pa.schema([("name", pa.string()), ("source", pa.string()), ("y", pa.int32()), ("x", pa.int32()),
                    ("height", pa.int32()), ("width", pa.int32()), ("png", pa.binary())])


@dataclass(frozen=True)
class CropSpec:
    crop: int = 480
    step: int = 240
    thresh: int = 0


MANIFEST, SHARDS = "manifest.json", "shards"


def shard_name(relative: str) -> str:
    """A stable, collision-free file name per source image (keys may hold any characters)."""
    return hashlib.sha1(relative.encode()).hexdigest()[:20] + ".parquet"


class ExtractShards:
    """Ray Data batch function: read, decode and crop each image, write its shard; return one small row each."""

    def __init__(self, input_location: str, output: str, spec: CropSpec):
        self.source, self.target, self.spec = Store(input_location), Store(output), spec  # (pickled as locations)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows = {"relative": [], "shard": [], "crops": [], "error": []}
        for path, relative, size, shard in zip(batch["path"], batch["relative"], batch["size"], batch["shard"],
                                               strict=True):
            crops, error = 0, ""
            try:
                image = decode_rgb(self.source.read(str(path), size=int(size)), str(relative))
                parts = extract_subimages(image, self.spec.crop, self.spec.step, self.spec.thresh)
                table = pa.table({
                    "name": [f"{relative}@{y},{x}" for y, x, _ in parts], "source": [str(relative)] * len(parts),
                    "y": [y for y, _, _ in parts], "x": [x for _, x, _ in parts],
                    "height": [c.shape[0] for _, _, c in parts], "width": [c.shape[1] for _, _, c in parts],
                    "png": [png_bytes(c) for _, _, c in parts]}, schema=SCHEMA)
                buf = io.BytesIO()
                pq.write_table(table, buf)
                self.target.write_atomic(self.target.path(SHARDS, str(shard)), buf.getvalue())
                crops = len(parts)
            except Exception as exc:  # a bad image is recorded, the others go on
                error = str(exc) if str(relative) in str(exc) else f"{relative}: {exc}"
            rows["relative"].append(str(relative))
            rows["shard"].append(str(shard))
            rows["crops"].append(crops)
            rows["error"].append(error)
        return rows


def prepare_dataset(input_location: str, output: str, spec: CropSpec = CropSpec(), limit: int | None = None) -> dict:
    """Make (or complete) a prepared dataset; returns the manifest."""
    start = time.perf_counter()
    entries = Store(input_location).list()
    if limit is not None:
        entries = entries[:limit]
    target = Store(output)
    manifest_path = target.path(MANIFEST)
    previous = json.loads(target.read(manifest_path)) if target.exists(manifest_path) else {}
    if previous and previous.get("crop") != [spec.crop, spec.step, spec.thresh]:
        raise ValueError(f"{output} was prepared with crop/step/thresh {previous.get('crop')}; "
                         f"use a new output for {[spec.crop, spec.step, spec.thresh]}")
    images = dict(previous.get("images", {}))
    done = written_shards(target)
    todo = [e for e in entries if shard_name(e.relative) not in done]
    results = []
    if todo:
        items = [{"path": e.path, "relative": e.relative, "size": e.size, "shard": shard_name(e.relative)}
                 for e in todo]
        results = ray.data.from_items(items).map_batches(
            ExtractShards(input_location, output, spec), batch_size=1).take_all()
    failed = {}
    for row in results:
        if row["error"]:
            failed[row["relative"]] = row["error"]
        else:
            images[row["relative"]] = {"shard": row["shard"], "crops": int(row["crops"])}
    manifest = {
        "input": input_location, "crop": [spec.crop, spec.step, spec.thresh], "images": images,
        "image_count": len(images), "crop_count": sum(v["crops"] for v in images.values()),
        "failed": failed, "skipped_existing": len(entries) - len(todo),
        "seconds": round(time.perf_counter() - start, 2),
    }
    target.write_atomic(manifest_path, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return manifest


def written_shards(target: Store) -> set[str]:
    """The names of the shards already in a prepared dataset (one listing, not a request per image)."""
    try:
        listed = target.list(extensions=(".parquet",))
    except FileNotFoundError:  # a new output
        return set()
    return {e.relative.removeprefix(f"{SHARDS}/") for e in listed if e.relative.startswith(f"{SHARDS}/")}
