"""The one version rule: the string that says which version of an input an output was made from.

An output's provenance (``sourceVersion``) and the bucket job's report (``input_version``) record it; a rerun
compares it with the input's version now, so every place that computes one must give the same string for the
same file: ``srcore upscale`` (a local file), the bucket job's listing and a store's ``version`` of one path
(:class:`pipelines.storage.Store`, local folders and object stores alike).

- A stored object with an ETag (S3, S3-protocol servers; GCS's ``md5Hash``): the ETag without its quotes,
  ``9b2cf535f27731c974343645a3985328``.
- Anything else (local files, stores without ETags): ``mtime:<ns>``, the modification time in nanoseconds
  as ``int(seconds as a float * 1e9)`` (the rule outputs have always been written with, so they stay valid).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime


def version_of(etag: str | None = None, mtime: float | datetime | str | None = None) -> str:
    """The version of a file: its ETag (quotes taken off) where it has one, else ``mtime:<ns>`` of its
    modification time (seconds since the epoch, a datetime, or ISO 8601 text; None counts as 0)."""
    if etag:
        return str(etag).strip('"')
    if isinstance(mtime, datetime):
        seconds = mtime.timestamp()
    elif isinstance(mtime, str):
        seconds = datetime.fromisoformat(mtime.replace("Z", "+00:00")).timestamp()
    else:
        seconds = float(mtime or 0)
    return f"mtime:{int(seconds * 1e9)}"


def stat_version(st: os.stat_result) -> str:
    """The version of a local file from its ``os.stat`` result."""
    return version_of(mtime=st.st_mtime)


def file_version(path: str | os.PathLike) -> str:
    """The version of a local file (changes when it is rewritten)."""
    return stat_version(os.stat(path))


def info_version(info: Mapping) -> str:
    """The version of a stored file from its fsspec info (s3fs, gcsfs, local): ETag, else modification time."""
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    return version_of(etag, info.get("mtime") or info.get("LastModified") or info.get("updated"))
