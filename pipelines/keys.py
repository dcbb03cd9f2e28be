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
    output overwrites another. Deterministic for a given listing.

    Memory is one string per input and a 64-bit digest per distinct key (collisions are found by digest,
    then confirmed on the keys), not dictionaries of every key: archives hold millions.
    """
    keys: list[str] = []
    first: dict[int, int] = {}  # digest of the case-folded key -> the first input that wants it
    others: dict[str, int] = {}  # the same, by the key itself, for keys whose digest another key has
    collided: set[int] = set()
    for i, rel in enumerate(relatives):
        keys.append(_wanted_key(rel, fmt))
        folded = keys[i].casefold()
        j = first.setdefault(_digest(folded), i)
        if j != i and keys[j].casefold() != folded:  # a digest shared by two keys: not a clash
            j = others.setdefault(folded, i)
        if j != i:
            collided.update((j, i))
    for i in collided:
        stem, ext = posixpath.splitext(keys[i])
        keys[i] = f"{stem}-{hashlib.sha1(relatives[i].encode()).hexdigest()[:8]}{ext}"
    return keys


def _wanted_key(relative: str, fmt: str | None) -> str:
    stem = safe_relative(relative)
    base, ext = posixpath.splitext(stem)
    if ext.lower() in IMAGE_SUFFIXES:
        stem = base
    return stem + EXTENSIONS[output_format(relative, fmt)]


def _digest(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
