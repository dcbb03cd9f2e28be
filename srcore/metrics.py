"""PSNR and SSIM exactly as SR papers compute them, in numpy (8-bit images) and batched torch.

Conventions: RGB images are scored on the Y channel of ITU-R BT.601 YCbCr
(Y = 16 + 65.481 R + 128.553 G + 24.966 B, with R, G, B in [0, 1]); a grayscale image on its own
channel; ``crop_border`` (= the scale) pixels removed at each border; SSIM with an 11x11 Gaussian window,
sigma 1.5, K1 = 0.01, K2 = 0.03, over valid positions only, on the [0, 255] range.
numpy takes (H, W) or (H, W, C) arrays with values in [0, 255]; torch takes (N, C, H, W) in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .resize import imresize_torch

Y_WEIGHTS = (65.481, 128.553, 24.966)
C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


# --------------------------------------------------------------------------- numpy


def to_y_np(image: np.ndarray) -> np.ndarray:
    """[0, 255] image -> float64 channel scored by the papers: Y for RGB, the values themselves for gray."""
    x = np.asarray(image, dtype=np.float64)
    if x.ndim == 2:
        return x
    if x.shape[2] == 1:
        return x[..., 0]
    return 16.0 + x[..., :3] @ np.array(Y_WEIGHTS) / 255.0


def _crop(x: np.ndarray, border: int) -> np.ndarray:
    return x[border:-border, border:-border] if border else x


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")


def psnr_np(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """PSNR in dB between two [0, 255] images (uint8 or float)."""
    _check_pair(sr, hr)
    a, b = (to_y_np(sr), to_y_np(hr)) if y_channel else (np.asarray(sr, np.float64), np.asarray(hr, np.float64))
    mse = np.mean((_crop(a, crop_border) - _crop(b, crop_border)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _filter_valid(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D array with a 1-D window along both axes."""
    k = len(window)
    rows = sum(window[i] * x[i : x.shape[0] - k + 1 + i] for i in range(k))
    return sum(window[i] * rows[:, i : rows.shape[1] - k + 1 + i] for i in range(k))


def _ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    g = gaussian_window()
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a**2
    var_b = _filter_valid(b * b, g) - mu_b**2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + C1) * (2 * cov + C2)) / ((mu_a**2 + mu_b**2 + C1) * (var_a + var_b + C2))
    return float(ssim_map.mean())


def ssim_np(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0, y_channel: bool = True) -> float:
    """SSIM between two [0, 255] images; on Y (or gray), or averaged over channels with ``y_channel=False``."""
    _check_pair(sr, hr)
    if y_channel or np.asarray(sr).ndim == 2:
        return _ssim_channel(_crop(to_y_np(sr) if y_channel else np.asarray(sr, np.float64), crop_border),
                             _crop(to_y_np(hr) if y_channel else np.asarray(hr, np.float64), crop_border))
    a, b = np.asarray(sr, np.float64), np.asarray(hr, np.float64)
    return float(np.mean([_ssim_channel(_crop(a[..., c], crop_border), _crop(b[..., c], crop_border))
                          for c in range(a.shape[2])]))


# --------------------------------------------------------------------------- torch


def to_y_torch(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> (N, 1, H, W) in [0, 255] scale: Y for 3 channels, the channel itself for 1."""
    if images.shape[1] == 1:
        return images * 255.0
    w = torch.tensor(Y_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return 16.0 + (images[:, :3] * w).sum(dim=1, keepdim=True)


def _prepare(sr: torch.Tensor, hr: torch.Tensor, crop_border: int, y_channel: bool, dtype: torch.dtype):
    if sr.shape != hr.shape:
        raise ValueError(f"images differ in shape: {tuple(sr.shape)} vs {tuple(hr.shape)}")
    sr, hr = sr.to(dtype), hr.to(dtype)
    a, b = (to_y_torch(sr), to_y_torch(hr)) if y_channel else (sr * 255.0, hr * 255.0)
    if crop_border:
        a = a[..., crop_border:-crop_border, crop_border:-crop_border]
        b = b[..., crop_border:-crop_border, crop_border:-crop_border]
    return a, b


def psnr_torch(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 0, y_channel: bool = True,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Per-image PSNR (N,) of (N, C, H, W) batches in [0, 1]. float64 by default, to match ``psnr_np``."""
    a, b = _prepare(sr, hr, crop_border, y_channel, dtype)
    mse = ((a - b) ** 2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(255.0**2 / mse)


def ssim_torch(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 0, y_channel: bool = True,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Per-image SSIM (N,) of (N, C, H, W) batches in [0, 1], averaged over channels when not on Y.

    float64 by default: in float32 the variance E[x^2] - mu^2 loses about 1e-4 of SSIM to cancellation.
    """
    a, b = _prepare(sr, hr, crop_border, y_channel, dtype)
    c = a.shape[1]
    g = torch.from_numpy(gaussian_window()).to(a.device, a.dtype)
    window = (g[:, None] * g[None, :]).expand(c, 1, 11, 11).contiguous()

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, window, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + C1) * (2 * cov + C2)) / ((mu_a**2 + mu_b**2 + C1) * (var_a + var_b + C2))
    return ssim_map.mean(dim=(1, 2, 3))


# --------------------------------------------------------------------------- LR-consistency (no ground truth)

LR_CHECK_PIXELS = 1 << 21  # input pixels checked at most: beyond them, a grid of crops stands for the image
_CROP, _MARGIN = 256, 4  # crop side and context (input pixels; the bicubic kernel reaches 2 of them)


def lr_consistency(lr: np.ndarray, sr: np.ndarray, scale: float, max_pixels: int = LR_CHECK_PIXELS) -> float | None:
    """LR-consistency PSNR (dB, on Y): the output downscaled by the benchmarks' MATLAB bicubic against the input.

    Needs no ground truth: a faithful upscaler reproduces its input when downscaled again; hallucinated or
    shifted content does not. The one implementation for evaluation, training validation and the bucket job.

    Y is taken before downscaling (both are linear, so this equals downscaling RGB first, up to rounding) to
    resize one plane instead of three. Alpha is ignored; 16-bit pixels are compared on the 8-bit scale.
    None for outputs too small to downscale.

    Memory is bounded: an input over ``max_pixels`` (integer scales) is checked on an even grid of 256-pixel
    crops covering about ``max_pixels`` of it, each downscaled with 4 pixels of context and compared inside
    it, so the check needs about 40 bytes per output pixel of one crop (some 45 MB at x4), not of the image.
    """
    lr, sr = (x[..., None] if x.ndim == 2 else x for x in (lr, sr))  # gray as one channel
    if min(sr.shape[:2]) < 4:
        return None
    h, w = lr.shape[:2]
    if h * w <= max_pixels or scale != int(scale) or min(h, w) < _CROP:
        return _psnr(*_y_pair(lr, sr, scale))
    s, per_axis = int(scale), max(1, int((max_pixels / _CROP**2) ** 0.5))
    squared, count = 0.0, 0
    for y in np.linspace(0, h - _CROP, per_axis).astype(int):
        for x in np.linspace(0, w - _CROP, per_axis).astype(int):
            y0, x0 = max(0, y - _MARGIN), max(0, x - _MARGIN)
            y1, x1 = min(h, y + _CROP + _MARGIN), min(w, x + _CROP + _MARGIN)
            down, ref = _y_pair(lr[y0:y1, x0:x1], sr[y0 * s : y1 * s, x0 * s : x1 * s], s)
            inside = (..., slice(y - y0, y - y0 + _CROP), slice(x - x0, x - x0 + _CROP))
            squared += float(((down[inside] - ref[inside]) ** 2).sum())
            count += _CROP * _CROP
    return 10 * float(np.log10(255.0**2 / max(squared / count, 1e-10)))


def _y_pair(lr: np.ndarray, sr: np.ndarray, scale: float):
    """(the output's Y downscaled by 1/scale, the input's Y), on the 8-bit scale, cropped to a common size."""
    top = 65535.0 if sr.dtype == np.uint16 else 255.0

    def y_plane(pixels: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(pixels[..., :3] if pixels.shape[2] >= 3 else pixels[..., :1], np.float32))
        return to_y_torch(x.permute(2, 0, 1)[None] / top)

    with torch.inference_mode():
        down, ref = imresize_torch(y_plane(sr), 1.0 / scale), y_plane(lr)
        h, w = min(down.shape[2], ref.shape[2]), min(down.shape[3], ref.shape[3])
        return down[..., :h, :w].numpy(), ref[..., :h, :w].numpy()


def _psnr(down: np.ndarray, ref: np.ndarray) -> float:
    mse = float(((down - ref) ** 2).mean())
    return 10 * float(np.log10(255.0**2 / max(mse, 1e-10)))
