"""Object storage and local folders through one interface (pyarrow.fs): list, read, write atomically.

s3:// URIs take credentials from the standard AWS variables and the endpoint from ``AWS_ENDPOINT_URL``
(MinIO, moto, other S3-protocol servers); gs:// and local paths work as pyarrow supports them.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from srcore.imageio import IMAGE_SUFFIXES


def is_uri(location: str) -> bool:
    return "://" in location


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a URI or a local path (made absolute)."""
    if location.startswith("s3://"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        kwargs = {}
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            kwargs = {"endpoint_override": host or scheme, "scheme": scheme if host else "https"}
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            kwargs["region"] = region
        return pafs.S3FileSystem(**kwargs), location[len("s3://"):].rstrip("/")
    if is_uri(location):
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), str(Path(location).resolve())


@dataclass(frozen=True)
class FileEntry:
    path: str  # inside the filesystem (bucket/key or absolute local path)
    relative: str  # the key below the listed prefix, as stored (never normalised: "a/../b" stays)
    size: int
    mtime_ns: int
    version: str = ""  # the object's ETag where the store has one, else "mtime:<ns>": changes when it is rewritten


def _fsspec_filesystem(location: str):
    """(fsspec filesystem, root) for listing: fsspec stores report ETags, which pyarrow's listing drops."""
    import fsspec

    if location.startswith("s3://"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        fs = fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False,
                               **({"endpoint_url": endpoint} if endpoint else {}))
        return fs, location[len("s3://"):].rstrip("/")
    if is_uri(location):
        fs, root = fsspec.core.url_to_fs(location, skip_instance_cache=True)
        return fs, root.rstrip("/")
    return fsspec.filesystem("file"), Path(location).resolve().as_posix()


def _entry(path: str, base: str, info: dict) -> FileEntry:
    mtime = info.get("mtime") or info.get("LastModified") or info.get("updated") or 0
    if hasattr(mtime, "timestamp"):
        mtime = mtime.timestamp()
    elif isinstance(mtime, str):
        from datetime import datetime

        mtime = datetime.fromisoformat(mtime.replace("Z", "+00:00")).timestamp()
    mtime_ns = int(float(mtime) * 1e9)
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    version = str(etag).strip('"') if etag else f"mtime:{mtime_ns}"
    relative = path[len(base):].lstrip("/") if path.startswith(base) else posixpath.basename(path)
    return FileEntry(path, relative, int(info.get("size") or info.get("Size") or 0), mtime_ns, version)


def list_files(location: str, extensions: tuple[str, ...] | None = IMAGE_SUFFIXES,
               exclude: tuple[str, ...] = ()) -> tuple[pafs.FileSystem, list[FileEntry]]:
    """Every file under ``location`` (recursively) whose name ends with one of ``extensions`` (None: any),
    sorted by path. Hidden names (``.x``, e.g. temporary uploads) and paths under ``exclude`` (paths inside
    the filesystem, e.g. an output prefix nested in the input) are left out.

    Returns the pyarrow filesystem for reading the entries, and the entries.
    """
    lister, root = _fsspec_filesystem(location)
    if not lister.exists(root):
        raise FileNotFoundError(f"{location}: no such folder or prefix")
    if lister.isfile(root):
        found = {root: lister.info(root)}
        base = posixpath.dirname(root)
    else:
        found = lister.find(root, detail=True)
        base = root
    excluded = tuple(e.rstrip("/") + "/" for e in exclude)
    entries = [
        _entry(path, base, info) for path, info in found.items()
        if info.get("type", "file") == "file"
        and (extensions is None or path.lower().endswith(extensions))
        and not posixpath.basename(path).startswith(".")
        and not path.startswith(excluded)
    ]
    fs, _ = filesystem(location)
    return fs, sorted(entries, key=lambda e: e.path)


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()


def write_bytes_atomic(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write to a temporary name beside ``path``, then move it into place: readers never see a partial file.

    On object stores the final object appears only when the upload completes, so the temporary key is
    written and then copied (a server-side move); locally it is a rename.
    """
    parent = posixpath.dirname(path)
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(parent, recursive=True)
    tmp = posixpath.join(parent, f".{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, path)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except OSError:
            pass
        raise


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def join(location: str, *parts: str) -> str:
    return posixpath.join(location.rstrip("/"), *parts) if is_uri(location) else str(Path(location, *parts))
