"""Object storage and local folders: list, read, write atomically.

Two views of one location. :class:`Store` (fsspec: s3fs, gcsfs, local) lists with ETags and reads and writes
keys exactly as stored; the bucket job uses it. :func:`filesystem` gives the pyarrow filesystem that
pyarrow and Ray need (Parquet datasets, Ray Train storage); dataset preparation and training still read
and write through it. s3:// takes credentials from the standard AWS variables and the endpoint from
``AWS_ENDPOINT_URL`` (MinIO, moto, other S3-protocol servers) in both.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import posixpath
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from srcore.atomic import check_writable_folder, unwritable
from srcore.imageio import IMAGE_SUFFIXES

UPLOAD_PART_BYTES = 16 << 20  # a streamed output's multipart upload part (S3 takes 5 MiB to 5 GiB)
# Retries of S3 requests, bounded: botocore's standard mode tries a request at most REQUEST_ATTEMPTS times
# (500, 503 SlowDown and other throttling, dropped connections; exponential backoff with jitter, and a retry
# quota per client that stops retrying through an outage), and s3fs repeats a failed call at most
# CALL_ATTEMPTS times for what botocore does not retry (a body cut off mid-read, an unparseable throttling
# reply) and for SlowDown: at most REQUEST_ATTEMPTS x CALL_ATTEMPTS requests per call. (aiohttp also re-sends,
# once and uncounted, a request whose reused connection the server closed.) A call still failing fails its
# input, which the report records; the run goes on.
REQUEST_ATTEMPTS = 5
CALL_ATTEMPTS = 2
# error codes botocore retries whatever the status they come with: throttling, and transient server errors
_RETRIED_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
                  "RequestThrottled", "ServiceUnavailable", "InternalError"}
_retries_here: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("store_retries", default=None)
_retries_in_process = [0]  # every retry this process made, counted or not to a row (the driver's: the summary's)


def _counting_session():
    """An aiobotocore session whose clients count each S3 answer that gets a retry (an error status of 5xx or
    throttling, or a dropped connection) into :func:`retries_counted`'s counter and the process's."""
    from aiobotocore.session import AioSession

    def count(response=None, caught_exception=None, **_) -> None:
        if caught_exception is None:
            status = response[0].status_code if response else 0
            code = (response[1].get("Error") or {}).get("Code", "") if response else ""
            if status < 500 and status != 429 and code not in _RETRIED_CODES:
                return
        _retries_in_process[0] += 1
        counter = _retries_here.get()  # the caller's context: fsspec runs the request as a task copied from it
        if counter is not None:
            counter[0] += 1

    session = AioSession()
    session.register("needs-retry.s3", count)
    return session


@contextlib.contextmanager
def retries_counted(row: dict) -> Iterator[None]:
    """Add the S3 retries of the store calls made inside to ``row["store_retries"]`` (the report's column)."""
    counter = [0]
    token = _retries_here.set(counter)
    try:
        yield
    finally:
        _retries_here.reset(token)
        row["store_retries"] = (row.get("store_retries") or 0) + counter[0]


def retries_in_process() -> int:
    return _retries_in_process[0]


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
    version: str = ""  # the object's ETag where the store has one, else "mtime:<ns>": changes when it is rewritten


class ListingError(OSError):
    """A prefix that cannot be listed (permissions, or store errors beyond the client's retries)."""


class OutsideOutputError(OSError):
    """A write that would land outside the store's folder (a symlinked sub-folder)."""


class OutputNotWritable(ValueError):
    """An output folder or prefix this run cannot write to (a bad argument: exit 2)."""


class Store:
    """A prefix of an object store, or a local folder, through fsspec (s3fs, gcsfs, local), keys kept raw.

    fsspec reads keys exactly as stored (``a//b.png``, ``a/../b.png`` are distinct objects, which pyarrow's
    S3 client rejects or normalises), reports ETags, and leaves no directory markers behind.
    """

    def __init__(self, location: str):
        import fsspec

        self.location = location
        if location.startswith("s3://"):
            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            self.fs = fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False,
                                        session=_counting_session(),
                                        config_kwargs={"retries": {"mode": "standard",
                                                                   "total_max_attempts": REQUEST_ATTEMPTS}},
                                        **({"endpoint_url": endpoint} if endpoint else {}))
            self.fs.retries = CALL_ATTEMPTS  # (a class attribute: s3fs takes no argument for it)
            self.root = location[len("s3://"):].rstrip("/")
        elif is_uri(location):
            self.fs, root = fsspec.core.url_to_fs(location, skip_instance_cache=True)
            self.root = root.rstrip("/")
        else:
            self.fs, self.root = fsspec.filesystem("file"), Path(location).resolve().as_posix()
        self.local = not is_uri(location)

    def uri(self, path: str) -> str:
        """The URI (or local path) of a path inside this store."""
        return f"{self.location.split('://', 1)[0]}://{path}" if is_uri(self.location) else path

    def list(self, extensions: tuple[str, ...] | None = IMAGE_SUFFIXES, exclude: tuple[str, ...] = (),
             hidden: bool | None = False) -> list[FileEntry]:
        """Files under the prefix (recursively) whose names end with one of ``extensions`` (None: any), sorted.

        Hidden names (``.x``: temporary uploads) are left out; ``hidden=True`` lists only them, None both.
        Paths under ``exclude`` are left out. (:meth:`list_table` as objects, for small listings.)
        """
        return [FileEntry(**row) for row in self.list_table(extensions, exclude, hidden).to_pylist()]

    def list_table(self, extensions: tuple[str, ...] | None = IMAGE_SUFFIXES, exclude: tuple[str, ...] = (),
                   hidden: bool | None = False) -> pa.Table:
        """:meth:`list` as an Arrow table (path, relative, size, version), sorted by path: :meth:`list_pages`
        gathered, for listings that fit in memory."""
        table = pa.Table.from_batches(list(self.list_pages(extensions, exclude, hidden)), schema=LISTING_SCHEMA)
        paths = table.column("path")
        if table.num_rows > 1 and not pc.all(pc.less_equal(paths.slice(0, table.num_rows - 1),
                                                             paths.slice(1))).as_py():
            table = table.sort_by("path")  # object stores and the local walk list in key order; this is the rest
        return table

    def list_pages(self, extensions: tuple[str, ...] | None = IMAGE_SUFFIXES, exclude: tuple[str, ...] = (),
                   hidden: bool | None = False) -> Iterator[pa.RecordBatch]:
        """The listing as Arrow record batches of up to 16K entries (path, relative, size, version), in key
        order, made while the store is listed: archives of millions are listed in bounded memory.

        Local folders are walked directory by directory in path order; S3 prefixes are read a ListObjectsV2
        page at a time (key order); other stores are listed whole by their client and sorted.
        """
        self.check_exists()
        builder = _ListingBuilder(extensions, exclude, hidden)
        try:
            if self.local and os.path.isdir(self.root):
                for path, st in _walk_local(self.root):
                    builder.add(path, self.root, st.st_size, f"mtime:{int(float(st.st_mtime) * 1e9)}")
                    yield from builder.full()
            elif self.fs.isfile(self.root):
                entry = _entry(self.root, posixpath.dirname(self.root), self.fs.info(self.root))
                builder.add(entry.path, "", entry.size, entry.version, relative=entry.relative)
            else:
                for info in self._infos_in_key_order():
                    if info.get("type", "file") == "file":
                        entry = _entry(info["name"], self.root, info)
                        builder.add(entry.path, self.root, entry.size, entry.version, relative=entry.relative)
                        yield from builder.full()
        except (FileNotFoundError, ListingError):
            raise
        except Exception as exc:
            raise ListingError(f"{self.location}: cannot list ({type(exc).__name__}: {exc})") from exc
        yield from builder.rest()

    def _infos_in_key_order(self) -> Iterator[dict]:
        """Info dicts of every object under the prefix, in key order: S3 a page at a time, others whole."""
        if self.location.startswith("s3://"):
            from fsspec.asyn import sync

            bucket, _, key = self.root.partition("/")
            pages = self.fs._iterdir(bucket, delimiter="", prefix=key + "/" if key else "")

            async def take(n: int) -> list[dict]:
                taken = []
                try:
                    while len(taken) < n:
                        taken.append(await pages.__anext__())
                except StopAsyncIteration:
                    pass
                return taken

            while chunk := sync(self.fs.loop, take, 1000):
                yield from chunk
            return
        found = self.fs.find(self.root, detail=True)
        for path in sorted(found):  # the dicts go as entries are made
            yield {"name": path, **found.pop(path)}

    def check_exists(self) -> None:
        """FileNotFoundError when the prefix or folder is not there; ListingError when the store cannot say."""
        try:
            exists = self.fs.exists(self.root)
        except Exception as exc:
            raise ListingError(f"{self.location}: cannot list ({type(exc).__name__}: {exc})") from exc
        if not exists:
            raise FileNotFoundError(f"{self.location}: no such folder or prefix")

    def check_writable(self) -> None:
        """OutputNotWritable, naming the folder and the reason, when a local output folder cannot be created or
        written. (A bucket is probed by the run's first write, its lease: see :class:`pipelines.lease.Lease`.)"""
        if not self.local:
            return
        try:
            check_writable_folder(self.root)
        except OSError as exc:
            raise OutputNotWritable(unwritable(self.location, exc)) from None

    def read(self, path: str, start: int | None = None, end: int | None = None, size: int | None = None) -> bytes:
        """The file's bytes (``start``..``end``). ``size``: its size, where known from the listing: a file
        smaller than one block is read in one request, without s3fs first asking for its size."""
        if size is not None and not self.local and size <= getattr(self.fs, "default_block_size", 0):
            return self.fs.cat_file(path, start=start, end=end, max_concurrency=1)
        return self.fs.cat_file(path, start=start, end=end)

    def delete(self, path: str) -> None:
        self.fs.rm_file(path)

    def size(self, path: str) -> int:
        return int(self.fs.size(path))

    def write_atomic(self, path: str, data: bytes) -> None:
        """Write under a temporary name beside ``path``, then rename (locally) or copy it into place.

        Local writes never follow a symlink out of the folder. On object stores the temporary is deleted after
        the copy, with retries; a delete that still fails leaves it for the next run's planning to remove and
        does not fail the write: the output is complete.
        """
        if self.local:
            from srcore.atomic import atomic_path

            self._check_inside(path)
            with atomic_path(Path(path)) as local_tmp:
                local_tmp.write_bytes(data)
            return
        tmp = _temporary_key(path)
        try:
            self.fs.pipe_file(tmp, data)
            self.fs.cp_file(tmp, path)  # one key: copy() would read '[', '*', '?' in a key as a glob
        except BaseException:
            self._remove_quietly(tmp)
            raise
        self._remove_quietly(tmp)

    @contextlib.contextmanager
    def open_atomic(self, path: str) -> Iterator[BinaryIO]:
        """:meth:`write_atomic` for data written as it is made (a streamed output): a file to write into,
        moved into place when the block ends without error. On object stores the temporary is uploaded in
        parts as it fills (multipart), so memory holds one part, not the file."""
        if self.local:
            from srcore.atomic import atomic_path

            self._check_inside(path)
            with atomic_path(Path(path)) as local_tmp, open(local_tmp, "wb") as file:
                yield file
            return
        tmp = _temporary_key(path)
        try:
            with self.fs.open(tmp, "wb", block_size=UPLOAD_PART_BYTES) as file:
                yield file
            self.fs.cp_file(tmp, path)
        except BaseException:
            self._remove_quietly(tmp)
            raise
        self._remove_quietly(tmp)

    def create_exclusive(self, path: str, data: bytes) -> str:
        """Write ``path`` only if it does not exist (FileExistsError if it does); returns its version token.

        S3 (and S3-protocol servers that honour ``If-None-Match: *``) and local folders decide atomically;
        other stores check first and then write (best effort: two writers racing can both succeed there).
        """
        if self.local:
            import tempfile

            self._check_inside(path)  # before making folders: none is made through a symlink either
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{Path(path).name}.", suffix=".tmp", dir=Path(path).parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.link(tmp, path)  # appears whole, and only if nothing is there (FileExistsError)
            finally:
                os.unlink(tmp)
            return str(os.stat(path).st_mtime_ns)
        if self.location.startswith("s3://"):
            return str(self.fs.pipe_file(path, data, mode="create").get("ETag", ""))
        if self.fs.exists(path):
            raise FileExistsError(path)
        self.fs.pipe_file(path, data)
        return self.version(path)

    def replace_if_version(self, path: str, data: bytes, version: str) -> str:
        """Overwrite ``path`` only if it is still at ``version`` (else OSError); returns the new version.

        S3 decides atomically (``If-Match``); local folders and other stores compare, then write (best effort).
        """
        if self.location.startswith("s3://"):
            try:
                return str(self.fs.pipe_file(path, data, IfMatch=version).get("ETag", ""))
            except FileNotFoundError:
                raise
            except OSError as exc:
                raise OSError(f"{path} changed since version {version}") from exc
        if self.version(path) != version:
            raise OSError(f"{path} changed since version {version}")
        if self.local:
            from srcore.atomic import atomic_path

            with atomic_path(Path(path)) as tmp:
                tmp.write_bytes(data)
            return self.version(path)
        self.fs.pipe_file(path, data)
        return self.version(path)

    def version(self, path: str) -> str:
        """The ETag of ``path`` where the store has one, else its modification time in ns."""
        if self.local:
            return str(os.stat(path).st_mtime_ns)
        return _entry(path, posixpath.dirname(path), self.fs.info(path)).version

    def _remove_quietly(self, path: str, attempts: int = 3) -> None:
        for attempt in range(attempts):
            try:
                self.fs.rm_file(path)
                return
            except FileNotFoundError:
                return
            except Exception:
                time.sleep(0.2 * 2**attempt)

    def _check_inside(self, path: str) -> None:
        root = os.path.realpath(self.root)
        real = os.path.realpath(os.path.dirname(path))  # resolves symlinks in the part that exists
        if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
            raise OutsideOutputError(f"{path}: refusing to write outside {self.location} (a symlink leads to "
                                     f"{real})")


LISTING_SCHEMA = pa.schema([("path", pa.string()), ("relative", pa.string()), ("size", pa.int64()),
                            ("version", pa.string())])


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


def _temporary_key(path: str) -> str:
    """A hidden key beside ``path`` for its upload in progress (planning lists them as temporaries)."""
    return posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp")


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
    # one separator off, no more: "in//a.png" below "in" is "/a.png", a different key from "a.png"
    rest = path[len(base):] if path.startswith(base) else "/" + posixpath.basename(path)
    relative = rest[1:] if rest.startswith("/") else rest
    return FileEntry(path, relative, int(info.get("size") or info.get("Size") or 0), version)


def list_files(location: str, extensions: tuple[str, ...] | None = IMAGE_SUFFIXES,
               exclude: tuple[str, ...] = ()) -> tuple[pafs.FileSystem, list[FileEntry]]:
    """:meth:`Store.list` of ``location``, with the pyarrow filesystem to read the entries through."""
    fs, _ = filesystem(location)
    return fs, Store(location).list(extensions, exclude)


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
