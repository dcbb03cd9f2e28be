"""Inputs from a file of keys instead of a listing: how buckets of tens of millions of objects are enumerated.

Three forms, read a batch at a time into listing pages (path, relative, size, version), so no list of every
key is built on the driver:

- an **S3 Inventory** report: its ``manifest.json`` (``fileFormat`` CSV or Parquet; ``fileSchema`` names the
  CSV columns; the data files are found relative to the manifest, ``destinationBucket`` aside). CSV keys are
  URL-encoded, as S3 Inventory writes them;
- a **Parquet** file with a ``key`` column, and optionally ``size`` and ``etag`` (or ``e_tag``/``version``);
- a **CSV** file with a header row naming the same columns.

A key is relative to the input prefix's bucket (an S3 Inventory key, ``photos/a.png``) or, for local input
folders, to the folder. Keys outside the input prefix, and names without an image extension, are left out.
Without an ETag the version is empty: a rerun then trusts an output written from the same key, as a listing
cannot tell either when it has no ETag or mtime to compare.
"""

from __future__ import annotations

import functools
import gzip
import json
import posixpath
from collections.abc import Iterator
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .listing import LISTING_SCHEMA, ListingError
from .storage import Store

BATCH_ROWS = 1 << 14
_VERSION_COLUMNS = ("etag", "e_tag", "version")


def manifest_pages(manifest: str, source: Store, extensions: tuple[str, ...] | None,
                   exclude: tuple[str, ...] = ()) -> Iterator[pa.RecordBatch]:
    """Listing pages (LISTING_SCHEMA) of the keys a manifest file names that lie under ``source``."""
    where = Store(manifest)
    path = where.root
    try:
        if path.endswith(".json"):
            batches = _inventory_batches(where, path)
        elif path.endswith((".parquet", ".pq")):
            batches = _parquet_batches(where, path)
        elif path.endswith((".csv", ".csv.gz")):
            batches = _csv_batches(where, path, header=True)
        else:
            raise ListingError(f"{manifest}: an input manifest is manifest.json (S3 Inventory), .parquet or .csv")
        for keys, sizes, versions in batches:
            yield from _as_listing(keys, sizes, versions, source, extensions, exclude)
    except ListingError:
        raise
    except Exception as exc:
        raise ListingError(f"{manifest}: cannot read the input manifest ({type(exc).__name__}: {exc})") from exc


def _as_listing(keys: pa.Array, sizes: pa.Array | None, versions: pa.Array | None, source: Store,
                extensions: tuple[str, ...] | None, exclude: tuple[str, ...]) -> Iterator[pa.RecordBatch]:
    n = len(keys)
    bucket = source.root.split("/", 1)[0] if not source.local else ""
    # a key is inside the bucket (object stores) or the folder (local): the path is the store's own form
    paths = pc.binary_join_element_wise(bucket + "/", keys, "") if bucket else \
        pc.binary_join_element_wise(source.root + "/", keys, "")
    prefix = source.root + "/"
    keep = pc.starts_with(paths, prefix)
    if extensions is not None:
        lower = pc.utf8_lower(paths)
        named = functools.reduce(pc.or_, [pc.ends_with(lower, e) for e in extensions], pa.scalar(False))
        keep = pc.and_(keep, named)
    for excluded in exclude:
        keep = pc.and_(keep, pc.invert(pc.starts_with(paths, excluded.rstrip("/") + "/")))
    table = pa.table({
        "path": paths,
        "relative": pc.utf8_slice_codeunits(paths, len(prefix)),
        "size": sizes.cast(pa.int64()) if sizes is not None else pa.repeat(pa.scalar(0, pa.int64()), n),
        "version": pc.utf8_trim(versions.cast(pa.string()), '"') if versions is not None
        else pa.repeat(pa.scalar("", pa.string()), n),
    }).filter(keep)
    yield from table.cast(LISTING_SCHEMA).to_batches(max_chunksize=BATCH_ROWS)


def _columns(table: pa.Table | pa.RecordBatch) -> tuple[pa.Array, pa.Array | None, pa.Array | None]:
    names = {name.lower(): name for name in table.schema.names}
    if "key" not in names:
        raise ValueError(f"no 'key' column (it has {', '.join(table.schema.names)})")
    version = next((names[c] for c in _VERSION_COLUMNS if c in names), None)
    return (table.column(names["key"]).cast(pa.string()),
            table.column(names["size"]) if "size" in names else None,
            table.column(version) if version else None)


def _parquet_batches(store: Store, path: str):
    with store.open_read(path) as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=BATCH_ROWS):
            yield _columns(batch)


def _csv_batches(store: Store, path: str, header: bool, names: list[str] | None = None, url_encoded: bool = False):
    with store.open_read(path) as raw:
        f = gzip.open(raw) if path.endswith(".gz") else raw
        reader = pacsv.open_csv(
            f, read_options=pacsv.ReadOptions(column_names=None if header else names, block_size=8 << 20),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names or ["key", "Key"]}))
        for batch in reader:
            keys, sizes, versions = _columns(batch)
            if url_encoded:  # S3 Inventory CSV keys are URL-encoded ("+" for spaces included)
                keys = pa.array([unquote(k.replace("+", " ")) for k in keys.to_pylist()], pa.string())
            yield keys, sizes, versions


def _inventory_batches(store: Store, path: str):
    """The data files of an S3 Inventory manifest.json: keys of its destination bucket (a local copy of a
    report: found under the nearest folder above the manifest that holds them)."""
    manifest = json.loads(store.read(path))
    fmt = manifest.get("fileFormat", "CSV").upper()
    names = [n.strip().lower() for n in manifest.get("fileSchema", "").split(",")]  # CSV has no header row
    for entry in manifest.get("files", []):
        data = _inventory_file(store, path, manifest.get("destinationBucket", ""), entry["key"])
        if fmt == "CSV":
            yield from _csv_batches(store, data, header=False, names=names, url_encoded=True)
        elif fmt == "PARQUET":
            yield from _parquet_batches(store, data)
        else:
            raise ListingError(f"{path}: S3 Inventory format {fmt} is not read (CSV and Parquet are)")


def _inventory_file(store: Store, manifest_path: str, destination: str, key: str) -> str:
    if not store.local:
        return f"{destination.removeprefix('arn:aws:s3:::') or manifest_path.split('/', 1)[0]}/{key}"
    folder = posixpath.dirname(manifest_path)
    while folder not in ("", "/"):
        if store.exists(f"{folder}/{key}"):
            return f"{folder}/{key}"
        folder = posixpath.dirname(folder)
    raise FileNotFoundError(f"{key}: not found above {manifest_path}")
