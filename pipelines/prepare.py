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

from .storage import exists, filesystem, list_files, read_bytes, write_bytes_atomic

SCHEMA = pa.schema([("name", pa.string()), ("source", pa.string()), ("y", pa.int32()), ("x", pa.int32()),
                    ("height", pa.int32()), ("width", pa.int32()), ("png", pa.binary())])


@dataclass(frozen=True)
class CropSpec:
    crop: int = 480
    step: int = 240
    thresh: int = 0


def shard_name(relative: str) -> str:
    """A stable, collision-free file name per source image (keys may hold any characters)."""
    return hashlib.sha1(relative.encode()).hexdigest()[:20] + ".parquet"


class ExtractShards:
    """Ray Data batch function: read, decode and crop each image, write its shard; return one small row each."""

    def __init__(self, input_location: str, output: str, spec: CropSpec):
        self.input_location, self.output, self.spec = input_location, output, spec

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        fs_in, _ = filesystem(self.input_location)
        fs_out, root = filesystem(self.output)
        rows = {"relative": [], "shard": [], "crops": [], "error": []}
        for path, relative, shard in zip(batch["path"], batch["relative"], batch["shard"], strict=True):
            crops, error = 0, ""
            try:
                image = decode_rgb(read_bytes(fs_in, str(path)), str(relative))
                parts = extract_subimages(image, self.spec.crop, self.spec.step, self.spec.thresh)
                table = pa.table({
                    "name": [f"{relative}@{y},{x}" for y, x, _ in parts], "source": [str(relative)] * len(parts),
                    "y": [y for y, _, _ in parts], "x": [x for _, x, _ in parts],
                    "height": [c.shape[0] for _, _, c in parts], "width": [c.shape[1] for _, _, c in parts],
                    "png": [png_bytes(c) for _, _, c in parts]}, schema=SCHEMA)
                buf = io.BytesIO()
                pq.write_table(table, buf)
                write_bytes_atomic(fs_out, f"{root}/shards/{shard}", buf.getvalue())
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
    fs_in, entries = list_files(input_location)
    if limit is not None:
        entries = entries[:limit]
    fs_out, root = filesystem(output)
    manifest_path = f"{root}/manifest.json"
    previous = json.loads(read_bytes(fs_out, manifest_path)) if exists(fs_out, manifest_path) else {}
    if previous and previous.get("crop") != [spec.crop, spec.step, spec.thresh]:
        raise ValueError(f"{output} was prepared with crop/step/thresh {previous.get('crop')}; "
                         f"use a new output for {[spec.crop, spec.step, spec.thresh]}")
    images = dict(previous.get("images", {}))
    todo = [e for e in entries if not exists(fs_out, f"{root}/shards/{shard_name(e.relative)}")]
    results = []
    if todo:
        items = [{"path": e.path, "relative": e.relative, "shard": shard_name(e.relative)} for e in todo]
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
    write_bytes_atomic(fs_out, manifest_path, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return manifest
