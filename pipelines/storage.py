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
    relative: str  # relative to the listed prefix, with forward slashes
    size: int
    mtime_ns: int


def list_files(location: str, extensions: tuple[str, ...] = IMAGE_SUFFIXES
               ) -> tuple[pafs.FileSystem, list[FileEntry]]:
    """Every file under ``location`` (recursively) whose name ends with one of ``extensions``, sorted."""
    fs, root = filesystem(location)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{location}: no such folder or prefix")
    if info.type == pafs.FileType.File:
        infos = [info]
        base = posixpath.dirname(root)
    else:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        base = root
    entries = [
        FileEntry(i.path, posixpath.relpath(i.path, base), i.size or 0, i.mtime_ns or 0)
        for i in infos
        if i.type == pafs.FileType.File and i.path.lower().endswith(extensions)
        and not posixpath.basename(i.path).startswith(".")
    ]
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
