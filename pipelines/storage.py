"""The one storage layer: a prefix of an object store, or a local folder, read and written through :class:`Store`.

Preparation, training, distillation, reports and the bucket job all go through it: one client (fsspec: s3fs,
gcsfs, local) with keys kept exactly as stored, one atomic write (a temporary beside the path, then moved into
place), one retry policy (below), and one version rule (:mod:`srcore.versions`). Listing is
:mod:`pipelines.listing`. Where pyarrow or Ray need a pyarrow filesystem (Parquet datasets, Ray Train storage),
:meth:`Store.arrow_filesystem` makes one over the same client. s3:// takes credentials from the standard AWS
variables and the endpoint from ``AWS_ENDPOINT_URL`` (MinIO, moto, other S3-protocol servers), read where the
store is made: a Store sent to a Ray worker is made again there from its location, credentials never travel.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import posixpath
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.fs as pafs

from srcore.atomic import atomic_path, check_writable_folder, unwritable
from srcore.imageio import IMAGE_SUFFIXES
from srcore.versions import info_version, stat_version, version_of

from .listing import FileEntry, ListingError, list_entries, list_pages, list_table

UPLOAD_PART_BYTES = 16 << 20  # a streamed output's multipart upload part (S3 takes 5 MiB to 5 GiB)
# Retries of S3 requests, bounded: botocore's standard mode tries a request at most REQUEST_ATTEMPTS times
# (500, 503 SlowDown and other throttling, dropped connections; exponential backoff with jitter, and a retry
# quota per client that stops retrying through an outage), and s3fs repeats a failed call at most
# CALL_ATTEMPTS times for what botocore does not retry (a body cut off mid-read, an unparseable throttling
# reply) and for SlowDown: at most REQUEST_ATTEMPTS x CALL_ATTEMPTS requests per call. (aiohttp also re-sends,
# once and uncounted, a request whose reused connection the server closed.) A call still failing fails its
# input, which the report records; the run goes on. The one policy for every call through a Store: the bucket
# job, preparation, training (the pyarrow filesystem Ray gets is the same client) and a temporary's cleanup; no
# layer above retries again.
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


def s3_endpoint() -> str | None:
    """The S3 endpoint of this process (AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL; None: AWS itself)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def is_uri(location: str) -> bool:
    return "://" in location


def join(location: str, *parts: str) -> str:
    return posixpath.join(location.rstrip("/"), *parts) if is_uri(location) else str(Path(location, *parts))


class OutsideOutputError(OSError):
    """A write that would land outside the store's folder (a symlinked sub-folder)."""


class OutputNotWritable(ValueError):
    """An output folder or prefix this run cannot write to (a bad argument: exit 2)."""


class Store:
    """A prefix of an object store, or a local folder, through fsspec (s3fs, gcsfs, local), keys kept raw.

    fsspec reads keys exactly as stored (``a//b.png``, ``a/../b.png`` are distinct objects, which pyarrow's
    S3 client rejects or normalises), reports ETags, and leaves no directory markers behind. A Store pickles
    as its location (Ray tasks and actors make their own client, from their own environment).
    """

    def __init__(self, location: str):
        import fsspec

        self.location = location
        if location.startswith("s3://"):
            endpoint = s3_endpoint()
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

    def __reduce__(self):  # a local folder as its absolute path: a worker's working directory is another
        return Store, (self.location if is_uri(self.location) else self.root,)

    def uri(self, path: str) -> str:
        """The URI (or local path) of a path inside this store."""
        return f"{self.location.split('://', 1)[0]}://{path}" if is_uri(self.location) else path

    def path(self, *parts: str) -> str:
        """A path inside this store, below its prefix or folder (keys joined with "/", as stored)."""
        return "/".join((self.root, *parts))

    # ------------------------------------------------------------------ listing (pipelines.listing)

    def list(self, extensions: tuple[str, ...] | None = IMAGE_SUFFIXES, exclude: tuple[str, ...] = (),
             hidden: bool | None = False) -> list[FileEntry]:
        """Files under the prefix (recursively) whose names end with one of ``extensions`` (None: any), sorted
        (:func:`pipelines.listing.list_pages`: hidden names, ``exclude``)."""
        return list_entries(self, extensions, exclude, hidden)

    def list_table(self, extensions: tuple[str, ...] | None = IMAGE_SUFFIXES, exclude: tuple[str, ...] = (),
                   hidden: bool | None = False) -> pa.Table:
        """:meth:`list` as an Arrow table (:data:`pipelines.listing.LISTING_SCHEMA`), sorted by path."""
        return list_table(self, extensions, exclude, hidden)

    def list_pages(self, extensions: tuple[str, ...] | None = IMAGE_SUFFIXES, exclude: tuple[str, ...] = (),
                   hidden: bool | None = False) -> Iterator[pa.RecordBatch]:
        """The listing as Arrow record batches in key order, made while the store is listed
        (:func:`pipelines.listing.list_pages`)."""
        return list_pages(self, extensions, exclude, hidden)

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

    # ------------------------------------------------------------------ reading

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def open_read(self, path: str) -> BinaryIO:
        """The file as a seekable stream (for readers that take a file: Parquet, CSV), read in blocks."""
        return self.fs.open(path, "rb")

    def read(self, path: str, start: int | None = None, end: int | None = None, size: int | None = None) -> bytes:
        """The file's bytes (``start``..``end``). ``size``: its size, where known from the listing: a file
        smaller than one block is read in one request, without s3fs first asking for its size."""
        if size is not None and not self.local and size <= getattr(self.fs, "default_block_size", 0):
            return self.fs.cat_file(path, start=start, end=end, max_concurrency=1)
        return self.fs.cat_file(path, start=start, end=end)

    def size(self, path: str) -> int:
        return int(self.fs.size(path))

    def version(self, path: str) -> str:
        """The version of ``path`` by the one rule (:mod:`srcore.versions`): its ETag where the store has one,
        else ``mtime:<ns>``: what its listing entry says."""
        if self.local:
            return stat_version(os.stat(path))
        return info_version(self.fs.info(path))

    # ------------------------------------------------------------------ writing

    def delete(self, path: str) -> None:
        self.fs.rm_file(path)

    def write_atomic(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` so that no reader ever sees part of it (:meth:`_moved_into_place`)."""
        with self._moved_into_place(path) as tmp:
            if self.local:
                Path(tmp).write_bytes(data)
            else:
                self.fs.pipe_file(tmp, data)

    @contextlib.contextmanager
    def open_atomic(self, path: str) -> Iterator[BinaryIO]:
        """:meth:`write_atomic` for data written as it is made (a streamed output): a file to write into,
        moved into place when the block ends without error. On object stores the temporary is uploaded in
        parts as it fills (multipart), so memory holds one part, not the file."""
        with self._moved_into_place(path) as tmp, \
                (open(tmp, "wb") if self.local else self.fs.open(tmp, "wb", block_size=UPLOAD_PART_BYTES)) as file:
            yield file

    @contextlib.contextmanager
    def _moved_into_place(self, path: str) -> Iterator[str]:
        """The one atomic write: a temporary name beside ``path`` to write, renamed (locally) or copied (object
        stores: the object appears whole when the copy is done) into place when the block ends without error,
        removed on error.

        Local writes never follow a symlink out of the folder (OutsideOutputError). On object stores the
        temporary is deleted after the copy; a delete that still fails (after the store's retries) leaves it for
        the next run's planning to remove and does not fail the write: the output is complete.
        """
        if self.local:
            self._check_inside(path)
            with atomic_path(Path(path)) as local_tmp:
                yield str(local_tmp)
            return
        tmp = _temporary_key(path)
        try:
            yield tmp
            self.fs.cp_file(tmp, path)  # one key: copy() would read '[', '*', '?' in a key as a glob
        except BaseException:
            self._remove_quietly(tmp)
            raise
        self._remove_quietly(tmp)

    def create_exclusive(self, path: str, data: bytes) -> str:
        """Write ``path`` only if it does not exist (FileExistsError if it does); returns its version.

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
            return self.version(path)
        if self.location.startswith("s3://"):
            return self._written_version(path, self.fs.pipe_file(path, data, mode="create"))
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
                return self._written_version(path, self.fs.pipe_file(path, data, IfMatch=f'"{version}"'))
            except FileNotFoundError:
                raise
            except OSError as exc:
                raise OSError(f"{path} changed since version {version}") from exc
        if self.version(path) != version:
            raise OSError(f"{path} changed since version {version}")
        if self.local:
            self.write_atomic(path, data)
        else:
            self.fs.pipe_file(path, data)
        return self.version(path)

    def _written_version(self, path: str, answer) -> str:
        """The version of what a PUT just wrote: the ETag it answered with, else asked for."""
        etag = answer.get("ETag") if isinstance(answer, dict) else None
        return version_of(etag) if etag else self.version(path)

    def _remove_quietly(self, path: str) -> None:
        """Delete a temporary (with the store's retries); one that cannot be deleted is left for later."""
        try:
            self.fs.rm_file(path)
        except Exception:
            pass

    def _check_inside(self, path: str) -> None:
        root = os.path.realpath(self.root)
        real = os.path.realpath(os.path.dirname(path))  # resolves symlinks in the part that exists
        if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
            raise OutsideOutputError(f"{path}: refusing to write outside {self.location} (a symlink leads to "
                                     f"{real})")

    # ------------------------------------------------------------------ for pyarrow and Ray

    def arrow_filesystem(self) -> tuple[pafs.FileSystem, str]:
        """(a pyarrow filesystem, this store's root in it), for what takes one (``ray.data.read_parquet``, Ray
        Train's ``storage_filesystem``): a local folder is pyarrow's own local filesystem; an object store is
        this store's client behind pyarrow (its endpoint, retries and retry counts), which pickles as the
        store's location."""
        if self.local:
            return pafs.LocalFileSystem(), self.root
        return pafs.PyFileSystem(_StoreHandler(self)), self.root


class _StoreHandler(pafs.FSSpecHandler):
    """pyarrow's adapter of an fsspec client, for a Store's client: pickled as the Store (its location)."""

    def __init__(self, store: Store):
        super().__init__(store.fs)
        self.store = store

    def __reduce__(self):
        return _StoreHandler, (self.store,)


def store_of(location: str) -> tuple[Store, str]:
    """(a Store holding the file at ``location``, a URI or local path; the file's path in it): an object store
    at its bucket (:func:`shared_store`), a local file in its folder."""
    if is_uri(location):
        scheme, _, rest = location.partition("://")
        return shared_store(f"{scheme}://{rest.split('/', 1)[0]}"), rest
    path = Path(location)
    store = Store(str(path.parent))
    return store, store.path(path.name)


def shared_store(location: str) -> Store:
    """One Store per location in a process, its client and connections reused: made again when the process's
    endpoint changes (``AWS_ENDPOINT_URL``)."""
    return _shared_store(location, s3_endpoint())


@lru_cache(maxsize=16)
def _shared_store(location: str, endpoint: str | None) -> Store:
    return Store(location)  # (the endpoint is read again by Store: it only keys the cache)


def read_location(location: str) -> bytes:
    """The bytes of the file at ``location`` (a URI or local path)."""
    store, path = store_of(location)
    return store.read(path)


def _temporary_key(path: str) -> str:
    """A hidden key beside ``path`` for its upload in progress (planning lists them as temporaries)."""
    return posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp")
