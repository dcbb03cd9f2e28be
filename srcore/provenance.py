"""What an output says about itself, and how a rerun recognises it: :class:`Provenance` (the AI notice, the
model, the source and its version, the run), its XMP (srcore's own ``rdf:Description``, merged beside the
archive's properties), and the one "finished" rule (:func:`is_output_of`).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from . import __version__

# IPTC's term for media changed by a trained model (used by C2PA and photo agencies)
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"


@dataclass(frozen=True)
class Provenance:
    """What an output says about itself: AI-upscaled, by which model and scale, details may be synthesized.

    ``source`` and ``source_version`` (the input's URI and etag or mtime) and ``run`` (the job run that wrote
    it) let a rerun of a bucket job recognise a finished output: see :func:`read_provenance`.
    """

    model: str
    scale: float
    source: str | None = None
    source_version: str | None = None
    run: str | None = None

    @property
    def description(self) -> str:
        return (f"AI-upscaled x{self.scale:g} by srcore {__version__} with model {self.model}. "
                "Details may be synthesized by the model and not present in the original.")

    @property
    def software(self) -> str:
        return f"srcore {__version__}"

    def fields(self) -> dict[str, str]:
        """The machine-readable part, as written into XMP under the srcore namespace."""
        values = {"model": self.model, "scale": f"{self.scale:g}", "source": self.source,
                  "sourceVersion": self.source_version, "run": self.run}
        return {k: v for k, v in values.items() if v is not None}

    def xmp(self, existing: bytes | None = None) -> bytes:
        """The output's XMP packet: ``existing`` (the source's) with every property kept and srcore's added as an
        ``rdf:Description`` of its own, or srcore's alone. IPTC's DigitalSourceType, ``xmp:CreatorTool`` and
        ``dc:description`` (the AI notice) are added where the source has none; ``srcore:notice`` always."""
        if existing:
            merged = _merge_xmp(existing, self)
            if merged is not None:
                return merged
            warnings.warn(f"{self.source or 'input'}: its XMP packet is not well-formed XMP; the output carries "
                          "srcore's XMP without it", stacklevel=3)
        return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
                f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF_NS}">'
                f'{self._description("", set())}</rdf:RDF></x:xmpmeta><?xpacket end="w"?>').encode()

    def _description(self, about: str, present: set[str]) -> str:
        """srcore's ``rdf:Description`` (about ``about``, the packet's own subject), leaving out the shared
        properties the packet already has (``present``: ``{namespace}name``). It binds the prefixes it uses
        itself, so it reads the same inside any packet."""
        ours = "".join(f"<srcore:{k}>{_xml_escape(v)}</srcore:{k}>" for k, v in self.fields().items())
        shared = ""
        if f"{{{IPTC_EXT_NS}}}DigitalSourceType" not in present:
            shared += f"<Iptc4xmpExt:DigitalSourceType>{DIGITAL_SOURCE_TYPE}</Iptc4xmpExt:DigitalSourceType>"
        if f"{{{XMP_NS}}}CreatorTool" not in present:
            shared += f"<xmp:CreatorTool>{self.software}</xmp:CreatorTool>"
        if f"{{{DC_NS}}}description" not in present:
            shared += (f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{_xml_escape(self.description)}'
                       "</rdf:li></rdf:Alt></dc:description>")
        return (f'<rdf:Description xmlns:rdf="{RDF_NS}" rdf:about="{_xml_escape(about, quote=True)}" '
                f'xmlns:dc="{DC_NS}" xmlns:xmp="{XMP_NS}" xmlns:Iptc4xmpExt="{IPTC_EXT_NS}" '
                f'xmlns:srcore="{SRCORE_XMP_NS}">{shared}'
                f"<srcore:notice>{_xml_escape(self.description)}</srcore:notice>{ours}</rdf:Description>")

    def png_text(self) -> dict[str, str]:
        """srcore's PNG text chunks; ``Description`` only where the source has none of its own
        (:func:`png_chunks`)."""
        return {"Software": self.software, "Description": self.description, "AI-Upscaled": "true",
                "srcore:notice": self.description, "srcore:model": self.model, "srcore:scale": f"{self.scale:g}"}


DC_NS = "http://purl.org/dc/elements/1.1/"
XMP_NS = "http://ns.adobe.com/xap/1.0/"
IPTC_EXT_NS = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_NOTICE = re.compile(r"AI-upscaled x[\d.]+ by srcore ")


def is_srcore_notice(text) -> bool:
    """Is a caption srcore's own AI notice (an earlier srcore output upscaled again), not the archive's?"""
    return bool(_NOTICE.match(str(text or "").strip()))


def _earlier_srcore_properties(packet: bytes) -> re.Pattern | None:
    """What an earlier srcore output's XMP holds of srcore's (its provenance fields, and the notice, creator
    tool and source type it added): removed, as the new provenance replaces them. Only where the packet binds
    the ``srcore`` prefix to srcore's namespace."""
    if f'xmlns:srcore="{SRCORE_XMP_NS}"'.encode() not in packet:
        return None
    return re.compile(
        rb"<srcore:(\w+)>[^<]*</srcore:\1>|\s+srcore:\w+=\"[^\"]*\""
        rb"|<dc:description>\s*<rdf:Alt>\s*<rdf:li[^>]*>AI-upscaled x[^<]*</rdf:li>\s*</rdf:Alt>\s*</dc:description>"
        rb"|<xmp:CreatorTool>srcore [^<]*</xmp:CreatorTool>"
        rb"|<Iptc4xmpExt:DigitalSourceType>" + re.escape(DIGITAL_SOURCE_TYPE.encode()) +
        rb"</Iptc4xmpExt:DigitalSourceType>")


def _rdf_layout(packet: bytes) -> tuple[int, str, set[str]] | None:
    """Where srcore's Description goes (the byte just after the ``rdf:RDF`` start tag: first, so a reader
    of the file's head finds the provenance), the packet's subject (``rdf:about``) and the properties its
    Descriptions have (``{namespace}name``); None when it is not XML with an ``rdf:RDF`` element. Expat, by
    namespace: prefixes, comments and CDATA cannot mislead it."""
    from xml.parsers import expat

    parser = expat.ParserCreate(namespace_separator="}")
    rdf, description, about = f"{RDF_NS}}}RDF", f"{RDF_NS}}}Description", f"{RDF_NS}}}about"
    found = {"after": None, "pending": False, "about": None}
    stack: list[str] = []
    present: set[str] = set()

    def mark(*_) -> None:
        if found["pending"]:
            found["after"], found["pending"] = parser.CurrentByteIndex, False

    def start(name: str, attrs: dict) -> None:
        mark()
        parent = stack[-1] if stack else None
        stack.append(name)
        if name == rdf and found["after"] is None:
            found["pending"] = True
        elif name == description and parent == rdf:
            if found["about"] is None:
                found["about"] = attrs.get(about, "")
            present.update("{" + key if "}" in key else key for key in attrs)
        elif parent == description:
            present.add("{" + name if "}" in name else name)

    def end(name: str) -> None:
        mark()
        stack.pop()

    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = parser.CommentHandler = parser.ProcessingInstructionHandler = mark
    try:
        parser.Parse(packet, True)
    except expat.ExpatError:
        return None
    if found["after"] is None:
        return None
    return found["after"], found["about"] or "", present


def _merge_xmp(existing: bytes, provenance: Provenance) -> bytes | None:
    """``existing`` with srcore's Description inserted first in its ``rdf:RDF`` (the packet's own bytes
    otherwise untouched; an earlier srcore provenance in it is replaced), or None when it is not XMP that
    can be read. No DTDs: entity expansion has no place in XMP."""
    if b"<!DOCTYPE" in existing or b"<!ENTITY" in existing:
        return None
    earlier = _earlier_srcore_properties(existing)
    if earlier is not None:
        existing = earlier.sub(b"", existing)
    layout = _rdf_layout(existing)
    if layout is None:
        return None
    at, about, present = layout
    merged = existing[:at] + provenance._description(about, present).encode() + existing[at:]
    return merged if _rdf_layout(merged) is not None else None


SRCORE_XMP_NS = "https://srcore.dev/ns/provenance/1.0/"
_SRCORE_FIELD = re.compile(rb"<srcore:(\w+)>([^<]*)</srcore:\1>")
_SRCORE_BINDING = f'xmlns:srcore="{SRCORE_XMP_NS}"'.encode()


def _xml_escape(text: str, quote: bool = False) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace('"', "&quot;") if quote else text


def read_provenance(data: bytes) -> dict[str, str]:
    """The srcore fields of the XMP packet in (part of) an encoded file, e.g. {"model": ..., "run": ...}.

    XMP is stored uncompressed by every writer here (PNG iTXt, JPEG APP1, WebP XMP chunk, TIFF tag 700), so
    a byte search finds it without decoding: srcore's ``rdf:Description``, from the element that binds its
    namespace to the end of that Description, whatever packet it sits in. An empty dict means none was found
    in ``data``.
    """
    start = data.find(_SRCORE_BINDING)
    if start < 0:
        return {}
    end = data.find(b"Description>", start)
    packet = data[start:end] if end > 0 else b""
    return {k.decode(): _xml_unescape(v.decode("utf-8", "replace")) for k, v in _SRCORE_FIELD.findall(packet)
            if k != b"notice"}  # the record, not the notice's words


PROVENANCE_PROBE_BYTES = 1 << 16


def probe_provenance(read: Callable[[int, int], bytes], size: int) -> dict[str, str]:
    """:func:`read_provenance` of a stored file of ``size`` bytes, reading as little as it can: the first
    64 KB, then the last (WebP and some TIFFs keep XMP at the end), then all. ``read(start, end)`` gives bytes."""
    probe = PROVENANCE_PROBE_BYTES
    found = read_provenance(read(0, min(size, probe)))
    if not found and size > probe:
        found = read_provenance(read(max(0, size - probe), size))
    if not found and size > 2 * probe:
        found = read_provenance(read(0, size))
    return found


def is_output_of(read: Callable[[int, int], bytes], size: int, source_version: str, model: str, scale: float,
                 run: str | None = None) -> bool:
    """Is the stored file (``size`` bytes, ``read(start, end)`` gives them) the output of this version of its
    input by this model at this scale, and with ``run`` written by that run? The one "finished" rule: reruns of
    ``srcore upscale`` and of the bucket job skip what it accepts. A file that cannot be read is unfinished."""
    try:
        found = probe_provenance(read, size)
    except OSError:
        return False
    return matches(found, source_version, model, scale, run)


def matches(found: dict[str, str], source_version: str, model: str, scale: float, run: str | None = None) -> bool:
    """Does an output's srcore record (:func:`read_provenance`) say it was made from this version of its input
    by this model at this scale (and by ``run``, when given)? Images and videos (:mod:`srcore.video`) alike."""
    want = {"sourceVersion": source_version, "model": model, "scale": f"{scale:g}"}
    return all(found.get(k) == v for k, v in want.items()) and run in (None, found.get("run"))


def _xml_unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")
