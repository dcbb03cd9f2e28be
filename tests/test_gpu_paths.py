"""The GPU paths: JPEG on the device (srcore.gpu_codecs) and the compiled engine (srcore.compiled).

Their plumbing runs here on the CPU, through the same functions with CPU tensors (torchvision's CPU codecs,
torch.compile on the CPU); the parity of the CUDA codecs and of the compiled CUDA engine needs a GPU, and those
tests say so when skipped. On a GPU host the suite runs them (``bench/gpu_tests.py``).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

import srcore
from srcore import gpu_codecs
from srcore.imageio import ImageDecodeError, Picture, decode
from srcore.inference import Upscaler
from srcore.options import EngineOptions, OutputOptions
from srcore.provenance import Provenance, read_provenance
from srcore.upscale import encode_output

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (nvJPEG, CUDA graphs): run on a GPU host")


def photo(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """Image-like pixels: smooth colour fields, edges and a little noise (JPEG's working conditions)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.dstack([0.5 + 0.4 * np.sin(2 * np.pi * (3 * xx + c * yy)) for c in range(3)]) * 255
    base[h // 3 : h // 2, w // 4 : w // 2] = (230, 40, 40)  # a saturated block: chroma edges
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def jpeg(pixels: np.ndarray, **params) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90, **params)
    return buf.getvalue()


def catalogued_picture() -> Picture:
    exif = Image.Exif()
    exif[0x010F] = "ScanCo"  # Make
    exif[0x8298] = "(c) the archive"  # Copyright
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return Picture(photo(24, 32), "RGB", icc, exif.tobytes(), "JPEG")


def app_segments(data: bytes) -> list[bytes]:
    return [seg for marker, seg in gpu_codecs.segments(data) if 0xE1 <= marker <= 0xEF]


def test_a_device_encoded_jpeg_carries_the_metadata_pillow_writes():
    """encode_output's device path (here torchvision's CPU encoder standing in for nvJPEG): the EXIF, XMP
    provenance and ICC segments are Pillow's, byte for byte; the pixels are a JPEG of the same output."""
    source = catalogued_picture()
    pixels = photo(96, 128, seed=1)
    provenance = Provenance("srcore-compact-x4", 4, "s3://archive/a.jpg", "etag-1", "run-7")
    options = OutputOptions(quality=90)
    on_cpu, _ = encode_output(source, pixels, "JPEG", options, provenance)
    on_device, output = encode_output(source, pixels, "JPEG", options, provenance, torch.device("cpu"))
    assert output.size == (128, 96)  # (here the same file as Pillow's: both are libjpeg-turbo on the CPU)
    assert app_segments(on_device) == app_segments(on_cpu) and len(app_segments(on_cpu)) == 3  # EXIF, XMP, ICC
    assert read_provenance(on_device) == read_provenance(on_cpu)
    im = Image.open(io.BytesIO(on_device))
    assert im.info["icc_profile"] == source.icc_profile and im.getexif()[0x8298] == "(c) the archive"
    assert np.abs(np.asarray(im.convert("RGB")).astype(int) - pixels).mean() < 6  # JPEG q90 of noisy pixels
    # what nvJPEG cannot make as Pillow does stays on the CPU: alpha (composited), gray, CMYK sources
    rgba = np.dstack([pixels, np.full(pixels.shape[:2], 200, np.uint8)])
    for shape_source, out in ((source, rgba), (source, pixels[..., :1]), (Picture(pixels, "CMYK"), pixels)):
        with pytest.warns(UserWarning) if out.shape[2] == 4 else _nothing():
            assert encode_output(shape_source, out, "JPEG", options, provenance, torch.device("cpu"))[0] == \
                encode_output(shape_source, out, "JPEG", options, provenance)[0]


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_device_jpeg_decoder_keeps_pillows_metadata_orientation_and_errors():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    exif[0x010F] = "ScanCo"
    data = jpeg(photo(40, 56), exif=exif.tobytes())
    decoder = gpu_codecs.jpeg_decoder("cpu")
    mine, pillows = decode(data, "a.jpg", jpeg_pixels=decoder), decode(data, "a.jpg")
    assert mine.size == pillows.size == (40, 56) and mine.exif == pillows.exif and mine.source_mode == "RGB"
    assert np.abs(mine.pixels.astype(int) - pillows.pixels).max() <= 2
    gray = jpeg(photo(40, 56)[..., 0])  # not 8-bit RGB: Pillow decodes it
    assert decode(gray, "g.jpg", jpeg_pixels=decoder).pixels.tobytes() == decode(gray, "g.jpg").pixels.tobytes()
    with pytest.raises(ImageDecodeError, match="t.jpg: truncated or corrupt"):
        decode(data[: len(data) // 2], "t.jpg", jpeg_pixels=decoder)


def test_splicing_keeps_the_scan_and_replaces_only_app_segments():
    body = jpeg(photo(16, 16), exif=Image.Exif().tobytes())
    header = jpeg(np.zeros((1, 1, 3), np.uint8), icc_profile=catalogued_picture().icc_profile)
    spliced = gpu_codecs.splice_segments(body, header)
    assert app_segments(spliced) == app_segments(header)
    assert np.asarray(Image.open(io.BytesIO(spliced))).tobytes() == np.asarray(Image.open(io.BytesIO(body))).tobytes()
    with pytest.raises(ValueError, match="not a JPEG"):
        gpu_codecs.segments(b"\x89PNG....")


def test_inductor_on_the_cpu_matches_eager():
    """The compiled engine's torch.compile path, on the CPU (CUDA graphs need a GPU)."""
    torch.manual_seed(0)
    model = srcore.create_model("realesr-animevideov3", num_feat=8, num_conv=2).eval()
    image = photo(24, 32)
    eager = Upscaler(model, device="cpu", precision="fp32", tile=None, runtime="torch", compile="off")
    compiled = Upscaler(model, device="cpu", precision="fp32", tile=None, runtime="torch", compile="inductor")
    assert compiled.compile == "inductor" and eager.compile == "off"
    assert np.abs(compiled.upscale_network_input(image).astype(int) - eager.upscale_network_input(image)).max() <= 1
    # CUDA-only modes fall back to eager on CPUs; bad values name themselves
    assert Upscaler(model, device="cpu", runtime="torch", compile="graphs").compile == "off"
    with pytest.raises(ValueError, match="compile"):
        Upscaler(model, device="cpu", compile="turbo")
    with pytest.raises(ValueError, match="--compile"):
        EngineOptions(compile="turbo")


# --------------------------------------------------------------------------- CUDA


def levels(a: np.ndarray, b: np.ndarray) -> tuple[int, float, float]:
    """(max, mean, share over one level) of |a - b| in 8-bit levels."""
    d = np.abs(a.astype(int) - b.astype(int))
    return int(d.max()), float(d.mean()), float((d > 1).mean())


@needs_cuda
def test_cuda_jpeg_decoding_matches_pillow():
    """nvJPEG against libjpeg-turbo (Pillow) on 4:2:0 and 4:4:4 JPEGs: IDCT and chroma upsampling differ a
    little; the bound is what an upscaler cannot tell from JPEG's own noise."""
    decoder = gpu_codecs.jpeg_decoder("cuda")
    for subsampling in (2, 0):
        data = jpeg(photo(256, 320, seed=subsampling), subsampling=subsampling)
        worst, mean, share = levels(decode(data, jpeg_pixels=decoder).pixels, decode(data).pixels)
        assert mean <= 1.0 and share <= 0.05 and worst <= 40, (subsampling, worst, mean, share)


@needs_cuda
def test_cuda_jpeg_encoding_matches_pillow():
    source = catalogued_picture()
    pixels = photo(512, 640, seed=3)
    provenance = Provenance("m", 4, "a.jpg", "v", "r")
    for quality in (75, 95):
        options = OutputOptions(quality=quality)
        on_cpu, _ = encode_output(source, pixels, "JPEG", options, provenance)
        on_gpu, _ = encode_output(source, pixels, "JPEG", options, provenance, torch.device("cuda"))
        assert app_segments(on_gpu) == app_segments(on_cpu) and read_provenance(on_gpu) == read_provenance(on_cpu)
        cpu_error = levels(decode(on_cpu).pixels, pixels)[1]
        gpu_error = levels(decode(on_gpu).pixels, pixels)[1]
        assert gpu_error <= cpu_error * 1.5 + 0.5, (quality, gpu_error, cpu_error)


@needs_cuda
@pytest.mark.parametrize("mode", ["graphs", "auto", "inductor"])
def test_the_compiled_cuda_engine_matches_eager(mode):
    """Within the CUDA fp16 bounds measured on the H200 (official x4plus: at most 8 levels off fp32, 0.05% of
    pixels over one level): the compiled path against eager at the same precision, whole images and tiles."""
    torch.manual_seed(0)
    models = [srcore.load_model("srcore-compact-x4"), srcore.create_model("realesrgan-x4plus").eval()]
    for model in models[:1] if mode == "inductor" else models:  # Inductor compiles each shape: a minute or more
        eager = Upscaler(model, device="cuda", precision="fp16", compile="off")
        compiled = Upscaler(model, device="cuda", precision="fp16", compile=mode)
        images = [photo(128, 128, seed=s) for s in range(3)]  # whole images of one shape, then a tiled image
        images += [] if mode == "inductor" else [photo(700, 600, seed=9)]  # (Inductor compiles each tile shape)
        for _ in range(3):  # graphs are captured the second time a shape is seen
            out = compiled.upscale_network_inputs(images)
        for got, want in zip(out, eager.upscale_network_inputs(images), strict=True):
            worst, _, share = levels(got, want)
            assert worst <= 8 and share <= 0.0005, (mode, model.descriptor.arch, worst, share)
        if mode == "graphs":
            assert any(entry is not None for entry in compiled.model.graphs.values())


@needs_cuda
def test_the_split_actor_on_cuda_writes_what_the_cli_writes(tmp_path):
    """The GPU layout's actor in process (JPEGs decoded and encoded by nvJPEG, the LR check batched on the GPU),
    two calls at once on two threads as Ray runs it, against ``srcore upscale``'s engine on the same GPU."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    from pipelines.upscale import UpscaleJob, UpscaleWriter, plan
    from pipelines.upscale.stages import encode_and_write, read_and_decode
    from srcore.upscale import upscale_file
    from srcore.weights import load_upscaling_model

    source = tmp_path / "in"
    source.mkdir()
    for i in range(12):
        pixels = photo(96, 128, seed=i)
        if i % 2:
            (source / f"p{i:02d}.jpg").write_bytes(jpeg(pixels))
        else:
            Image.fromarray(pixels).save(source / f"p{i:02d}.png")
    model, name = load_upscaling_model("srcore-compact-x4", None)
    job = UpscaleJob(input=str(source), output=str(tmp_path / "job"), run_id="r", stage_layout="split")
    with plan(job, name, 4) as manifest:
        rows = manifest.todo.table()
    decoded = pa.concat_tables(read_and_decode(rows, job, jpeg_bytes=True))
    actor = UpscaleWriter(job, [model], use_gpu=True, fused=False)
    halves = [decoded.slice(0, 6), decoded.slice(6)]
    with ThreadPoolExecutor(2) as pool:
        done = [encode_and_write(t, job) for t in pool.map(actor, halves)]
    report = {r["input"]: r for t in done for r in t.to_pylist()}
    assert len(report) == 12 and all(r["status"] == "ok" and r["lr_psnr"] > 20 for r in report.values())
    upscaler = EngineOptions().build(model, "cuda")
    for path in sorted(source.iterdir()):
        mine, _ = upscale_file(upscaler, path, tmp_path / "cli", name, run="r")
        theirs = (tmp_path / "job" / mine.name).read_bytes()
        worst, mean, _ = levels(decode(theirs).pixels, decode(mine.read_bytes()).pixels)
        assert worst <= 8 and mean <= 0.5, (path.name, worst, mean)
        ours, cli = read_provenance(theirs), read_provenance(mine.read_bytes())
        assert (ours["model"], ours["run"]) == (cli["model"], cli["run"])
        if path.suffix == ".jpg":  # nvJPEG's files, with Pillow's segments (EXIF, XMP)
            assert len(app_segments(theirs)) == len(app_segments(mine.read_bytes())) == 2
