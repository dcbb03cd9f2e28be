"""Output names for input names, one rule for ``srcore upscale`` and the bucket job: the same relative path
under the output folder or prefix, never outside it, and never one output for two inputs.

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

from .imageio import EXTENSIONS, IMAGE_SUFFIXES
from .upscale import output_format
from .video import is_video, output_suffix

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


def plan_outputs(relatives: Sequence[str], fmt: str | None, identities: Sequence[str] | None = None) -> list[str]:
    """The output key (relative to the output prefix) of each input key (relative to the input prefix), in order.

    The output key is the safe input key with the output format's extension. Inputs that would share an
    output key (``photo.jpg`` and ``photo.png`` written as PNG, two Unicode spellings of one name, or two
    cases of one, which collide on macOS and Windows) each get a short hash of their own key instead, so no
    output overwrites another. Deterministic for a given listing. The bucket job's plan runs the same three
    steps a page at a time (:func:`wanted_keys`, :func:`clashing`, :func:`renamed_keys`).

    ``identities``: what a clashing input's hash is taken from (default: its relative key, which a listing
    never repeats; ``srcore upscale`` passes the absolute path of files given with the same relative name).
    """
    relatives = list(relatives)
    identities = relatives if identities is None else list(identities)
    keys, key_digests = wanted_keys(relatives, fmt)
    renamed = renamed_keys([(int(i), keys[i], identities[i]) for i in clashing(key_digests)])
    return [renamed.get(i, key) for i, key in enumerate(keys)]


def wanted_keys(relatives: list[str], fmt: str | None) -> tuple[list[str], np.ndarray]:
    """Each input's output key before clashes are settled, and the 64-bit digest of its case-folded form
    (8 bytes an input: all a listing of millions needs to keep to find clashes)."""
    keys = [_wanted_key(r, fmt) for r in relatives]
    return keys, digests([k.casefold() for k in keys])


def clashing(key_digests: np.ndarray) -> np.ndarray:
    """Indices of the inputs whose key digest another input shares: clash candidates, in order."""
    order = np.argsort(key_digests, kind="stable")
    ordered = key_digests[order]
    same = np.flatnonzero(ordered[1:] == ordered[:-1])
    return np.unique(np.concatenate([order[same], order[same + 1]]))


def renamed_keys(candidates: list[tuple[int, str, str]]) -> dict[int, str]:
    """New keys for the clash candidates (index, wanted key, relative input key) whose keys are really equal
    (case-folded): each gets a short hash of its own input key, so no output overwrites another."""
    by_key: dict[str, list[tuple[int, str, str]]] = {}
    for candidate in candidates:
        by_key.setdefault(candidate[1].casefold(), []).append(candidate)
    renamed = {}
    for clash in by_key.values():
        if len(clash) > 1:
            for index, key, relative in clash:
                stem, ext = posixpath.splitext(key)
                renamed[index] = f"{stem}-{hashlib.sha1(relative.encode()).hexdigest()[:8]}{ext}"
    return renamed


def digests(texts: list[str]) -> np.ndarray:
    """64-bit BLAKE2b digests of strings, as unsigned integers."""
    joined = b"".join(hashlib.blake2b(t.encode(), digest_size=8).digest() for t in texts)
    return np.frombuffer(joined, "<u8").astype(np.uint64) if texts else np.empty(0, np.uint64)


def _wanted_key(relative: str, fmt: str | None) -> str:
    stem = safe_relative(relative)
    base, ext = posixpath.splitext(stem)
    if is_video(relative):  # a video keeps its container where srcore writes it (--format is for images)
        return base + output_suffix(relative)
    if ext.lower() in IMAGE_SUFFIXES:
        stem = base
    return stem + EXTENSIONS[output_format(relative, fmt)]
