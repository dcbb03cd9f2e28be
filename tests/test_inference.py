"""The Upscaler: tiles match the whole image and leave no seam; batching, threads, precision, DNI, outscale."""

from __future__ import annotations

import dataclasses
import threading
from itertools import pairwise

import numpy as np
import pytest
import torch
from conftest import SHARED, shared_path
from PIL import Image

import srcore
from srcore.inference import TileGrid, Upscaler
from srcore.interpolate import interpolate_models


def photo_256() -> np.ndarray:
    path = SHARED / "datasets/Set5/HR/baby.png"
    if not path.is_file():
        pytest.skip(f"{path} not found: set SRCORE_SHARED")
    return np.asarray(Image.open(path).convert("RGB"))[128:384, 128:384].astype(np.float32) / 255


def seam_ratio(image: np.ndarray, seams: list[int]) -> float:
    """Mean |horizontal gradient| across the given columns over that everywhere else."""
    grad = np.abs(np.diff(image, axis=1)).mean(axis=(0, 2))
    at = np.zeros(grad.shape, bool)
    at[[s - 1 for s in seams]] = True
    return grad[at].mean() / grad[~at].mean()


def seam_columns(upscaler: Upscaler, width: int) -> list[int]:
    grid = TileGrid.plan(width, width, upscaler.tile, upscaler.overlap, upscaler.scale, 1, upscaler.feather)
    s = upscaler.scale
    return [(a + upscaler.tile + b) * s // 2 for a, b in pairwise(grid.xs)]


# x4plus (67x the compact model's FLOPs) on a 256x32 strip: its tiles meet across one axis, where the seams are
# measured; the compact model on the whole 256x256 photo, tiled across both
@pytest.mark.parametrize("weights, tile, runtime, rows", [("realesr-animevideov3.pth", 96, "torch", 256),
                                                          ("realesr-animevideov3.pth", 96, "auto", 256),
                                                          ("RealESRGAN_x4plus.pth", 224, "torch", 32)])
def test_tiled_matches_untiled_without_seams(weights, tile, runtime, rows):
    model = srcore.load_model(shared_path(f"weights/{weights}"))
    # float pixels: fp32 (bf16 rounding differs with the input's size, by up to 5 levels)
    image = np.ascontiguousarray(photo_256()[:rows])
    whole = Upscaler(model, tile=None, runtime=runtime).upscale_network_input(image)
    tiled_upscaler = Upscaler(model, tile=tile, runtime=runtime)  # the model's default overlap
    assert whole.dtype == np.float32 and tiled_upscaler.compute_dtype(image.dtype) == torch.float32
    tiled = tiled_upscaler.upscale_network_input(image)
    assert np.abs(tiled - whole).max() <= 1 / 255
    seams = seam_columns(tiled_upscaler, 256)
    assert seams  # really tiled
    assert abs(seam_ratio(tiled, seams) / seam_ratio(whole, seams) - 1) <= 0.05


def test_seam_metric_catches_hard_stitching():
    """Tiles stitched without overlap (what a naive tiler does) fail the seam criterion."""
    torch.manual_seed(0)
    model = srcore.load_model(shared_path("weights/realesr-animevideov3.pth"))
    image = photo_256()[:, :128]
    left = Upscaler(model, tile=None).upscale_network_input(np.ascontiguousarray(image[:, :64]))
    right = Upscaler(model, tile=None).upscale_network_input(np.ascontiguousarray(image[:, 64:]))
    stitched = np.concatenate([left, right], axis=1)
    whole = Upscaler(model, tile=None).upscale_network_input(image)
    assert abs(seam_ratio(stitched, [256]) / seam_ratio(whole, [256]) - 1) > 0.05


def tiny(scale: int = 2, seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return srcore.create_model("realesr-animevideov3", num_feat=8, num_conv=2, upscale=scale, **kw).eval()


def test_tile_grid_weights_are_a_partition_of_unity():
    for length, tile, overlap in [(300, 100, 32), (1000, 256, 48), (257, 256, 48), (97, 64, 16)]:
        grid = TileGrid.plan(length, length, tile, overlap, 2, 1, max(1, overlap // 8))
        assert grid.xs[0] == 0 and grid.xs[-1] + grid.tile_w == length
        assert np.allclose(grid.norm_x, 1.0)
        assert all(b - a <= tile - overlap for a, b in pairwise(grid.xs))


def test_batches_and_threads_give_the_same_pixels():
    up = Upscaler(tiny(), tile=32, tile_overlap=8, batch_size=3)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (20, 24, 3), np.uint8) for _ in range(5)] + [rng.integers(0, 256, (70, 50, 3),
                                                                                               np.uint8)]
    singles = [Upscaler(tiny(), tile=32, tile_overlap=8, batch_size=1).upscale_network_input(im) for im in images]
    batched = up.upscale_network_inputs(images)
    for a, b in zip(singles, batched, strict=True):
        assert a.shape == b.shape and a.dtype == np.uint8
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # batched kernels may round differently

    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = up.upscale_network_input(images[i % len(images)])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, out in results.items():
        assert np.array_equal(out, up.upscale_network_input(images[i % len(images)]))


def test_size_multiple_is_padded_and_cropped():
    torch.manual_seed(0)
    model = srcore.create_model("realesrgan-x2plus", num_feat=8, num_block=1, num_grow_ch=4)
    out = Upscaler(model, tile=None).upscale_network_input(np.random.default_rng(0).random((13, 9, 3), np.float32))
    assert out.shape == (26, 18, 3)


def test_openvino_fused_pixel_path_matches_its_float_path():
    """8-bit whole images take OpenVINO's fused uint8 model (concurrent streams for several, one request for
    the rest); it quantises as the PyTorch code does after OpenVINO's float model, padding included."""
    pytest.importorskip("openvino")
    torch.manual_seed(0)
    model = srcore.create_model("realesrgan-x2plus", num_feat=8, num_block=1, num_grow_ch=4)  # size multiple 2
    up = Upscaler(model, tile=None, runtime="openvino", precision="fp32")
    assert up.runtime == "openvino"
    rng = np.random.default_rng(0)
    for count, shape in [(1, (13, 9, 3)), (3, (16, 20, 3)), (4, (11, 8, 3))]:
        images = [rng.integers(0, 256, shape, np.uint8) for _ in range(count)]
        fused = up.upscale_network_inputs(images)
        through_floats = up.upscale_network_inputs([im.astype(np.float32) / 255 for im in images])
        for a, b in zip(fused, through_floats, strict=True):
            assert a.dtype == np.uint8 and a.shape == (shape[0] * 2, shape[1] * 2, 3) and a.flags.c_contiguous
            assert np.abs(a.astype(int) - np.round(b * 255).astype(int)).max() <= 1
            assert np.abs(a.astype(int) - np.round(b * 255).astype(int)).mean() < 0.01
    # a second thread gets requests of its own
    outs: dict[int, np.ndarray] = {}
    worker = threading.Thread(target=lambda: outs.setdefault(0, up.upscale_network_inputs(images)[0]))
    worker.start()
    worker.join()
    assert np.array_equal(outs[0], fused[0])


def test_precision_choices_on_cpu():
    model = tiny()
    image = np.random.default_rng(1).random((24, 24, 3)).astype(np.float32)
    reference = Upscaler(model, precision="fp32").upscale_network_input(image)
    bf16 = Upscaler(model, precision="bf16").upscale_network_input(image)
    assert np.abs(bf16 - reference).max() < 0.05
    with pytest.warns(UserWarning, match="fp16 is not supported on CPU"):
        fp16 = Upscaler(model, precision="fp16")
    assert fp16.dtype == torch.float32
    auto = torch.bfloat16 if srcore.inference.cpu_has_native_bf16() else torch.float32
    assert Upscaler(model).dtype == auto  # on CPU: bf16 only where the CPU computes it natively
    with pytest.raises(ValueError, match="precision"):
        Upscaler(model, precision="int8")
    with pytest.raises(ValueError, match="tile"):
        Upscaler(model, tile=40, tile_overlap=48)


def test_outscale_and_modes_of_pixels():
    up = Upscaler(tiny(scale=4))
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (10, 12, 3), np.uint8)
    assert up.upscale_image(rgb, outscale=3.5).shape == (35, 42, 3)
    assert up.upscale_image(rgb, outscale=2).shape == (20, 24, 3)
    gray16 = rng.integers(0, 65536, (10, 12, 1), np.uint16)
    out = up.upscale_image(gray16)
    assert out.shape == (40, 48, 1) and out.dtype == np.uint16
    la = rng.integers(0, 256, (10, 12, 2), np.uint8)
    for alpha in ("bicubic", "network"):
        assert up.upscale_image(la, alpha=alpha).shape == (40, 48, 2)


def test_network_interpolation_blends_weights():
    a, b = tiny(seed=1), tiny(seed=2)
    mid = interpolate_models(a, b, 0.5)
    key = "body.0.weight"
    torch.testing.assert_close(mid.state_dict()[key], (a.state_dict()[key] + b.state_dict()[key]) / 2)
    assert torch.equal(interpolate_models(a, b, 1.0).state_dict()[key], a.state_dict()[key])
    with pytest.raises(ValueError, match="same architecture"):
        interpolate_models(a, tiny(scale=4), 0.5)


def test_auto_precision_on_cuda_prefers_fp16_unless_the_model_rules_it_out():
    # measured on an H200: official x4plus at bf16 up to 55 levels off fp32, at fp16 up to 8
    cuda = torch.device("cuda")
    assert srcore.inference.resolve_precision("auto", cuda, tiny().descriptor) == torch.float16
    no_half = dataclasses.replace(tiny().descriptor, supports_half=False, supports_bfloat16=False)
    assert srcore.inference.resolve_precision("auto", cuda, no_half) == torch.float32
    assert srcore.inference.resolve_precision("bf16", cuda, tiny().descriptor) == torch.bfloat16


def test_tile_progress_counts_tiles_of_a_large_image():
    up = Upscaler(tiny(), tile=64, tile_overlap=8)
    calls = []
    with srcore.inference.tile_progress(lambda done, total: calls.append((done, total))):
        up.upscale_image(np.zeros((150, 130, 3), np.uint8))
    assert calls and calls[-1][0] == calls[-1][1] > 1  # ends at all tiles
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len({t for _, t in calls}) == 1
    calls.clear()
    up.upscale_image(np.zeros((150, 130, 3), np.uint8))
    assert not calls  # only inside the block
