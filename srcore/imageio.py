"""Image decoding and encoding for upscaling: every common mode, 16-bit, EXIF orientation, ICC, provenance.

Pillow decodes and encodes most images. OpenCV decodes 16-bit colour PNGs and TIFFs, which Pillow reduces
to 8 bits. tifffile writes 16-bit colour TIFFs with metadata. Pixels travel as (H, W, C) uint8 or uint16
arrays with C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA).
"""

from __future__ import annotations

import io
import re
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .provenance import Provenance, is_srcore_notice

# srcore enforces its own, configurable pixel limit (max_pixels) instead of Pillow's global one, so huge
# satellite scenes can be allowed while decompression bombs are still refused before any pixel is decoded.
Image.MAX_IMAGE_PIXELS = None
# Pillow expects one IPTC-NAA word where Photoshop writes many, and keeps one: srcore reads them all itself
warnings.filterwarnings("ignore", message="Metadata Warning, tag 33723 had too many entries")
# 200 MP lets a Sentinel-2 tile (10980^2 = 121 MP) through and refuses a 20000^2 bomb by default
DEFAULT_MAX_PIXELS = 200_000_000
FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "tiff": "TIFF", "tif": "TIFF"}
# COG: a Cloud-Optimized GeoTIFF, written by srcore.geo for georeferenced rasters
EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "COG": ".tif"}
# input file names srcore treats as images (folders, buckets, benchmark sets); .jp2: JPEG 2000 rasters
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jp2")
ORIENTATION_TAG = 0x0112


class ImageDecodeError(ValueError):
    """An input that cannot be decoded; the message names the file."""


@dataclass
class Picture:
    """Decoded pixels and what must survive the round trip.

    Attributes:
        pixels: (H, W, C) uint8 or uint16; C = 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA.
        source_mode: the file's own mode, e.g. ``"RGB"``, ``"P"``, ``"CMYK"``, ``"RGBA;16"``.
        icc_profile: embedded colour profile, carried to the output unchanged.
        exif: EXIF block with the orientation reset (pixels are already upright), or None.
        format: the source format (``"PNG"``, ``"JPEG"``...).
        text: a PNG's text chunks (titles, credits, raw IPTC profiles), its XMP aside.
        xmp: the source's XMP packet, kept whole; the output's provenance is added beside its properties.
        photoshop: Photoshop image resources (JPEG APP13, TIFF tag 34377), which hold the IPTC-IIM record.
        dpi: (x, y) pixels per inch, as the file states it; an output's is the source's scaled or kept
            (:func:`with_resolution`).
    """

    pixels: np.ndarray
    source_mode: str
    icc_profile: bytes | None = None
    exif: bytes | None = None
    format: str | None = None
    text: dict[str, str] = field(default_factory=dict)
    xmp: bytes | None = None
    photoshop: bytes | None = None
    dpi: tuple[float, float] | None = None

    @property
    def bit_depth(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[1], self.pixels.shape[0]

    @property
    def mode(self) -> str:
        base = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[self.pixels.shape[2]]
        return base + (";16" if self.bit_depth == 16 else "")


# --------------------------------------------------------------------------- decoding


def decode(data: bytes, name: str = "<bytes>", max_pixels: int | None = DEFAULT_MAX_PIXELS,
           jpeg_pixels: Callable[[bytes], np.ndarray] | None = None) -> Picture:
    """Decode image bytes. Errors (empty, truncated, corrupt, unknown format, too many pixels) name ``name``.

    ``jpeg_pixels``: decodes the pixels of 8-bit RGB JPEGs instead of Pillow, (H, W, 3) uint8 as stored (before
    EXIF orientation), e.g. on a GPU (:func:`srcore.gpu_codecs.jpeg_decoder`); Pillow still reads the header and
    the metadata, and decodes the file when ``jpeg_pixels`` fails on it.
    """
    if not data:
        raise ImageDecodeError(f"{name}: empty file (0 bytes)")
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{name}: not a recognised image format") from None
    except Exception as exc:
        raise ImageDecodeError(f"{name}: cannot open image ({exc})") from None
    w, h = im.size
    if max_pixels is not None and w * h > max_pixels:
        raise ImageDecodeError(f"{name}: {w}x{h} is {w * h / 1e6:.0f} megapixels, over the limit of "
                               f"{max_pixels / 1e6:.0f} (raise max_pixels / --max-input-pixels to allow it)")
    fmt, icc, text = im.format, im.info.get("icc_profile"), {}
    try:
        _refuse_what_would_be_lost(im, name)  # inside: counting a broken file's frames is a decode error too
        exif = im.getexif()
        orientation = exif.get(ORIENTATION_TAG, 1)
        if _is_16bit_colour(data, im):
            pixels = _orient(_decode_16bit_colour(data, fmt), orientation)
            source_mode = ("RGBA" if pixels.shape[2] == 4 else "RGB") + ";16"
            chunks = im.info  # the text before the pixels (Pillow's 8-bit load would cost a full decode)
        else:
            source_mode = im.mode
            pixels = _other_jpeg_pixels(data, im, jpeg_pixels)
            if pixels is not None:
                pixels = _orient(pixels, orientation)
            else:
                im.load()
                # exif_transpose copies even an upright image: 4 bytes a pixel more at the decode's peak
                pixels = _pil_to_pixels(im if orientation == 1 else ImageOps.exif_transpose(im))
            chunks = im.text if fmt == "PNG" else {}
        if fmt == "PNG":  # keep the source's text chunks (titles, credits) alongside ours, not its XMP:
            # an output's only XMP packet is its own provenance (the AI notice, the resume record)
            text = {k: v for k, v in chunks.items() if isinstance(v, str) and not _is_xmp(k, v)}
    except ImageDecodeError:
        raise
    except Exception as exc:  # truncated data, broken chunks...
        if "OutOfMemory" in type(exc).__name__:  # a full GPU is not a broken file
            raise
        raise ImageDecodeError(f"{name}: truncated or corrupt image data ({type(exc).__name__}: {exc})") from None
    if pixels.shape[2] > 4:
        raise _too_many_channels(name, pixels.shape[2])
    if ORIENTATION_TAG in exif:
        exif[ORIENTATION_TAG] = 1
    if fmt == "TIFF":  # a TIFF's first IFD is its EXIF: what describes its pixels, or is kept apart, is not
        for tag in _TIFF_OWN_TAGS.intersection(exif):
            del exif[tag]
        if _ARRAY_DESCRIPTION.match(str(exif.get(0x010E, ""))):
            del exif[0x010E]
    return Picture(pixels, source_mode, icc, exif.tobytes() if len(exif) else None, fmt, text,
                   _bytes_or_none(im.info.get("xmp")), _photoshop_resources(im, data), _dpi(im.info.get("dpi")))


# strips, tiles, sample layout, compression, predictor, colour (these describe the file's own pixels);
# ICC (34675), XMP (700), IPTC (33723) and Photoshop (34377), which Picture keeps in fields of their own
_TIFF_OWN_TAGS = {254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325,
                  330, 338, 339, 340, 341, 347, 513, 514, 529, 530, 531, 532, 700, 33723, 34377, 34675}
# what tifffile and ImageJ write into ImageDescription about the array they saved: not a caption
_ARRAY_DESCRIPTION = re.compile(r'\s*(\{\s*"shape"|ImageJ=|<\?xml[^>]*>\s*<OME)')


def _bytes_or_none(value) -> bytes | None:
    if isinstance(value, str):
        return value.encode()
    return bytes(value) if value else None


PHOTOSHOP_APP13 = b"Photoshop 3.0\x00"
IPTC_RESOURCE = 0x0404  # the Photoshop image resource that holds an IPTC-IIM record


def _tiff_words_as_bytes(data: bytes, tag: int) -> bytes | None:
    """A TIFF tag stored as SHORT or LONG words whose content is bytes (IPTC-NAA): the words' bytes in the
    file's own order, as written."""
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        found = tif.pages[0].tags.get(tag)
        if found is None:
            return None
        words = np.atleast_1d(np.asarray(found.value))
        return words.astype(words.dtype.newbyteorder(tif.byteorder)).tobytes()


def _photoshop_resources(im: Image.Image, data: bytes) -> bytes | None:
    """A JPEG's APP13 or a TIFF's Photoshop tag (34377); a TIFF's bare IPTC-IIM tag (33723) as resource 0x0404."""
    if im.format == "JPEG":
        parts = [data[len(PHOTOSHOP_APP13):] for marker, data in getattr(im, "applist", [])
                 if marker == "APP13" and data.startswith(PHOTOSHOP_APP13)]
        return b"".join(parts) or None
    if im.format == "TIFF":
        found = _bytes_or_none(im.tag_v2.get(34377))
        if found:
            return found
        if im.tag_v2.tagtype.get(33723) in (3, 4, 9):  # SHORT or LONG words (as Photoshop writes it): Pillow
            iim = _tiff_words_as_bytes(data, 33723)  # keeps one word of them; tifffile reads them all
        else:
            iim = _bytes_or_none(im.tag_v2.get(33723))
        if iim:
            return _resource_block(IPTC_RESOURCE, iim)
    return None


def _resource_block(resource_id: int, data: bytes) -> bytes:
    """One Photoshop image resource: 8BIM, id, empty name, size, data (padded to even)."""
    return (b"8BIM" + resource_id.to_bytes(2, "big") + b"\x00\x00" + len(data).to_bytes(4, "big") + data
            + b"\x00" * (len(data) % 2))


def iptc_record(photoshop: bytes | None) -> bytes | None:
    """The IPTC-IIM record inside Photoshop image resources (resource 0x0404), or None."""
    i = 0
    while photoshop and i + 12 <= len(photoshop) and photoshop[i:i + 4] == b"8BIM":
        resource = int.from_bytes(photoshop[i + 4:i + 6], "big")
        name_len = photoshop[i + 6]
        j = i + 6 + 1 + name_len + ((1 + name_len) % 2)  # Pascal string padded to even
        size = int.from_bytes(photoshop[j:j + 4], "big")
        if resource == IPTC_RESOURCE:
            return photoshop[j + 4:j + 4 + size]
        i = j + 4 + size + size % 2
    return None


def _dpi(value) -> tuple[float, float] | None:
    try:
        x, y = (round(float(v), 2) for v in value)
    except (TypeError, ValueError):
        return None
    return (x, y) if x > 0 and y > 0 else None


def _other_jpeg_pixels(data: bytes, im: Image.Image, jpeg_pixels: Callable[[bytes], np.ndarray] | None):
    """An 8-bit RGB JPEG's pixels from ``jpeg_pixels``, or None (not such a file, no decoder, or it failed: then
    Pillow decodes it, and says what is wrong with a broken file)."""
    if jpeg_pixels is None or im.format != "JPEG" or im.mode != "RGB":
        return None
    try:
        pixels = jpeg_pixels(data)
    except Exception as exc:
        if "OutOfMemory" in type(exc).__name__:  # the device is full, not the file odd: the caller retries
            raise
        return None  # a JPEG nvJPEG does not take (arithmetic coding, odd markers): Pillow's turn
    return pixels if pixels.shape == (im.size[1], im.size[0], 3) else None


def _is_xmp(key: str, value: str) -> bool:
    return key == "XML:com.adobe.xmp" or "<x:xmpmeta" in value


def _refuse_what_would_be_lost(im: Image.Image, name: str) -> None:
    """Frames beyond the first and channels beyond the mode's are refused with the reason, never dropped."""
    frames = _full_frames(im)
    if frames > 1:
        kind = "multi-page TIFF" if im.format == "TIFF" else f"animated {im.format}"
        raise ImageDecodeError(f"{name}: {kind} with {frames} frames; srcore upscales still images and would keep "
                               "only the first (split the frames to upscale each one)")
    if im.format == "TIFF":
        samples = im.tag_v2.get(277, 1)  # SamplesPerPixel
        if samples > len(im.getbands()):
            raise _too_many_channels(name, samples)


def _too_many_channels(name: str, channels: int) -> ImageDecodeError:
    return ImageDecodeError(f"{name}: {channels} channels per pixel; srcore upscales gray, gray + alpha, RGB and "
                            "RGBA, and would lose the others")


def _full_frames(im: Image.Image) -> int:
    """Frames of an animation or pages of a TIFF (not counting its reduced-resolution pages: thumbnails,
    overviews). A camera JPEG's extra MPO images (previews, depth maps) are not frames: its first is the photo."""
    n = getattr(im, "n_frames", 1)
    if n <= 1 or im.format not in ("GIF", "PNG", "WEBP", "TIFF"):
        return 1
    if im.format != "TIFF":
        return n
    full = 0
    try:
        for i in range(n):
            im.seek(i)
            full += not (im.tag_v2.get(254, 0) & 1)  # NewSubfileType bit 0: reduced-resolution version
    finally:
        im.seek(0)
    return full


def _is_16bit_colour(data: bytes, im: Image.Image) -> bool:
    if im.format == "PNG" and data[12:16] == b"IHDR":
        bit_depth, colour_type = data[24], data[25]
        return bit_depth == 16 and colour_type in (2, 4, 6)  # RGB, gray + alpha, RGBA
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))
        return max(bits) == 16 and len(bits) >= 3
    return False


def _decode_16bit_colour(data: bytes, fmt: str) -> np.ndarray:
    if fmt == "TIFF":
        import tifffile

        arr = tifffile.imread(io.BytesIO(data))
        if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
            arr = np.moveaxis(arr, 0, -1)
    else:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise ValueError("OpenCV could not decode the 16-bit image")
        if arr.ndim == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    if arr.ndim == 2:
        arr = arr[..., None]
    return np.ascontiguousarray(arr.astype(np.uint16))


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, C) array, as ImageOps.exif_transpose does."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 1)[::-1],
           8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(ops[orientation](arr)) if orientation in ops else arr


def _pil_to_pixels(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im).astype(np.uint16)[..., None]
    if mode in ("I", "F"):  # 32-bit gray: keep 16 bits of it
        return np.clip(np.asarray(im), 0, 65535).astype(np.uint16)[..., None]
    if mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
    elif mode in ("RGBa", "La"):
        im = im.convert(mode.upper())
    elif mode not in ("L", "LA", "RGB", "RGBA"):  # CMYK, YCbCr, LAB, HSV, RGBX
        im = im.convert("RGB")
    arr = np.asarray(im)
    return arr[..., None] if arr.ndim == 2 else arr


# --------------------------------------------------------------------------- encoding


def encode(picture: Picture, fmt: str = "png", quality: int = 95, provenance: Provenance | None = None,
           png_compression: int = 6, background: tuple[int, int, int] = (255, 255, 255),
           size: tuple[int, int] | None = None) -> bytes:
    """Encode to png, jpg, webp or tiff, keeping 16 bits where the format can (PNG, TIFF) and the source's
    catalogue (EXIF with the orientation reset, XMP, IPTC / Photoshop resources, ICC, text chunks, resolution),
    with the provenance added beside it (text chunks, EXIF where the source has no caption, its own XMP
    Description). WebP has no place for IPTC or resolution outside EXIF.

    ``png_compression``: zlib level 0-9; 1 encodes about 4.5x as fast as 6 for files about 7% larger.
    ``background``: JPEG has no alpha: images with alpha are composited on this RGB colour (dropping alpha
    would show whatever colour hides under transparent pixels).
    ``size``: the (width, height) the metadata states (EXIF pixel dimensions), when not the picture's own
    (a header encoded on a 1x1 image for pixels encoded elsewhere).
    """
    fmt_name = FORMATS.get(fmt.lower())
    if fmt_name is None:
        raise ValueError(f"output format must be one of {sorted(FORMATS)}, got {fmt!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    size = size or picture.size
    if fmt_name == "PNG":
        return _encode_png(picture, provenance, png_compression, size)
    xmp = _output_xmp(picture, provenance)
    if picture.bit_depth == 16 and fmt_name == "TIFF" and picture.pixels.shape[2] > 1:
        return _encode_16bit_colour_tiff(picture, provenance, xmp)
    if fmt_name in ("JPEG", "WEBP") and picture.bit_depth == 16:
        picture = replace(picture, pixels=to_8bit(picture.pixels))
    im = _pixels_to_pil(picture.pixels)
    if fmt_name == "JPEG":
        if im.mode in ("LA", "RGBA"):  # JPEG has no alpha: composite on the background
            base = Image.new("RGB", im.size, background).convert(im.mode[:-1])
            base.paste(im.convert(im.mode[:-1]), mask=im.getchannel("A"))
            im = base
        im = im.convert("L" if im.mode == "L" else "RGB")
        if picture.source_mode == "CMYK":
            im = im.convert("CMYK")
    elif fmt_name == "WEBP" and im.mode in ("L", "LA"):
        im = im.convert("RGBA" if im.mode == "LA" else "RGB")
    elif fmt_name == "TIFF" and picture.source_mode == "CMYK" and im.mode == "RGB":
        im = im.convert("CMYK")
    params: dict = {}
    if picture.icc_profile and im.mode != "CMYK":
        params["icc_profile"] = picture.icc_profile
    exif = _output_exif(picture, provenance, size)
    if fmt_name == "TIFF":  # a TIFF's EXIF is its first IFD: the catalogue tags go beside it there
        exif.update(_tiff_catalogue_tags(picture, xmp))
    if len(exif):
        params["exif"] = exif.tobytes()
    if picture.dpi and fmt_name in ("JPEG", "TIFF"):
        params["dpi"] = picture.dpi
    if fmt_name in ("JPEG", "WEBP"):
        params["quality"] = quality
        if fmt_name == "WEBP" and xmp:
            params["xmp"] = xmp
        elif fmt_name == "JPEG":  # the XMP segment before the Photoshop ones, which may carry a copy of it
            xmp = _jpeg_sized_xmp(xmp, provenance) if xmp else None
            extra = (b"\xff\xe1" + (2 + len(_JPEG_XMP_HEADER) + len(xmp)).to_bytes(2, "big") + _JPEG_XMP_HEADER
                     + xmp) if xmp else b""
            params["extra"] = extra + (_app13_segments(picture.photoshop) if picture.photoshop else b"")
    else:  # TIFF
        # libtiff (which compresses) cannot write EXIF's camera and GPS sub-IFDs, Pillow's own writer can
        # but does not compress: the catalogue comes first
        if not any(tag in exif for tag in (0x8769, 0x8825)):
            params["compression"] = "tiff_deflate"
    buf = io.BytesIO()
    im.save(buf, format=fmt_name, **params)
    return buf.getvalue()


_JPEG_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_JPEG_XMP_LIMIT = 65504  # one APP1 segment; longer packets need ExtendedXMP, which Pillow does not write


def _output_xmp(picture: Picture, provenance: Provenance | None) -> bytes | None:
    """The output's XMP: the source's with the provenance beside it (:meth:`Provenance.xmp`)."""
    return provenance.xmp(picture.xmp) if provenance is not None else picture.xmp


def _jpeg_sized_xmp(xmp: bytes, provenance: Provenance | None) -> bytes | None:
    if len(xmp) <= _JPEG_XMP_LIMIT:
        return xmp
    source = provenance.source if provenance is not None else None
    warnings.warn(f"{source or 'input'}: its XMP is {len(xmp)} bytes, over a JPEG's 64 KB segment; the output "
                  "carries " + ("srcore's XMP alone" if provenance else "no XMP") + " (write PNG or TIFF to keep it)",
                  stacklevel=3)
    return provenance.xmp() if provenance is not None else None


def _app13_segments(photoshop: bytes) -> bytes:
    """Photoshop resources as JPEG APP13 segments (split at the 64 KB segment limit, as Photoshop does)."""
    room = 65533 - len(PHOTOSHOP_APP13)
    chunks = [photoshop[i:i + room] for i in range(0, len(photoshop), room)]
    return b"".join(b"\xff\xed" + (2 + len(PHOTOSHOP_APP13) + len(c)).to_bytes(2, "big") + PHOTOSHOP_APP13 + c
                    for c in chunks)


def _tiff_catalogue_tags(picture: Picture, xmp: bytes | None) -> dict:
    """A TIFF output's XMP (700), Photoshop resources (34377) and IPTC-IIM (33723) tags."""
    tags: dict = {}
    if xmp:
        tags[700] = xmp
    if picture.photoshop:
        tags[34377] = picture.photoshop
        iim = iptc_record(picture.photoshop)
        if iim:
            tags[33723] = iim
    return tags


def to_8bit(pixels: np.ndarray) -> np.ndarray:
    return pixels if pixels.dtype == np.uint8 else np.rint(pixels / 257.0).astype(np.uint8)


def _pixels_to_pil(pixels: np.ndarray) -> Image.Image:
    c = pixels.shape[2]
    if pixels.dtype == np.uint16:  # only gray reaches here in 16 bits
        return Image.fromarray(pixels[..., 0])
    return Image.fromarray(pixels[..., 0] if c == 1 else pixels, {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c])


def _encode_png(picture: Picture, provenance: Provenance | None, level: int, size: tuple[int, int]) -> bytes:
    """PNG by :class:`~srcore.png_writer.PngWriter` (twice Pillow's speed; files 1-11% larger, as its single Up
    filter is one vectorised pass), the writer large outputs stream through: every PNG is written one way."""
    from .png_writer import PngWriter

    pixels = _la16_as_rgba(picture.pixels)
    buf = io.BytesIO()
    h, w, c = pixels.shape
    writer = PngWriter(buf, w, h, c, pixels.dtype, level, png_chunks(picture, provenance, size))
    writer.write(pixels)
    writer.close()
    return buf.getvalue()


def _la16_as_rgba(pixels: np.ndarray) -> np.ndarray:
    """16-bit gray + alpha as RGBA (what decoders expect of 16 bits with alpha); other pixels unchanged."""
    if pixels.dtype != np.uint16 or pixels.shape[2] != 2:
        return pixels
    return np.concatenate([np.repeat(pixels[..., :1], 3, axis=2), pixels[..., 1:]], axis=2)


def _encode_16bit_colour_tiff(picture: Picture, provenance: Provenance | None, xmp: bytes | None) -> bytes:
    """tifffile writes 16-bit colour (Pillow cannot): ICC, XMP, Photoshop / IPTC, resolution and the EXIF
    text tags of the first IFD (caption, artist, copyright, date); EXIF's sub-IFDs (camera, GPS) are not written
    by tifffile and are said to be lost."""
    import tifffile

    pixels = _la16_as_rgba(picture.pixels)
    exif = _output_exif(picture, provenance, picture.size)
    extratags = [(tag, "B", len(data), data, True) for tag, data in
                 [(34675, picture.icc_profile), *_tiff_catalogue_tags(picture, xmp).items()] if data]
    extratags += [(tag, "s", 0, str(exif[tag]), True) for tag in (0x013B, 0x8298, 0x0132) if exif.get(tag)]
    if exif.get_ifd(0x8769) or exif.get_ifd(0x8825):
        warnings.warn(f"{(provenance.source if provenance else None) or 'input'}: a 16-bit colour TIFF output keeps "
                      "the EXIF caption, artist, copyright and date, not its camera and GPS fields", stacklevel=3)
    buf = io.BytesIO()
    tifffile.imwrite(buf, pixels, photometric="rgb", compression="zlib",
                     extrasamples=("unassalpha",) if pixels.shape[2] == 4 else None,
                     description=exif.get(0x010E), software=exif.get(0x0131), extratags=extratags,
                     metadata=None, **({"resolution": picture.dpi, "resolutionunit": "INCH"} if picture.dpi else {}))
    return buf.getvalue()


def _output_exif(picture: Picture, provenance: Provenance | None, size: tuple[int, int]) -> Image.Exif:
    """The source's EXIF (orientation already reset; caption, artist, dates, GPS, camera kept), its pixel
    dimensions those of the output; srcore as its Software, and the AI notice as its caption where it has none."""
    exif = Image.Exif()
    if picture.exif:
        exif.load(picture.exif)
    if provenance is not None:
        caption = exif.get(0x010E)
        if not str(caption or "").strip() or is_srcore_notice(caption):
            exif[0x010E] = provenance.description  # ImageDescription
        exif[0x0131] = provenance.software  # Software
    sub = exif.get_ifd(0x8769) if 0x8769 in exif else {}
    if 0xA002 in sub or 0xA003 in sub:  # PixelXDimension, PixelYDimension
        sub[0xA002], sub[0xA003] = size
    return exif


def with_resolution(picture: Picture, factor: float) -> Picture:
    """``picture`` with its stated resolution (dpi, EXIF X/YResolution) multiplied by ``factor``: an output
    ``factor`` times the source's pixels at the source's physical size (``--dpi scale``); 1 keeps it."""
    if factor == 1 or not (picture.dpi or picture.exif):
        return picture
    exif = picture.exif
    if exif:
        parsed = Image.Exif()
        parsed.load(exif)
        if 0x011A in parsed or 0x011B in parsed:
            for tag in (0x011A, 0x011B):
                if tag in parsed:
                    parsed[tag] = float(parsed[tag]) * factor
            exif = parsed.tobytes()
    dpi = tuple(round(v * factor, 2) for v in picture.dpi) if picture.dpi else None
    return replace(picture, dpi=dpi, exif=exif)


def png_chunks(picture: Picture, provenance: Provenance | None,
               size: tuple[int, int] | None = None) -> list[tuple[bytes, bytes]]:
    """A PNG output's metadata chunks (for :class:`~srcore.png_writer.PngWriter`): the ICC profile,
    resolution (pHYs), the source's text with srcore's added (the source's own keys win but for Software),
    Photoshop resources as ImageMagick's raw 8BIM profile, the XMP (the source's with the provenance beside
    it), EXIF. ``size``: the output's (width, height), when ``picture`` holds the source's pixels."""
    chunks = []
    if picture.icc_profile:
        chunks.append((b"iCCP", b"icc\x00\x00" + zlib.compress(picture.icc_profile)))
    if picture.dpi:
        ppm = [max(1, round(v / 0.0254)) for v in picture.dpi]
        chunks.append((b"pHYs", ppm[0].to_bytes(4, "big") + ppm[1].to_bytes(4, "big") + b"\x01"))
    xmp = _output_xmp(picture, provenance)
    if xmp:  # before the text: a reader of the file's head finds the provenance
        chunks.append((b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp))
    text = dict(picture.text)
    for key, value in (provenance.png_text() if provenance else {}).items():
        if key != "Description" or not str(text.get(key, "")).strip() or is_srcore_notice(text[key]):
            text[key] = value  # srcore's own keys are the new run's; the archive's caption stays
    if picture.photoshop and not any(k.lower().startswith("raw profile type") for k in text):
        text["Raw profile type 8bim"] = _raw_profile("8bim", picture.photoshop)
    for key, value in text.items():
        name = key.encode("latin-1", "replace")[:79]
        try:
            chunks.append((b"tEXt", name + b"\x00" + value.encode("latin-1")))
        except UnicodeEncodeError:  # beyond Latin-1: international text, UTF-8, as Pillow writes it
            chunks.append((b"iTXt", name + b"\x00\x00\x00\x00\x00" + value.encode("utf-8")))

    exif = _output_exif(picture, provenance, size or picture.size)
    if len(exif):
        data = exif.tobytes()
        chunks.append((b"eXIf", data[6:] if data.startswith(b"Exif\x00\x00") else data))
    return chunks


def _raw_profile(kind: str, data: bytes) -> str:
    """ImageMagick's PNG text form of a binary profile (which exiftool reads): kind, length, hex lines."""
    hexed = data.hex()
    return f"\n{kind}\n{len(data):8d}\n" + "\n".join(hexed[i:i + 72] for i in range(0, len(hexed), 72)) + "\n"
