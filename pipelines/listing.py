"""Listing a store: the files under a prefix or folder, as Arrow record batches made while it is listed.

Every listing has one schema, :data:`LISTING_SCHEMA` (path, relative, size, version), and one order: key order
(a local folder is walked directory by directory as if each folder were named ``name/``, the order of an
object store's keys). Versions follow the one rule, :mod:`srcore.versions`. :class:`pipelines.storage.Store`
lists through :func:`list_pages`; inventories (:mod:`pipelines.inventory`) make pages of the same schema.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from srcore.imageio import IMAGE_SUFFIXES
from srcore.versions import info_version, stat_version

if TYPE_CHECKING:
    from .storage import Store

LISTING_SCHEMA = pa.schema([("path", pa.string()), ("relative", pa.string()), ("size", pa.int64()),
                            ("version", pa.string())])
S3_PAGE = 1000  # keys taken from the ListObjectsV2 pages at a time


@dataclass(frozen=True)
class FileEntry:
    path: str  # inside the filesystem (bucket/key or absolute local path)
    relative: str  # the key below the listed prefix, as stored (never normalised: "a/../b" stays)
    size: int
    version: str = ""  # srcore.versions: the object's ETag where the store has one, else "mtime:<ns>"


class ListingError(OSError):
    """A prefix that cannot be listed (permissions, or store errors beyond the client's retries)."""


def list_pages(store: Store, extensions: tuple[str, ...] | None = IMAGE_SUFFIXES, exclude: tuple[str, ...] = (),
               hidden: bool | None = False) -> Iterator[pa.RecordBatch]:
    """The files under ``store``'s prefix (recursively) whose names end with one of ``extensions`` (None: any),
    as Arrow record batches of up to 16K entries in key order, made while the store is listed: archives of
    millions are listed in bounded memory.

    Hidden names (``.x``: temporary uploads) are left out; ``hidden=True`` lists only them, None both. Paths
    under ``exclude`` are left out. Local folders are walked directory by directory in path order; S3 prefixes
    are read a ListObjectsV2 page at a time (key order); other stores are listed whole by their client and
    sorted. FileNotFoundError when the prefix is not there; ListingError when it cannot be listed.
    """
    store.check_exists()
    builder = _ListingBuilder(extensions, exclude, hidden)
    try:
        if store.local and os.path.isdir(store.root):
            for path, st in _walk_local(store.root):
                builder.add(path, store.root, st.st_size, stat_version(st))
                yield from builder.full()
        elif store.fs.isfile(store.root):
            entry = _entry(store.root, posixpath.dirname(store.root), store.fs.info(store.root))
            builder.add(entry.path, "", entry.size, entry.version, relative=entry.relative)
        else:
            for info in _infos_in_key_order(store):
                if info.get("type", "file") == "file":
                    entry = _entry(info["name"], store.root, info)
                    builder.add(entry.path, store.root, entry.size, entry.version, relative=entry.relative)
                    yield from builder.full()
    except (FileNotFoundError, ListingError):
        raise
    except Exception as exc:
        raise ListingError(f"{store.location}: cannot list ({type(exc).__name__}: {exc})") from exc
    yield from builder.rest()


def list_table(store: Store, extensions: tuple[str, ...] | None = IMAGE_SUFFIXES, exclude: tuple[str, ...] = (),
               hidden: bool | None = False) -> pa.Table:
    """:func:`list_pages` gathered into one table, sorted by path, for listings that fit in memory."""
    table = pa.Table.from_batches(list(list_pages(store, extensions, exclude, hidden)), schema=LISTING_SCHEMA)
    paths = table.column("path")
    if table.num_rows > 1 and not pc.all(pc.less_equal(paths.slice(0, table.num_rows - 1),
                                                         paths.slice(1))).as_py():
        table = table.sort_by("path")  # object stores and the local walk list in key order; this is the rest
    return table


def list_entries(store: Store, extensions: tuple[str, ...] | None = IMAGE_SUFFIXES, exclude: tuple[str, ...] = (),
                 hidden: bool | None = False) -> list[FileEntry]:
    """:func:`list_table` as :class:`FileEntry` objects, for small listings."""
    return [FileEntry(**row) for row in list_table(store, extensions, exclude, hidden).to_pylist()]


class _ListingBuilder:
    """Listing entries gathered into Arrow record batches of 16K rows (Python strings live one batch long)."""

    BATCH = 1 << 14

    def __init__(self, extensions: tuple[str, ...] | None, exclude: tuple[str, ...], hidden: bool | None):
        self.extensions, self.hidden = extensions, hidden
        self.excluded = tuple(e.rstrip("/") + "/" for e in exclude)
        self.columns: tuple[list, list, list, list] = ([], [], [], [])

    def add(self, path: str, base: str, size: int, version: str, relative: str | None = None) -> None:
        if self.extensions is not None and not path.lower().endswith(self.extensions):
            return
        if self.hidden is not None and posixpath.basename(path).startswith(".") != self.hidden:
            return
        if self.excluded and path.startswith(self.excluded):
            return
        if relative is None:
            rest = path[len(base):]
            relative = rest[1:] if rest.startswith("/") else rest
        for column, value in zip(self.columns, (path, relative, size, version), strict=True):
            column.append(value)

    def full(self) -> Iterator[pa.RecordBatch]:
        """The batch gathered so far, once it holds BATCH entries."""
        if len(self.columns[0]) >= self.BATCH:
            yield from self.rest()

    def rest(self) -> Iterator[pa.RecordBatch]:
        if self.columns[0]:
            yield pa.RecordBatch.from_arrays([pa.array(c, t.type) for c, t in zip(self.columns, LISTING_SCHEMA,
                                                                                   strict=True)],
                                             schema=LISTING_SCHEMA)
        self.columns = ([], [], [], [])


def _walk_local(folder: str):
    """(path, stat) of the files under a local folder, recursively, in the order of their paths (folders are
    visited as if named ``name/``, so the walk needs no sort of the whole listing). Symlinked folders are
    followed and unreadable ones skipped, as fsspec's ``find`` does."""
    try:
        with os.scandir(folder) as it:
            children = []
            for entry in it:
                try:
                    if entry.is_dir():
                        children.append((entry.name + "/", entry, True))
                    elif entry.is_file():
                        children.append((entry.name, entry, False))
                except OSError:
                    continue
    except OSError:
        return
    for _, entry, is_dir in sorted(children, key=lambda c: c[0]):
        if is_dir:
            yield from _walk_local(entry.path)
        else:
            try:
                yield entry.path, entry.stat()
            except OSError:
                continue


def _infos_in_key_order(store: Store) -> Iterator[dict]:
    """Info dicts of every object under the prefix, in key order: S3 a page at a time, others whole."""
    if store.location.startswith("s3://"):
        from fsspec.asyn import sync

        bucket, _, key = store.root.partition("/")
        pages = store.fs._iterdir(bucket, delimiter="", prefix=key + "/" if key else "")

        async def take(n: int) -> list[dict]:
            taken = []
            try:
                while len(taken) < n:
                    taken.append(await pages.__anext__())
            except StopAsyncIteration:
                pass
            return taken

        while chunk := sync(store.fs.loop, take, S3_PAGE):
            yield from chunk
        return
    found = store.fs.find(store.root, detail=True)
    for path in sorted(found):  # the dicts go as entries are made
        yield {"name": path, **found.pop(path)}


def _entry(path: str, base: str, info: dict) -> FileEntry:
    # one separator off, no more: "in//a.png" below "in" is "/a.png", a different key from "a.png"
    rest = path[len(base):] if path.startswith(base) else "/" + posixpath.basename(path)
    relative = rest[1:] if rest.startswith("/") else rest
    return FileEntry(path, relative, int(info.get("size") or info.get("Size") or 0), info_version(info))
