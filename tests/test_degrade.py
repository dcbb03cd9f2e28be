"""Degradations: each stage checked for a property that a wrong implementation would break."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from srcore.degrade import (
    KERNEL_TYPES,
    MAX_KERNEL,
    BlurConfig,
    DegradationConfig,
    add_gaussian_noise,
    add_poisson_noise,
    bicubic_degrade,
    filter2d,
    gaussian_kernel,
    jpeg_compress,
    plateau_kernel,
    random_kernel,
    real_esrgan_degrade,
    sinc_kernel,
    usm_sharpen,
)
from srcore.resize import imresize_np


def textured(n: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth colour texture with edges: JPEG and blur have something to act on."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    imgs = []
    for _ in range(n):
        f = rng.uniform(2, 8, 3)
        imgs.append(np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (f[c] * xx + f[(c + 1) % 3] * yy)) for c in range(3)]))
    x = torch.from_numpy(np.stack(imgs)).float()
    x[:, :, size // 3 : size // 2, :] = 0.9  # a hard edge
    return x


@pytest.mark.parametrize("kind", KERNEL_TYPES)
def test_random_kernels_are_normalised_and_supported_inside_their_size(kind):
    probs = tuple(1.0 if k == kind else 0.0 for k in KERNEL_TYPES)
    rng = np.random.default_rng(0)
    for size in (7, 13, 21):
        cfg = BlurConfig(kernel_probs=probs, sinc_prob=0.0, kernel_sizes=(size,))
        k = random_kernel(rng, cfg)
        assert k.shape == (MAX_KERNEL, MAX_KERNEL)
        assert k.sum() == pytest.approx(1.0, abs=1e-9)
        pad = (MAX_KERNEL - size) // 2
        inside = np.zeros_like(k, bool)
        inside[pad : MAX_KERNEL - pad, pad : MAX_KERNEL - pad] = True
        assert np.all(k[~inside] == 0)  # nothing outside the drawn size (steep kernels may underflow inside)
        assert np.unravel_index(k.argmax(), k.shape) == (MAX_KERNEL // 2, MAX_KERNEL // 2)
        assert np.allclose(k, k[::-1, ::-1])  # point symmetric, rotated or not


def test_kernel_shapes_follow_their_parameters():
    iso = gaussian_kernel(21, 2.0, 2.0)
    assert np.allclose(iso, iso.T)
    aniso = gaussian_kernel(21, 3.0, 1.0, 0.0)
    assert aniso[10, 10 + 4] > aniso[10 + 4, 10]  # wider along x than along y
    # the variance of a (well inside its window) Gaussian kernel is sigma^2
    xx = np.arange(21) - 10
    assert (iso.sum(0) * xx**2).sum() == pytest.approx(4.0, rel=1e-3)
    # plateau kernels have flatter tops than Gaussians of the same sigma
    plateau = plateau_kernel(21, 2.0, 2.0, 0.0, 2.0)
    assert plateau[10, 11] / plateau[10, 10] > iso[10, 11] / iso[10, 10]
    sinc = sinc_kernel(np.pi / 3, 21)
    assert sinc.sum() == pytest.approx(1.0) and sinc.min() < 0  # ringing lobes


def test_filter2d_applies_each_sample_its_own_kernel():
    x = textured(2)
    pulse = np.zeros((21, 21))
    pulse[10, 10] = 1
    kernels = torch.from_numpy(np.stack([pulse, gaussian_kernel(21, 3.0, 3.0)]))
    y = filter2d(x, kernels)
    torch.testing.assert_close(y[0], x[0])  # identity kernel
    assert y[1].diff(dim=-1).abs().mean() < 0.5 * x[1].diff(dim=-1).abs().mean()  # blurred
    flat = torch.full((1, 3, 32, 32), 0.3)
    torch.testing.assert_close(filter2d(flat, kernels[1]), flat)  # normalised: flat stays flat


@pytest.mark.parametrize("sigma", [5.0, 15.0, 30.0])
def test_gaussian_noise_level_matches_the_requested_sigma(sigma):
    x = torch.full((2, 3, 256, 256), 0.5)
    g = torch.Generator().manual_seed(0)
    noisy = add_gaussian_noise(x, torch.tensor([sigma / 255] * 2), torch.tensor([False, True]), g)
    measured = (noisy - x).std(dim=(1, 2, 3)) * 255
    assert torch.allclose(measured, torch.tensor([sigma, sigma]), rtol=0.03)
    gray = noisy[1] - x[1]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])  # gray noise: same in every channel
    assert not torch.equal(noisy[0, 0], noisy[0, 1])


def test_poisson_noise_grows_with_intensity_and_scale():
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, 256).view(1, 1, 1, 256).expand(1, 3, 256, 256).contiguous()
    noise = add_poisson_noise(ramp, torch.tensor([1.0]), torch.tensor([False]), g) - ramp
    dark, bright = noise[..., :64].std(), noise[..., -64:].std()
    assert bright > 1.5 * dark  # shot noise: variance proportional to the signal
    stronger = add_poisson_noise(ramp, torch.tensor([3.0]), torch.tensor([False]), g) - ramp
    assert stronger.std().item() == pytest.approx(3 * noise.std().item(), rel=0.05)


def test_jpeg_output_matches_libjpeg_and_drifts_as_quality_drops():
    x = textured(1, 96)
    img = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    errors = []
    for quality in (95, 70, 40, 10):
        ours = jpeg_compress(x, torch.tensor([float(quality)]))
        assert ours.shape == x.shape and ours.min() >= 0 and ours.max() <= 1
        assert torch.equal(ours, (ours * 255).round() / 255)  # decoded to 8 bits
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=quality)
        libjpeg = np.asarray(Image.open(buf), np.float64)
        ours_np = ours[0].permute(1, 2, 0).numpy() * 255
        assert np.abs(ours_np - libjpeg).mean() < 2.0  # an 8-bit level or two: chroma filters differ
        errors.append(np.abs(ours_np - img).mean())
    assert errors == sorted(errors) and errors[-1] > 2 * errors[0]


def test_jpeg_quality_is_per_sample():
    x = textured(2, 64)
    both = jpeg_compress(x, torch.tensor([90.0, 20.0]))
    torch.testing.assert_close(both[1:], jpeg_compress(x[1:], torch.tensor([20.0])))
    assert (both[0] - x[0]).abs().mean() < (both[1] - x[1]).abs().mean()


def test_usm_sharpens_edges_and_leaves_flat_areas():
    x = textured(1, 96)
    sharp = usm_sharpen(x)
    assert sharp.diff(dim=-2).abs().max() > x.diff(dim=-2).abs().max()
    flat = torch.full((1, 3, 64, 64), 0.4)
    torch.testing.assert_close(usm_sharpen(flat), flat)


def test_bicubic_degrade_matches_matlab_imresize():
    x = textured(1, 64)
    lr = bicubic_degrade(x, 4)
    ref = np.clip(np.round(imresize_np(x[0].permute(1, 2, 0).double().numpy(), 0.25) * 255), 0, 255) / 255
    assert lr.shape == (1, 3, 16, 16)
    assert np.abs(lr[0].permute(1, 2, 0).numpy() - ref).max() <= 1 / 255 + 1e-6


def test_second_order_pipeline_is_seeded_and_sized():
    hr = textured(3, 96)
    lr = real_esrgan_degrade(hr, 4, seed=7)
    assert lr.shape == (3, 3, 24, 24)
    assert lr.min() >= 0 and lr.max() <= 1 and torch.equal(lr, (lr * 255).round() / 255)
    assert torch.equal(lr, real_esrgan_degrade(hr, 4, seed=7))
    assert not torch.equal(lr, real_esrgan_degrade(hr, 4, seed=8))
    # degraded, not just resized: further from bicubic than bicubic rounding error
    assert (lr - bicubic_degrade(hr, 4)).abs().mean() > 0.02
    assert real_esrgan_degrade(hr[:, :, :64, :80], 2, seed=1).shape == (3, 3, 32, 40)


def test_bad_degradation_config_names_the_key():
    with pytest.raises(ValueError, match="'jpeg_range'"):
        DegradationConfig(jpeg_range=(30, 120))
    with pytest.raises(ValueError, match="'second_blur_prob'"):
        DegradationConfig(second_blur_prob=1.5)
    with pytest.raises(ValueError, match="'kernel_sizes'"):
        BlurConfig(kernel_sizes=(8,))
