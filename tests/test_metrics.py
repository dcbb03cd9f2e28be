"""Paper-exact PSNR/SSIM and MATLAB bicubic: the published bicubic rows, numpy/torch agreement."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from command_helpers import run_main
from conftest import SHARED, shared_path

from srcore.evaluate_command import main as evaluate_main
from srcore.metrics import (
    LrCheck,
    lr_consistency,
    psnr_np,
    psnr_torch,
    ssim_np,
    ssim_torch,
)
from srcore.resize import imresize_np, imresize_torch

# Published bicubic baselines (e.g. EDSR, RCAN, SwinIR tables): (PSNR, SSIM)
PUBLISHED = {
    (4, "Set5"): (28.42, 0.8104),
    (4, "Set14"): (26.00, 0.7027),
    (2, "Set5"): (33.66, 0.9299),
    (2, "Set14"): (30.24, 0.8688),
}


@pytest.mark.parametrize("scale", [4, 2])
def test_evaluate_job_reproduces_published_bicubic_rows(scale, tmp_path):
    shared_path("datasets/Set5/HR")
    out = tmp_path / "eval"
    result = run_main(evaluate_main, ["--model", "bicubic", "--scale", str(scale), "--sets", "Set5,Set14",
         "--data-root", str(SHARED / "datasets"), "--out", str(out)], ["srcore", "evaluate"])
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "results.json").read_text())
    assert f"| bicubic | x{scale} | Set5 |" in (out / "results.md").read_text()
    for entry in report["sets"]:
        psnr, ssim = PUBLISHED[(scale, entry["set"])]
        assert abs(entry["psnr"] - psnr) <= 0.03, entry
        assert abs(entry["ssim"] - ssim) <= 0.002, entry
        assert len(entry["images"]) == entry["count"] == {"Set5": 5, "Set14": 14}[entry["set"]]


def random_pair(seed: int, shape=(2, 3, 40, 36)):
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, shape).astype(np.float64)
    sr = np.clip(hr + rng.normal(0, 12, shape), 0, 255).round()
    return sr, hr


@pytest.mark.parametrize("channels", [3, 1])
def test_numpy_and_torch_metrics_agree(channels):
    sr, hr = random_pair(0, (3, channels, 48, 40))
    sr_t, hr_t = torch.from_numpy(sr / 255), torch.from_numpy(hr / 255)
    for border in (0, 4):
        p_t = psnr_torch(sr_t, hr_t, border)
        s_t = ssim_torch(sr_t, hr_t, border)
        for i in range(3):
            img_sr, img_hr = sr[i].transpose(1, 2, 0), hr[i].transpose(1, 2, 0)
            if channels == 1:
                img_sr, img_hr = img_sr[..., 0], img_hr[..., 0]
            assert abs(psnr_np(img_sr, img_hr, border) - p_t[i].item()) <= 1e-4
            assert abs(ssim_np(img_sr, img_hr, border) - s_t[i].item()) <= 1e-5


def test_numpy_and_torch_imresize_agree():
    rng = np.random.default_rng(1)
    img = rng.random((37, 53, 3))
    batch = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    for scale in (1 / 4, 1 / 3, 1 / 2, 2, 3, 4, 0.7):
        expected = imresize_np(img, scale)
        got = imresize_torch(batch, scale)[0].permute(1, 2, 0).double().numpy()
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-5


def test_lr_consistency_agrees_and_rewards_faithful_upscaling():
    rng = np.random.default_rng(2)
    lr = rng.integers(0, 256, (20, 24, 3)).astype(np.float64)
    faithful = imresize_np(lr, 4.0)
    shifted = np.roll(faithful, 3, axis=1)
    good, bad = lr_consistency(lr, faithful, 4), lr_consistency(lr, shifted, 4)
    assert good > bad + 3
    gray = lr_consistency(lr[..., 0], faithful[..., 0], 4)  # gray images as 2-D arrays, scored on themselves
    assert gray > lr_consistency(lr[..., 0], shifted[..., 0], 4) + 3


@pytest.mark.parametrize("max_pixels", [1 << 21, 4 * 256 * 256])  # the whole output; a 2x2 grid of crops
def test_lr_check_over_bands_equals_the_whole_output(max_pixels):
    """The streamed check (bands of any height, as a tiled upscale finishes them) scores exactly as the whole."""
    rng = np.random.default_rng(3)
    lr = rng.integers(0, 256, (600, 520, 3)).astype(np.uint8)
    sr = np.clip(imresize_np(lr.astype(np.float64), 2.0) + rng.normal(0, 4, (1200, 1040, 3)), 0, 255).astype(np.uint8)
    whole = lr_consistency(lr, sr, 2, max_pixels)
    check, row = LrCheck(lr, 2, max_pixels), 0
    assert check.whole == (max_pixels > 600 * 520)
    while row < sr.shape[0]:
        n = int(rng.integers(1, 300))
        check.add(row, sr[row : row + n])
        row += n
    assert check.result() == pytest.approx(whole, abs=1e-9)
    assert 20 < whole < 60
    if not check.whole:
        partial = LrCheck(lr, 2, max_pixels)
        partial.add(0, sr[:900])
        with pytest.raises(ValueError, match="not all been added"):
            partial.result()


def test_metric_conventions():
    hr = np.full((16, 16, 3), 100.0)
    sr = hr.copy()
    sr[0, :, :] = 0  # damage only the first row: a 1-pixel border crop hides it
    assert psnr_np(sr, hr, crop_border=1) == float("inf")
    assert psnr_np(sr, hr, crop_border=0) < 40
    gray_sr, gray_hr = np.full((16, 16), 110.0), np.full((16, 16), 100.0)
    assert psnr_np(gray_sr, gray_hr) == pytest.approx(10 * np.log10(255**2 / 100))  # on the gray values
    # Y of an RGB error of 10 on every channel is 10 * (65.481 + 128.553 + 24.966) / 255
    y_err = 10 * 219 / 255
    assert psnr_np(np.full((16, 16, 3), 110.0), hr) == pytest.approx(10 * np.log10(255**2 / y_err**2))
    with pytest.raises(ValueError, match="differ in shape"):
        psnr_np(np.zeros((4, 4)), np.zeros((4, 5)))


def test_imresize_matches_known_matlab_behaviour():
    # constant images stay constant (weights sum to one, symmetric padding)
    assert np.allclose(imresize_np(np.full((9, 7), 0.3), 1 / 3), 0.3)
    # MATLAB output size is ceil(in * scale)
    assert imresize_np(np.zeros((10, 7), np.uint8), 1 / 3).shape == (4, 3)
    # upscaling a ramp by 2 keeps interior values on the ramp (cubic reproduces linear functions)
    ramp = np.tile(np.arange(16, dtype=np.float64), (4, 1))
    up = imresize_np(ramp, 2.0)
    assert np.allclose(up[:, 4:-4], (np.arange(32)[4:-4] + 0.5) / 2 - 0.5)


# NIQE references: BasicSR 1.4.2's calculate_niqe(cv2.imread(path), crop_border, input_order='HWC',
# convert_to='y'), crop_border 0 / 4. Set5 values from ../shared/README.md; the RealWorld ones computed in
# this repository with scripts/basicsr_niqe_reference.py (BasicSR 1.4.2, numpy 2, scipy 1.16).
NIQE_REFERENCE = {
    "datasets/Set5/HR/baby.png": (3.2655, 3.3221),
    "datasets/Set5/HR/bird.png": (4.3621, 5.2831),
    "datasets/Set5/HR/butterfly.png": (5.1549, 5.2051),
    "datasets/Set5/HR/head.png": (8.3505, 8.7408),
    "datasets/Set5/HR/woman.png": (4.3890, 4.6352),
    "datasets/RealWorld/00017_gray.png": (4.9525, 5.0346),
    "datasets/RealWorld/wolf_gray.jpg": (3.2860, 3.3033),
    "datasets/RealWorld/OST_009.png": (5.5921, 5.8266),
}


@pytest.mark.parametrize("relative", list(NIQE_REFERENCE))
def test_niqe_matches_basicsr_within_0_01(relative):
    from PIL import Image

    from srcore.metrics import niqe

    pixels = np.asarray(Image.open(shared_path(relative)).convert("RGB"))
    for crop, expected in zip((0, 4), NIQE_REFERENCE[relative], strict=True):
        assert niqe(pixels, crop) == pytest.approx(expected, abs=0.01)


def test_niqe_ranks_degradation_and_refuses_images_too_small_to_score():
    from PIL import Image

    from srcore.metrics import niqe

    hr = np.asarray(Image.open(shared_path("datasets/Set5/HR/baby.png")).convert("RGB"))
    blurred = imresize_np(imresize_np(hr, 0.25), 4.0)
    noisy = np.clip(hr + np.random.default_rng(0).normal(0, 20, hr.shape), 0, 255)
    assert niqe(hr) < niqe(blurred) and niqe(hr) < niqe(noisy)
    with pytest.raises(ValueError, match="two 96x96 blocks"):
        niqe(hr[:150, :150])


def test_a_batch_of_outputs_scores_as_each_alone():
    """The GPU workers' batched LR check (one pass per group of equal shapes) against the one-by-one check."""
    import torch

    from srcore.metrics import lr_consistency_many

    rng = np.random.default_rng(5)
    lrs = [rng.integers(0, 256, (24, 20, 3)).astype(np.uint8) for _ in range(3)]
    srs = [np.clip(imresize_np(lr, 4.0) + rng.integers(-9, 10, (96, 80, 3)), 0, 255).astype(np.uint8) for lr in lrs]
    for lo, hi in ((lrs, srs), ([x[..., :1] for x in lrs], [x[..., :1] for x in srs])):  # RGB, gray
        batched = lr_consistency_many(lo, torch.from_numpy(np.stack(hi)), 4)
        assert batched == pytest.approx([lr_consistency(a, b, 4) for a, b in zip(lo, hi, strict=True)], abs=1e-4)

