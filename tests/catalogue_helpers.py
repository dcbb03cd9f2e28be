"""Archive scans as a cataloguer leaves them: a caption, artist, copyright, dates, GPS and camera in EXIF, an
identifier and rights in XMP, an IPTC-IIM record, 600 dpi; and the checks that an output kept all of it."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import piexif
from PIL import Image, IptcImagePlugin, PngImagePlugin

CAPTION = "Lincoln at Antietam, glass negative, 1862"
ARTIST = "Alexander Gardner"
RIGHTS = "Public domain; Library of Congress"
IDENTIFIER = "LC-DIG-cwpb-04351"
IPTC_CAPTION = b"President Lincoln with officers"
DPI = 600
DC = "http://purl.org/dc/elements/1.1/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
SRCORE = "https://srcore.dev/ns/provenance/1.0/"

XMP = f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF}">
<rdf:Description rdf:about="" xmlns:dc="{DC}" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/">
<dc:identifier>{IDENTIFIER}</dc:identifier>
<dc:rights><rdf:Alt><rdf:li xml:lang="x-default">{RIGHTS}</rdf:li></rdf:Alt></dc:rights>
<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{CAPTION}</rdf:li></rdf:Alt></dc:description>
<photoshop:Credit>Library of Congress</photoshop:Credit>
</rdf:Description></rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>""".encode()


def _exif(width: int, height: int) -> bytes:
    return piexif.dump({
        "0th": {piexif.ImageIFD.ImageDescription: CAPTION.encode(), piexif.ImageIFD.Artist: ARTIST.encode(),
                piexif.ImageIFD.Copyright: RIGHTS.encode(), piexif.ImageIFD.Make: b"Hasselblad",
                piexif.ImageIFD.Model: b"Flextight X5", piexif.ImageIFD.XResolution: (DPI, 1),
                piexif.ImageIFD.YResolution: (DPI, 1), piexif.ImageIFD.ResolutionUnit: 2},
        "Exif": {piexif.ExifIFD.DateTimeOriginal: b"1862:10:03 12:00:00", piexif.ExifIFD.PixelXDimension: width,
                 piexif.ExifIFD.PixelYDimension: height},
        "GPS": {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: ((39, 1), (28, 1), (24, 1)),
                piexif.GPSIFD.GPSLongitudeRef: b"W", piexif.GPSIFD.GPSLongitude: ((77, 1), (44, 1), (41, 1))},
    })


def _iim() -> bytes:
    """An IPTC-IIM record: 2:120 caption, 2:116 copyright notice."""
    def dataset(number: int, value: bytes) -> bytes:
        return b"\x1c\x02" + bytes([number]) + len(value).to_bytes(2, "big") + value

    return dataset(120, IPTC_CAPTION) + dataset(116, RIGHTS.encode())


def _photoshop() -> bytes:
    iim = _iim()
    return b"8BIM\x04\x04\x00\x00" + len(iim).to_bytes(4, "big") + iim + b"\x00" * (len(iim) % 2)


def catalogued_scans(folder: Path, size: tuple[int, int] = (12, 10)) -> dict[str, Path]:
    """scan.jpg, scan.png and scan.tif, each with the whole catalogue in the places its format keeps it."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    pixels = np.random.default_rng(7).integers(0, 256, (h, w, 3), np.uint8)
    im = Image.fromarray(pixels)
    paths = {fmt: folder / f"scan.{fmt}" for fmt in ("jpg", "png", "tif")}
    app13 = b"Photoshop 3.0\x00" + _photoshop()
    im.save(paths["jpg"], "JPEG", exif=_exif(w, h), xmp=XMP, dpi=(DPI, DPI),
            extra=b"\xff\xed" + (2 + len(app13)).to_bytes(2, "big") + app13)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    info.add_text("Title", "Antietam")
    hexed = _iim().hex()
    info.add_text("Raw profile type iptc", f"\niptc\n{len(_iim()):8d}\n{hexed}\n", zip=True)
    im.save(paths["png"], "PNG", pnginfo=info, exif=_exif(w, h), dpi=(DPI, DPI))
    tags = Image.Exif()  # Pillow writes a TIFF's tags from one place: EXIF (its first IFD) and the rest together
    tags.load(_exif(w, h))
    tags.update({700: XMP, 33723: _iim(), 34377: _photoshop()})
    im.save(paths["tif"], "TIFF", exif=tags, dpi=(DPI, DPI))
    return paths


def assert_catalogue_kept(path: Path, scale: float, dpi_factor: float, model: str | None = None) -> None:
    """Everything :func:`catalogued_scans` put in is in ``path``, read back by readers other than the writer
    (piexif for EXIF, ElementTree for XMP, Pillow's IPTC reader), with srcore's provenance beside it."""
    data = path.read_bytes()
    im = Image.open(io.BytesIO(data))
    exif = piexif.load(im.info["exif"] if im.format == "PNG" else data)
    zeroth, sub, gps = exif["0th"], exif["Exif"], exif["GPS"]
    assert zeroth[piexif.ImageIFD.ImageDescription].decode() == CAPTION, path  # the caption, not the AI notice
    assert zeroth[piexif.ImageIFD.Artist].decode() == ARTIST
    assert zeroth[piexif.ImageIFD.Copyright].decode() == RIGHTS
    assert zeroth[piexif.ImageIFD.Make] == b"Hasselblad" and zeroth[piexif.ImageIFD.Model] == b"Flextight X5"
    assert zeroth[piexif.ImageIFD.Software].decode().startswith("srcore")
    assert sub[piexif.ExifIFD.DateTimeOriginal] == b"1862:10:03 12:00:00"
    assert (sub[piexif.ExifIFD.PixelXDimension], sub[piexif.ExifIFD.PixelYDimension]) == im.size, path
    assert gps[piexif.GPSIFD.GPSLatitude] == ((39, 1), (28, 1), (24, 1)) and gps[piexif.GPSIFD.GPSLatitudeRef] == b"N"
    x_res = zeroth[piexif.ImageIFD.XResolution]
    assert abs(x_res[0] / x_res[1] - DPI * dpi_factor) < 0.01, (path, x_res)
    assert abs(im.info["dpi"][0] - DPI * dpi_factor) < 0.1, (path, im.info.get("dpi"))
    # XMP: every property of the source, and srcore's beside them
    root = ET.fromstring(im.info["xmp"])
    assert [e.text for e in root.iter(f"{{{DC}}}identifier")] == [IDENTIFIER]
    assert [li.text for e in root.iter(f"{{{DC}}}rights") for li in e.iter(f"{{{RDF}}}li")] == [RIGHTS]
    assert [li.text for e in root.iter(f"{{{DC}}}description") for li in e.iter(f"{{{RDF}}}li")] == [CAPTION]
    assert [e.text for e in root.iter("{http://ns.adobe.com/photoshop/1.0/}Credit")] == ["Library of Congress"]
    notice = [e.text for e in root.iter(f"{{{SRCORE}}}notice")]
    assert len(notice) == 1 and notice[0].startswith(f"AI-upscaled x{scale:g}")
    if model:
        assert [e.text for e in root.iter(f"{{{SRCORE}}}model")] == [model]
    # IPTC-IIM
    if im.format == "PNG":
        raw = im.text["Raw profile type iptc"]
        assert IPTC_CAPTION.hex() in raw.replace("\n", "")
        assert im.text["Title"] == "Antietam" and "AI-upscaled" in im.text["srcore:notice"]
    else:
        iptc = IptcImagePlugin.getiptcinfo(im)
        assert iptc[(2, 120)] == IPTC_CAPTION and iptc[(2, 116)] == RIGHTS.encode(), (path, iptc)
