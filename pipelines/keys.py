"""Output keys for input keys: the same relative path under the output prefix, never outside it.

Object keys are arbitrary strings: ``a/../../b.png``, ``/abs.png``, ``a//b.png``, control characters,
right-to-left overrides, and two spellings of one accented name are all valid S3 keys. Written as local paths
or joined to a prefix they can escape it or collide, so every segment is made safe here.
"""

from __future__ import annotations

import hashlib
import posixpath
import unicodedata
from collections import defaultdict

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


def plan_outputs(relatives: list[str], fmt: str | None) -> dict[str, str]:
    """Map each input key (relative to the input prefix) to its output key (relative to the output prefix).

    The output key is the safe input key with the output format's extension. Inputs that would share an
    output key (``photo.jpg`` and ``photo.png`` written as PNG, or two Unicode spellings of one name) each get
    a short hash of their own key instead, so no output overwrites another. Deterministic for a given listing.
    """
    wanted = {}
    for rel in relatives:
        stem = safe_relative(rel)
        base, ext = posixpath.splitext(stem)
        if ext.lower() in IMAGE_SUFFIXES:
            stem = base
        wanted[rel] = (stem, EXTENSIONS[output_format(rel, fmt)])
    groups: dict[str, list[str]] = defaultdict(list)
    for rel, (stem, ext) in wanted.items():
        groups[(stem + ext).casefold()].append(rel)  # case-insensitive filesystems (macOS, Windows) collide too
    plan = {}
    for members in groups.values():
        for rel in members:
            stem, ext = wanted[rel]
            if len(members) > 1:
                stem = f"{stem}-{hashlib.sha1(rel.encode()).hexdigest()[:8]}"
            plan[rel] = stem + ext
    return plan
