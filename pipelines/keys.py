"""Output keys for input keys: the same relative path under the output prefix, never outside it.

Object keys are arbitrary strings: ``a/../../b.png``, ``/abs.png``, ``a//b.png``, control characters,
right-to-left overrides, and two spellings of one accented name are all valid S3 keys. Written as local paths
or joined to a prefix they can escape it or collide, so every segment is made safe here.
"""

from __future__ import annotations

import hashlib
import posixpath
import unicodedata
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from srcore.imageio import EXTENSIONS, IMAGE_SUFFIXES
from srcore.upscale import output_format

_MAX_SEGMENT_BYTES = 255  # the usual file-name limit of local filesystems


def safe_relative(relative: str) -> str:
    """A relative path with only plain segments: no ``..``/``.``/empty parts, no control or format characters,
    NFC-normalised, each segment at most 255 bytes. Joined to any prefix, it stays inside it."""
    parts = []
    for part in unicodedata.normalize("NFC", relative).replace("\\", "/").split("/"):
        part = "".join(ch if ch.isprintable() else "_" for ch in part).strip()
        if part in ("", "."):
            continue
        if set(part) == {"."}:  # "..", "...": parent references on some systems
            part = "_" * len(part)
        parts.append(_shorten(part))
    return "/".join(parts) or "_"


def _shorten(segment: str) -> str:
    if len(segment.encode()) <= _MAX_SEGMENT_BYTES:
        return segment
    stem, ext = posixpath.splitext(segment)
    digest = hashlib.sha1(segment.encode()).hexdigest()[:10]
    keep = _MAX_SEGMENT_BYTES - len(ext.encode()) - len(digest) - 1
    return stem.encode()[:keep].decode(errors="ignore") + "-" + digest + ext


def plan_outputs(relatives: Sequence[str], fmt: str | None) -> list[str]:
    """The output key (relative to the output prefix) of each input key (relative to the input prefix), in order.

    The output key is the safe input key with the output format's extension. Inputs that would share an
    output key (``photo.jpg`` and ``photo.png`` written as PNG, two Unicode spellings of one name, or two
    cases of one, which collide on macOS and Windows) each get a short hash of their own key instead, so no
    output overwrites another. Deterministic for a given listing. (:func:`plan_output_keys` on Arrow.)
    """
    return plan_output_keys(pa.array(relatives, pa.string()), fmt).to_pylist()


def plan_output_keys(relatives: pa.Array | pa.ChunkedArray, fmt: str | None,
                     chunk: int = 1 << 16) -> pa.Array:
    """:func:`plan_outputs` over an Arrow column, for archives of millions: keys are made a slice at a time
    and kept in Arrow; clashes are found by sorting 64-bit digests of the case-folded keys (16 bytes an input),
    then confirmed on the keys themselves."""
    relatives = relatives.combine_chunks() if isinstance(relatives, pa.ChunkedArray) else relatives
    pieces, digests = [], np.empty(len(relatives), np.uint64)
    for start in range(0, len(relatives), chunk):
        keys = [_wanted_key(r, fmt) for r in relatives.slice(start, chunk).to_pylist()]
        digests[start : start + len(keys)] = [_digest(k.casefold()) for k in keys]
        pieces.append(pa.array(keys, pa.string()))
    keys = pa.concat_arrays(pieces) if pieces else pa.array([], pa.string())
    order = np.argsort(digests, kind="stable")
    same = np.flatnonzero(digests[order][1:] == digests[order][:-1])
    groups: dict[int, list[int]] = {}  # digest -> inputs sharing it
    for i in same:
        groups.setdefault(int(digests[order[i]]), [int(order[i])]).append(int(order[i + 1]))
    collided = []
    for members in groups.values():
        by_key: dict[str, list[int]] = {}
        for i in members:  # a shared digest is a clash only where the keys themselves are equal
            by_key.setdefault(keys[i].as_py().casefold(), []).append(i)
        collided += [i for clash in by_key.values() if len(clash) > 1 for i in clash]
    if not collided:
        return keys
    collided.sort()
    renamed = []
    for i in collided:
        stem, ext = posixpath.splitext(keys[i].as_py())
        renamed.append(f"{stem}-{hashlib.sha1(relatives[i].as_py().encode()).hexdigest()[:8]}{ext}")
    mask = np.zeros(len(keys), bool)
    mask[collided] = True
    return pc.replace_with_mask(keys, pa.array(mask), pa.array(renamed, pa.string()))


def _wanted_key(relative: str, fmt: str | None) -> str:
    stem = safe_relative(relative)
    base, ext = posixpath.splitext(stem)
    if ext.lower() in IMAGE_SUFFIXES:
        stem = base
    return stem + EXTENSIONS[output_format(relative, fmt)]


def _digest(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
