"""Every image mode through decode -> upscale -> encode, with real files and real decoders."""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageCms, PngImagePlugin

import srcore
from srcore.imageio import ImageDecodeError, Picture, decode
from srcore.inference import Upscaler
from srcore.options import OutputOptions
from srcore.provenance import DIGITAL_SOURCE_TYPE, Provenance
from srcore.upscale import output_format, render

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def upscaler() -> Upscaler:
    """A nearest-neighbour x2 'network': SRVGG's skip path with a zeroed body, so colours are exact."""
    torch.manual_seed(0)
    model = srcore.create_model("realesr-animevideov3", num_feat=4, num_conv=1, upscale=2)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return Upscaler(model, tile=None)


def png_bytes(im: Image.Image, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **params)
    return buf.getvalue()


@dataclass
class Upscaled:
    data: bytes
    format: str
    output: Picture


def upscale_bytes(upscaler, data: bytes, name: str, model: str, options: OutputOptions | None = None) -> Upscaled:
    """What ``srcore upscale`` does to one file's bytes, in memory: decode, render, encode."""
    options = options or OutputOptions()
    source = decode(data, name, options.max_input_pixels)
    fmt = output_format(name, options.format)
    data, output = render(upscaler, source, fmt, options, Provenance(model, options.outscale or upscaler.scale, name))
    return Upscaled(data, fmt, output)


def run(upscaler, data: bytes, name: str = "in.png", **options):
    return upscale_bytes(upscaler, data, name, "tiny-x2", OutputOptions(**options))


def test_rgba_keeps_an_alpha_only_pattern(upscaler):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = 128
    rgba[..., 3] = np.kron((np.indices((4, 4)).sum(0) % 2) * 255, np.ones((4, 4))).astype(np.uint8)
    for alpha in ("bicubic", "network"):
        result = run(upscaler, png_bytes(Image.fromarray(rgba, "RGBA")), alpha=alpha)
        out = Image.open(io.BytesIO(result.data))
        assert out.mode == "RGBA" and out.size == (32, 32)
        a = np.asarray(out)[..., 3].astype(float)
        expected = np.kron(rgba[..., 3], np.ones((2, 2)))
        assert np.corrcoef(a.ravel(), expected.ravel())[0, 1] > 0.95
        assert np.abs(np.asarray(out)[..., :3].astype(int) - 128).max() <= 1


def test_gray_stays_gray(upscaler):
    gray = RNG.integers(0, 256, (10, 14), np.uint8)
    result = run(upscaler, png_bytes(Image.fromarray(gray, "L")))
    out = Image.open(io.BytesIO(result.data))
    assert out.mode == "L" and out.size == (28, 20)
    assert np.array_equal(np.asarray(out), np.kron(gray, np.ones((2, 2), np.uint8)))
    la = Image.fromarray(np.dstack([gray, gray[::-1]]), "LA")
    assert Image.open(io.BytesIO(run(upscaler, png_bytes(la)).data)).mode == "LA"


def gradient16(h: int, w: int, channels: int) -> np.ndarray:
    ramp = np.linspace(0, 65535, h * w).reshape(h, w)
    return np.dstack([np.roll(ramp, 7 * c) for c in range(channels)]).astype(np.uint16)


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_16_bit_in_gives_16_bit_out(upscaler, channels, fmt):
    pixels = gradient16(24, 32, channels)
    if fmt == "png":
        data = cv2.imencode(".png", pixels if channels == 1 else cv2.cvtColor(
            pixels, cv2.COLOR_RGBA2BGRA if channels == 4 else cv2.COLOR_RGB2BGR))[1].tobytes()
    else:
        buf = io.BytesIO()
        tifffile.imwrite(buf, pixels[..., 0] if channels == 1 else pixels, photometric="minisblack" if channels == 1
                         else "rgb", extrasamples=("unassalpha",) if channels == 4 else None)
        data = buf.getvalue()
    source = decode(data, f"in.{fmt}")
    assert source.bit_depth == 16 and source.pixels.shape[2] == channels
    assert np.array_equal(source.pixels, pixels.reshape(24, 32, channels))
    result = run(upscaler, data, f"in.{fmt}")
    back = decode(result.data, f"out.{fmt}")
    assert back.bit_depth == 16 and back.pixels.shape == (48, 64, channels)
    assert all(len(np.unique(back.pixels[..., c])) > 256 for c in range(channels))
    colour = min(channels, 3)  # alpha is bicubic-upscaled, colour went through the nearest 'network'
    expected = np.kron(pixels.reshape(24, 32, channels)[..., :colour], np.ones((2, 2, 1)))
    assert np.abs(back.pixels[..., :colour].astype(int) - expected).max() <= 1


def test_cmyk_comes_out_cmyk_with_the_same_colours(upscaler):
    rgb = Image.fromarray(RNG.integers(0, 256, (12, 16, 3), np.uint8))
    cmyk = rgb.convert("CMYK")
    buf = io.BytesIO()
    cmyk.save(buf, "JPEG", quality=100)
    result = run(upscaler, buf.getvalue(), "in.jpg")
    out = Image.open(io.BytesIO(result.data))
    assert result.format == "JPEG" and out.mode == "CMYK" and out.size == (32, 24)
    source_rgb = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), float)
    out_rgb = np.asarray(out.convert("RGB").resize((16, 12), Image.NEAREST), float)
    assert np.abs(out_rgb - source_rgb).mean() < 8  # one more JPEG pass over noise
    as_png = Image.open(io.BytesIO(run(upscaler, buf.getvalue(), "in.jpg", format="png").data))
    assert as_png.mode == "RGB"  # PNG has no CMYK


def test_palette_images_come_out_right(upscaler):
    colours = RNG.integers(0, 256, (4, 4, 3), np.uint8)
    p = Image.fromarray(np.kron(colours, np.ones((3, 3, 1), np.uint8))).quantize(16)
    out = Image.open(io.BytesIO(run(upscaler, png_bytes(p)).data))
    assert out.mode == "RGB"
    assert np.array_equal(np.asarray(out)[::2, ::2], np.asarray(p.convert("RGB")))
    p.info["transparency"] = 0
    transparent = Image.open(io.BytesIO(run(upscaler, png_bytes(p, transparency=0)).data))
    assert transparent.mode == "RGBA" and (np.asarray(transparent)[..., 3] == 0).any()


def test_exif_rotated_input_comes_out_upright(upscaler):
    stored = np.zeros((20, 40, 3), np.uint8)  # stored landscape; orientation 6 = rotate 90 degrees clockwise
    stored[:5, :5] = 255  # marker at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, "JPEG", quality=100, exif=exif.tobytes())
    result = run(upscaler, buf.getvalue(), "in.jpg")
    out = Image.open(io.BytesIO(result.data))
    assert out.size == (40, 80)  # portrait: upright
    arr = np.asarray(out.convert("L"), int)
    assert arr[:10, -10:].mean() > 200 and arr[:10, :10].mean() < 50  # marker now top-right
    assert out.getexif().get(0x0112, 1) == 1  # and no viewer rotates it twice


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "tiff"])
@pytest.mark.parametrize("bits", [8, 16])
def test_provenance_and_icc_in_every_output_format(upscaler, fmt, bits):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    if bits == 8:
        data = png_bytes(Image.fromarray(RNG.integers(0, 256, (8, 8, 3), np.uint8)), icc_profile=icc)
    else:
        data = cv2.imencode(".png", gradient16(8, 8, 3))[1].tobytes()
    result = run(upscaler, data, format=fmt)
    out = Image.open(io.BytesIO(result.data))
    if fmt == "png":
        fields = out.text
        assert "AI-upscaled x2" in fields["Description"] and fields["srcore:model"] == "tiny-x2"
        assert DIGITAL_SOURCE_TYPE in fields["XML:com.adobe.xmp"]
    elif fmt == "tiff":
        assert "AI-upscaled x2" in out.tag_v2[270] and "srcore" in out.tag_v2[305]
        assert DIGITAL_SOURCE_TYPE.encode() in bytes(out.tag_v2[700])
    else:
        assert "AI-upscaled x2" in out.getexif()[0x010E]
        assert "may be synthesized" in out.getexif()[0x010E]
        assert DIGITAL_SOURCE_TYPE.encode() in out.info["xmp"]
    if bits == 8:
        assert out.info.get("icc_profile") == icc


def test_bad_inputs_fail_naming_the_file(upscaler):
    with pytest.raises(ImageDecodeError, match=r"empty\.png: empty file"):
        run(upscaler, b"", "empty.png")
    with pytest.raises(ImageDecodeError, match=r"notes\.png: not a recognised image format"):
        run(upscaler, b"this is text, not a PNG", "notes.png")
    good = png_bytes(Image.fromarray(RNG.integers(0, 256, (64, 64, 3), np.uint8)))
    with pytest.raises(ImageDecodeError, match=r"cut\.png: truncated or corrupt"):
        run(upscaler, good[: len(good) // 2], "cut.png")
    # a decompression bomb: a tiny file declaring 20000 x 20000 pixels, refused before decoding
    bomb = png_bytes(Image.new("L", (20000, 20000)), optimize=True)
    assert len(bomb) < 1_000_000
    with pytest.raises(ImageDecodeError, match=r"bomb\.png: 20000x20000 is 400 megapixels, over the limit of 100"):
        run(upscaler, bomb, "bomb.png", max_input_pixels=100_000_000)


def test_frames_and_channels_that_would_be_lost_are_refused_but_thumbnails_are_not():
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tif:  # a full page and its reduced-resolution thumbnail: one image
        tif.write(np.full((40, 40, 3), 90, np.uint8), photometric="rgb")
        tif.write(np.zeros((10, 10, 3), np.uint8), photometric="rgb", subfiletype=1)
    assert decode(buf.getvalue(), "scan.tif").pixels.shape == (40, 40, 3)
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tif:
        for value in (10, 20):
            tif.write(np.full((40, 40, 3), value, np.uint8), photometric="rgb")
    with pytest.raises(ImageDecodeError, match="pages.tif: multi-page TIFF with 2 frames"):
        decode(buf.getvalue(), "pages.tif")
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((8, 8, 4), np.uint8), photometric="rgb", extrasamples=("unspecified",))
    with pytest.raises(ImageDecodeError, match="rgbx.tif: 4 channels per pixel"):
        decode(buf.getvalue(), "rgbx.tif")
    # a camera JPEG with a preview as its second MPO image is one photo, not an animation
    photo, preview = (Image.fromarray(np.full((16, 16, 3), v, np.uint8)) for v in (200, 50))
    buf = io.BytesIO()
    photo.save(buf, format="MPO", save_all=True, append_images=[preview])
    assert Image.open(io.BytesIO(buf.getvalue())).n_frames == 2
    assert decode(buf.getvalue(), "camera.jpg").pixels.mean() == pytest.approx(200, abs=2)


@pytest.mark.parametrize("dpi", ["scale", "keep"])
def test_the_catalogue_survives_with_the_provenance_beside_it(upscaler, tmp_path, dpi):
    """Caption, artist, copyright, dates, GPS and camera (EXIF), identifier, rights and credit (XMP), the IPTC
    record and 600 dpi, in a JPEG, a PNG and a TIFF, each written back as its own format; and as WebP, EXIF
    and XMP (WebP has no IPTC or resolution of its own)."""
    from catalogue_helpers import CAPTION, IDENTIFIER, assert_catalogue_kept, catalogued_scans

    for fmt, path in catalogued_scans(tmp_path / "in").items():
        result = upscale_bytes(upscaler, path.read_bytes(), path.name, "tiny-x2", OutputOptions(dpi=dpi))
        out = tmp_path / f"out.{fmt}"
        out.write_bytes(result.data)
        assert_catalogue_kept(out, 2, 2 if dpi == "scale" else 1, "tiny-x2")
        if fmt == "jpg":
            webp = upscale_bytes(upscaler, path.read_bytes(), path.name, "tiny-x2", OutputOptions(format="webp"))
            im = Image.open(io.BytesIO(webp.data))
            assert im.getexif()[0x010E] == CAPTION and IDENTIFIER.encode() in im.info["xmp"]
            assert b"AI-upscaled x2" in im.info["xmp"]


def test_an_outputs_own_provenance_is_replaced_not_doubled_and_bad_xmp_is_said(upscaler):
    """Upscaling an srcore output again: one srcore record, the new one, in XMP, PNG text and the EXIF caption
    (an earlier notice is srcore's, not the archive's caption). An XMP packet that is not XML is not carried (it
    cannot be merged), with a warning naming the file."""
    from srcore.provenance import read_provenance

    first = run(upscaler, png_bytes(Image.fromarray(RNG.integers(0, 256, (6, 6, 3), np.uint8))), "a.png")
    again = upscale_bytes(upscaler, first.data, "a_x2.png", "other-x2", OutputOptions(outscale=4))
    out = Image.open(io.BytesIO(again.data))
    assert out.info["xmp"].count(b"<srcore:scale>") == 1 and out.info["xmp"].count(b"AI-upscaled") == 2  # notice
    assert read_provenance(again.data)["scale"] == "4" and read_provenance(again.data)["model"] == "other-x2"
    assert out.text["srcore:model"] == "other-x2" and out.text["Description"].startswith("AI-upscaled x4")
    assert out.getexif()[0x010E].startswith("AI-upscaled x4")
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta><rdf:RDF>not closed")
    broken = png_bytes(Image.fromarray(RNG.integers(0, 256, (6, 6, 3), np.uint8)), pnginfo=info)
    with pytest.warns(UserWarning, match="broken-xmp.png: its XMP packet is not well-formed XMP"):
        result = run(upscaler, broken, "broken-xmp.png")
    assert read_provenance(result.data)["model"] == "tiny-x2"


def test_xmp_is_merged_by_namespace_not_by_spelling():
    """Another prefix for RDF, a subject URI, a comment quoting the end tag, a property in another namespace
    under the prefix 'srcore', and forged srcore fields: the packet keeps all of its own properties, srcore's
    Description comes first with the packet's subject, and only srcore's own record is read back."""
    import xml.etree.ElementTree as ET

    from srcore.provenance import SRCORE_XMP_NS, Provenance, read_provenance

    forged = (f'<r:Description r:about="uuid:faa5" xmlns:s="{SRCORE_XMP_NS}"><s:model>forged</s:model>'
              "</r:Description>")
    packet = ('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
              '<r:RDF xmlns:r="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              '<r:Description r:about="uuid:faa5" xmlns:dc="http://purl.org/dc/elements/1.1/" '
              'xmlns:srcore="urn:another:namespace"><dc:identifier>ID-7</dc:identifier>'
              "<srcore:shelf>B-12</srcore:shelf></r:Description>"
              f"{forged}<!-- </r:RDF> --></r:RDF></x:xmpmeta><?xpacket end='w'?>").encode()
    merged = Provenance("tiny-x2", 2, "in/a.jpg", "etag-1").xmp(packet)
    root = ET.fromstring(merged)
    rdf = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
    descriptions = list(root.iter(f"{rdf}Description"))
    assert descriptions[0].find(f"{{{SRCORE_XMP_NS}}}model").text == "tiny-x2"  # first, and whole
    assert {d.get(f"{rdf}about") for d in descriptions} == {"uuid:faa5"}
    assert [e.text for e in root.iter("{http://purl.org/dc/elements/1.1/}identifier")] == ["ID-7"]
    assert [e.text for e in root.iter("{urn:another:namespace}shelf")] == ["B-12"]  # not srcore's: kept
    assert read_provenance(merged)["model"] == "tiny-x2" and read_provenance(merged)["sourceVersion"] == "etag-1"
    assert read_provenance(b"<x:xmpmeta>" + forged.encode()) == {}  # another prefix is not srcore's record


def test_tiff_iptc_stored_as_long_words_keeps_its_bytes(upscaler, tmp_path):
    """Photoshop writes a TIFF's IPTC-NAA tag as LONG words (Pillow reads one word of them): the record is the
    words' bytes in the file's own byte order, both orders."""
    import tifffile
    from PIL import IptcImagePlugin

    from srcore.imageio import iptc_record

    record = b"\x1c\x02\x78\x00\x08Caption!"  # 2:120, 13 bytes, padded to whole words as Photoshop does
    record += b"\x00" * (-len(record) % 4)
    for order in ("<", ">"):
        words = np.frombuffer(record, np.dtype(order + "u4"))
        path = tmp_path / f"iptc{'le' if order == '<' else 'be'}.tif"
        tifffile.imwrite(path, RNG.integers(0, 256, (6, 6, 3), np.uint8), byteorder=order, photometric="rgb",
                         metadata=None, extratags=[(33723, "I", len(words), words.tolist(), True)])
        picture = decode(path.read_bytes(), path.name)
        assert iptc_record(picture.photoshop) == record, order
        out = Image.open(io.BytesIO(upscale_bytes(upscaler, path.read_bytes(), path.name, "tiny-x2").data))
        assert IptcImagePlugin.getiptcinfo(out)[(2, 120)] == b"Caption!", order
