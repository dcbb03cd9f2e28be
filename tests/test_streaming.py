"""Large outputs are streamed: PNG rows written as the engine finishes them, the LR check made band by band.

The streamed file decodes to exactly the pixels the in-memory path makes, with the same metadata; which outputs
stream is one rule (:func:`srcore.upscale.streams`) that the CLI and the bucket job share.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import srcore
from srcore import upscale
from srcore.imageio import Picture, decode
from srcore.metrics import lr_consistency
from srcore.options import OutputOptions
from srcore.png_writer import PngWriter
from srcore.provenance import Provenance, read_provenance
from srcore.upscale import stream_png, streams, upscale_file

ROOT = Path(__file__).resolve().parents[1]


def tiny_x2() -> torch.nn.Module:
    torch.manual_seed(0)
    return srcore.create_model("realesr-animevideov3", num_feat=8, num_conv=2, upscale=2).eval()


def smooth(h: int, w: int, channels: int, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = 65535 if dtype == np.uint16 else 255
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(np.sin(xx / (7 + c) + yy / (11 + c)) + 1) / 2 for c in range(channels)], axis=2)
    return np.clip(base * top + rng.normal(0, top / 40, base.shape), 0, top).astype(dtype)


@pytest.mark.parametrize("channels, dtype", [(3, np.uint8), (3, np.uint16), (1, np.uint8), (1, np.uint16)])
def test_png_writer_round_trips_through_other_decoders(channels, dtype):
    import cv2

    pixels = smooth(45, 31, channels, dtype)
    buf = io.BytesIO()
    writer = PngWriter(buf, 31, 45, channels, dtype, level=1)
    for start in (0, 1, 20):  # bands of any height, the Up filter carried across them
        writer.write(pixels[start : {0: 1, 1: 20, 20: 45}[start]])
    writer.close()
    back = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_UNCHANGED)
    back = back[..., None] if back.ndim == 2 else back[..., ::-1]
    assert back.dtype == dtype and np.array_equal(back, pixels)
    with pytest.raises(ValueError, match="rows written"):
        PngWriter(io.BytesIO(), 31, 45, channels, dtype).close()
    with pytest.raises(ValueError, match="expected rows"):
        PngWriter(io.BytesIO(), 31, 45, channels, dtype).write(pixels[:, :30])


@pytest.mark.parametrize("channels, dtype", [(3, np.uint8), (3, np.uint16), (1, np.uint8)])
def test_streamed_png_equals_the_whole_output_with_its_metadata(channels, dtype):
    up = srcore.Upscaler(tiny_x2(), tile=64, tile_overlap=8)
    source = Picture(smooth(150, 200, channels, dtype), "RGB" if channels == 3 else "L", icc_profile=b"\0" * 16,
                     text={"Title": "gare", "Comment": "Gare de Lyon, f\u00e9vrier \u2013 1972"})
    provenance = Provenance("tiny-x2", 2, "s3://b/in.png", "etag-1", "run-1")
    options = OutputOptions()
    buf = io.BytesIO()
    result = stream_png(up, source, options, provenance, buf, lr_check=True)
    whole = up.upscale_image(source.pixels)
    streamed = decode(buf.getvalue(), "streamed.png")
    assert result.size == (400, 300) and streamed.size == (400, 300) and result.mode == source.mode
    assert streamed.pixels.dtype == dtype and np.array_equal(streamed.pixels, whole)
    assert result.lr_psnr == pytest.approx(lr_consistency(source.pixels, whole, 2), abs=1e-6)
    assert read_provenance(buf.getvalue()[:65536])["sourceVersion"] == "etag-1"
    assert streamed.icc_profile == source.icc_profile and streamed.text["Comment"] == source.text["Comment"]
    exif = Image.open(io.BytesIO(buf.getvalue())).getexif()
    assert exif[0x010E].startswith("AI-upscaled x2")


def test_which_outputs_stream():
    up = srcore.Upscaler(tiny_x2(), tile=64)
    rgb = Picture(np.zeros((100, 100, 3), np.uint8), "RGB")
    rgba = Picture(np.zeros((100, 100, 4), np.uint8), "RGBA")
    assert not streams(up, rgb, "PNG", OutputOptions())  # small: made whole
    options = OutputOptions(stream_output_pixels=100 * 100)
    assert streams(up, rgb, "PNG", options)
    assert streams(up, Picture(np.zeros((100, 100, 1), np.uint16), "I;16"), "PNG", options)
    assert not streams(up, rgb, "JPEG", options)  # PNG only
    assert not streams(up, rgba, "PNG", options)  # alpha is resized whole
    assert not streams(up, rgb, "PNG", OutputOptions(outscale=1.5, stream_output_pixels=100))  # a final resize too
    with pytest.raises(ValueError, match="stream-output-pixels"):
        OutputOptions(stream_output_pixels=0)


def test_the_cli_path_streams_large_outputs_to_the_same_pixels(tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(smooth(120, 90, 3)).save(src)
    up = srcore.Upscaler(tiny_x2(), tile=48, tile_overlap=8)
    whole_path, size = upscale_file(up, src, tmp_path / "whole", "tiny-x2")
    streamed_path, streamed_size = upscale_file(up, src, tmp_path / "streamed", "tiny-x2",
                                                OutputOptions(stream_output_pixels=1000))
    assert size == streamed_size == (180, 240)
    assert np.array_equal(decode(streamed_path.read_bytes()).pixels, decode(whole_path.read_bytes()).pixels)
    assert read_provenance(streamed_path.read_bytes())["source"] == src.resolve().as_posix()
    assert [p.name for p in (tmp_path / "streamed").iterdir()] == ["in.png"]  # no temporaries left


@pytest.mark.slow
def test_a_12000_wide_strip_completes_within_the_stated_peak_rss(tmp_path):
    """12000x1400 (16.8 MP) x2 -> a 24000x2800 PNG (67 MP, over the 64 MP streaming threshold) in a process
    within docs/engine.md's bound (bench/large_image.py): the process with its model, the decoded input and 3 x
    one tile row's float accumulator. A streamed output's memory follows its width, never its height, so a
    strip of the full width checks the bound that a 12000x12000 square (144 MP, ~100 s here) does; that
    square's figures are in docs/engine.md (`python bench/large_image.py --side 12000 --model tiny-x2`).
    """
    assert 24000 * 2800 > upscale.STREAM_OUTPUT_PIXELS  # streamed, not made whole
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "large_image.py"), "--smoke", "--folder",
                             str(tmp_path)], capture_output=True, text=True, timeout=1200)  # the bench's smoke run
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(report)
    assert report["output"] == [24000, 2800]
    data = (tmp_path / "out" / "large.png").read_bytes()
    header = Image.open(io.BytesIO(data[:4096]))
    assert header.size == (24000, 2800) and header.mode == "RGB"
    assert read_provenance(data[:65536])["model"] == "tiny-x2"
    assert report["peak_rss_gb"] <= report["bound_gb"] * 1.05, report
