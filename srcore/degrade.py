"""LR synthesis for training: bicubic, and Real-ESRGAN's second-order degradation model (Wang et al., 2021).

Random parameters are drawn per sample from a numpy ``Generator`` and noise from a torch ``Generator``,
both seeded from one integer, so the same seed gives the same LR batch. Image ops run batched in torch on
the batch's device (the GPU during training). Images are (N, C, H, W) in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .modes import BT601_YCBCR
from .resize import imresize_torch

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
MAX_KERNEL = 21


def _check_prob(key: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"degradation key {key!r} must be a probability in [0, 1], got {value!r}")


def _check_probs(key: str, values: tuple, length: int) -> None:
    if len(values) != length or any(v < 0 for v in values) or not sum(values) > 0:
        raise ValueError(f"degradation key {key!r} must be {length} non-negative weights, got {values!r}")


def _check_range(key: str, value: tuple, low: float = 0.0, high: float = math.inf) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ValueError(f"degradation key {key!r} must be (min, max) with {low} <= min <= max <= {high}, "
                         f"got {value!r}")



# --------------------------------------------------------------------------- kernels (numpy, float64)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ax = np.arange(-(size // 2), size // 2 + 1, dtype=np.float64)
    return np.meshgrid(ax, ax)


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """x^T Sigma^-1 x on a size x size grid, Sigma = R diag(sx^2, sy^2) R^T."""
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    sigma = rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T
    inv = np.linalg.inv(sigma)
    xx, yy = _grid(size)
    return inv[0, 0] * xx**2 + (inv[0, 1] + inv[1, 0]) * xx * yy + inv[1, 1] * yy**2


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float = 0.0, beta: float = 1.0) -> np.ndarray:
    """Generalized Gaussian exp(-0.5 q^beta) (beta = 1: Gaussian), normalised to sum 1."""
    k = np.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, theta) ** beta)
    return k / k.sum()


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    """Plateau-shaped kernel 1 / (q^beta + 1), normalised to sum 1."""
    k = 1.0 / (_quadratic_form(size, sigma_x, sigma_y, theta) ** beta + 1)
    return k / k.sum()


def sinc_kernel(cutoff: float, size: int) -> np.ndarray:
    """2-D circular low-pass (sinc) kernel with cutoff frequency ``cutoff`` (radians), normalised to sum 1.

    It models ringing and overshoot artifacts. k(r) = cutoff * J1(cutoff * r) / (2 pi r).
    """
    xx, yy = _grid(size)
    r = np.sqrt(xx**2 + yy**2)
    j1 = torch.special.bessel_j1(torch.from_numpy(cutoff * r)).numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        k = cutoff * j1 / (2 * np.pi * r)
    k[size // 2, size // 2] = cutoff**2 / (4 * np.pi)  # the limit at r = 0
    return k / k.sum()


def pad_kernel(kernel: np.ndarray, size: int = MAX_KERNEL) -> np.ndarray:
    pad = (size - kernel.shape[0]) // 2
    return np.pad(kernel, pad)


def pulse_kernel(size: int = MAX_KERNEL) -> np.ndarray:
    k = np.zeros((size, size))
    k[size // 2, size // 2] = 1
    return k


@dataclass(frozen=True)
class BlurConfig:
    """One blur stage: kernel family probabilities and parameter ranges (Real-ESRGAN's published values)."""

    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # in KERNEL_TYPES order
    sigma_range: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1
    kernel_sizes: tuple[int, ...] = tuple(range(7, 22, 2))

    def __post_init__(self):
        _check_probs("kernel_probs", self.kernel_probs, len(KERNEL_TYPES))
        _check_range("sigma_range", self.sigma_range, low=1e-3)
        _check_prob("sinc_prob", self.sinc_prob)
        if any(s % 2 == 0 or not 3 <= s <= MAX_KERNEL for s in self.kernel_sizes):
            raise ValueError(f"degradation key 'kernel_sizes' must be odd sizes in 3..{MAX_KERNEL}, "
                             f"got {self.kernel_sizes}")


def random_kernel(rng: np.random.Generator, cfg: BlurConfig) -> np.ndarray:
    """One random blur kernel (21x21, zero-padded): a sinc with probability ``sinc_prob``, else a random family."""
    size = int(rng.choice(cfg.kernel_sizes))
    if rng.uniform() < cfg.sinc_prob:
        cutoff = rng.uniform(np.pi / 3, np.pi) if size < 13 else rng.uniform(np.pi / 5, np.pi)
        return pad_kernel(sinc_kernel(cutoff, size))
    kind = KERNEL_TYPES[rng.choice(len(KERNEL_TYPES), p=np.asarray(cfg.kernel_probs) / sum(cfg.kernel_probs))]
    sx = rng.uniform(*cfg.sigma_range)
    if kind.endswith("iso") and not kind.endswith("aniso"):
        sy, theta = sx, 0.0
    else:
        sy, theta = rng.uniform(*cfg.sigma_range), rng.uniform(-np.pi, np.pi)
    if kind.startswith("generalized"):
        lo, hi = cfg.betag_range
        beta = rng.uniform(lo, 1) if rng.uniform() < 0.5 else rng.uniform(1, hi)
        kernel = gaussian_kernel(size, sx, sy, theta, beta)
    elif kind.startswith("plateau"):
        lo, hi = cfg.betap_range
        beta = rng.uniform(lo, 1) if rng.uniform() < 0.5 else rng.uniform(1, hi)
        kernel = plateau_kernel(size, sx, sy, theta, beta)
    else:
        kernel = gaussian_kernel(size, sx, sy, theta)
    return pad_kernel(kernel)


# --------------------------------------------------------------------------- image ops (torch, batched)


def filter2d(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each image with its own kernel: images (N, C, H, W), kernels (N, k, k) or (k, k); reflect padding."""
    n, c, h, w = images.shape
    k = kernels.shape[-1]
    kernels = kernels.to(images).expand(n, k, k) if kernels.ndim == 2 else kernels.to(images)
    pad = k // 2
    mode = "reflect" if pad < h and pad < w else "replicate"
    x = F.pad(images, (pad, pad, pad, pad), mode=mode).reshape(1, n * c, h + 2 * pad, w + 2 * pad)
    weight = kernels.repeat_interleave(c, dim=0).unsqueeze(1)  # (N*C, 1, k, k)
    return F.conv2d(x, weight, groups=n * c).reshape(n, c, h, w)


def add_gaussian_noise(images: torch.Tensor, sigmas: torch.Tensor, gray: torch.Tensor,
                       generator: torch.Generator) -> torch.Tensor:
    """Additive Gaussian noise; ``sigmas`` (N,) in [0, 1] units; ``gray`` (N,) bool: one noise map for all channels."""
    n, c, h, w = images.shape
    color = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    mono = torch.randn((n, 1, h, w), generator=generator, device=images.device, dtype=images.dtype)
    noise = torch.where(gray.view(n, 1, 1, 1), mono.expand_as(color), color)
    return images + noise * sigmas.to(images).view(n, 1, 1, 1)


def add_poisson_noise(images: torch.Tensor, scales: torch.Tensor, gray: torch.Tensor,
                      generator: torch.Generator) -> torch.Tensor:
    """Signal-dependent (shot) noise: Poisson counts at a level set by each image's number of distinct 8-bit
    values, times ``scales`` (N,); ``gray`` (N,) bool: noise computed on luma and shared by the channels."""
    n = images.shape[0]
    luma = (images * torch.tensor(BT601_YCBCR[0], device=images.device, dtype=images.dtype)
            .view(1, 3, 1, 1)).sum(1, keepdim=True)
    noises = []
    for source in (images, luma):
        q = torch.clamp((source * 255).round(), 0, 255) / 255
        levels = torch.tensor([len(torch.unique(q[i])) for i in range(n)], device=images.device, dtype=images.dtype)
        vals = (2 ** torch.ceil(torch.log2(levels))).view(n, 1, 1, 1)
        noises.append(torch.poisson(q * vals, generator=generator) / vals - q)
    color, mono = noises
    noise = torch.where(gray.view(n, 1, 1, 1), mono.expand_as(color), color)
    return images + noise * scales.to(images).view(n, 1, 1, 1)


# JPEG (ITU T.81 Annex K) luminance and chrominance quantisation tables
_Y_TABLE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64).reshape(8, 8)
_C_TABLE = np.full((8, 8), 99.0)
_C_TABLE[:4, :4] = np.array([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]])


def _dct_matrix() -> np.ndarray:
    """Orthonormal 8-point DCT-II matrix D: coefficients = D @ block @ D.T."""
    d = np.array([[np.cos((2 * x + 1) * u * np.pi / 16) for x in range(8)] for u in range(8)])
    d[0] *= 1 / np.sqrt(8)
    d[1:] *= np.sqrt(2 / 8)
    return d


def quantisation_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """libjpeg's quality scaling of the standard tables: (N, 8, 8) for luma and chroma."""
    q = quality.double().clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q).view(-1, 1, 1)
    tables = []
    for base in (_Y_TABLE, _C_TABLE):
        t = torch.floor((torch.from_numpy(base).to(q.device) * scale + 50) / 100)
        tables.append(t.clamp(1, 255))
    return tables[0], tables[1]


def _blockwise(x: torch.Tensor, fn) -> torch.Tensor:
    """Apply fn to (N, B, 8, 8) blocks of (N, H, W) planes (H, W multiples of 8)."""
    n, h, w = x.shape
    blocks = x.reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4).reshape(n, -1, 8, 8)
    blocks = fn(blocks)
    return blocks.reshape(n, h // 8, w // 8, 8, 8).permute(0, 1, 3, 2, 4).reshape(n, h, w)


def jpeg_compress(images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Baseline JPEG round trip in torch (YCbCr, 4:2:0 chroma, 8x8 DCT, quantisation), per-sample ``quality`` (N,).

    Runs batched on the images' device; matches an encode/decode by libjpeg up to its chroma filters.
    """
    n, c, h, w = images.shape
    if c != 3:
        raise ValueError(f"jpeg_compress expects RGB (N, 3, H, W), got {c} channels")
    dev = images.device
    x = images.double().clamp(0, 1) * 255
    ph, pw = (-h) % 16, (-w) % 16
    x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    ycc = torch.einsum("ij,njhw->nihw", torch.from_numpy(BT601_YCBCR).to(x), x[:, :3])
    y, cb, cr = ycc[:, 0], ycc[:, 1] + 128, ycc[:, 2] + 128
    cb, cr = (F.avg_pool2d(ch.unsqueeze(1), 2).squeeze(1) for ch in (cb, cr))
    d = torch.from_numpy(_dct_matrix()).to(dev)
    y_table, c_table = quantisation_tables(quality.to(dev))

    def roundtrip(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        def fn(blocks: torch.Tensor) -> torch.Tensor:
            coeff = d @ (blocks - 128) @ d.T
            coeff = torch.round(coeff / table.unsqueeze(1)) * table.unsqueeze(1)
            return d.T @ coeff @ d + 128
        return _blockwise(plane, fn)

    y = roundtrip(y, y_table)
    cb, cr = (roundtrip(ch, c_table) for ch in (cb, cr))
    cb, cr = (F.interpolate(ch.unsqueeze(1), scale_factor=2, mode="bilinear", align_corners=False).squeeze(1)
              for ch in (cb, cr))
    r = y + 1.402 * (cr - 128)
    g = y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128)
    b = y + 1.772 * (cb - 128)
    out = torch.stack([r, g, b], dim=1)[..., :h, :w]
    return (out.round().clamp(0, 255) / 255).to(images.dtype)


def usm_sharpen(images: torch.Tensor, weight: float = 0.5, threshold: float = 10, radius: int = 50) -> torch.Tensor:
    """Unsharp masking of the ground truth (Real-ESRGAN trains on sharpened targets): edges whose residual
    exceeds ``threshold``/255 are sharpened by ``weight``, blended through a blurred mask so flat areas stay."""
    size = 2 * radius + 1
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8  # OpenCV's default for sigma = 0
    kernel = torch.from_numpy(gaussian_kernel(size, sigma, sigma)).to(images)
    blur = filter2d(images, kernel)
    residual = images - blur
    mask = (residual.abs() * 255 > threshold).to(images)
    soft_mask = filter2d(mask, kernel)
    sharp = (images + weight * residual).clamp(0, 1)
    return soft_mask * sharp + (1 - soft_mask) * images


def quantise_8bit(images: torch.Tensor) -> torch.Tensor:
    return (images * 255).round().clamp(0, 255) / 255


def bicubic_degrade(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Benchmark-style LR: MATLAB bicubic downscale, rounded to 8 bits."""
    return quantise_8bit(imresize_torch(hr, 1.0 / scale))


# --------------------------------------------------------------------------- the second-order model


@dataclass(frozen=True)
class DegradationConfig:
    """Real-ESRGAN's degradation parameters (``train_realesrnet_x4plus.yml``), defaults as published.

    Noise sigmas are in 8-bit units; ``resize_probs`` are (up, down, keep).
    """

    blur1: BlurConfig = BlurConfig()
    blur2: BlurConfig = BlurConfig(sigma_range=(0.2, 1.5))
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)
    second_blur_prob: float = 0.8
    resize_probs2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: tuple[float, float] = (30.0, 95.0)
    final_sinc_prob: float = 0.8

    def __post_init__(self):
        for key in ("gaussian_noise_prob", "gray_noise_prob", "second_blur_prob", "gaussian_noise_prob2",
                    "gray_noise_prob2", "final_sinc_prob"):
            _check_prob(key, getattr(self, key))
        for key in ("resize_probs", "resize_probs2"):
            _check_probs(key, getattr(self, key), 3)
        for key in ("resize_range", "resize_range2", "noise_range", "noise_range2", "poisson_scale_range",
                    "poisson_scale_range2"):
            _check_range(key, getattr(self, key))
        for key in ("jpeg_range", "jpeg_range2"):
            _check_range(key, getattr(self, key), low=1, high=100)


def _random_resize(x: torch.Tensor, rng: np.random.Generator, probs, scale_range, base: tuple[int, int],
                   ) -> torch.Tensor:
    kind = rng.choice(3, p=np.asarray(probs) / sum(probs))
    factor = (rng.uniform(1, scale_range[1]), rng.uniform(scale_range[0], 1), 1.0)[kind]
    mode = RESIZE_MODES[rng.integers(3)]
    size = (max(1, int(base[0] * factor)), max(1, int(base[1] * factor)))
    return _resize(x, size, mode)


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    kwargs = {} if mode == "area" else {"align_corners": False, "antialias": False}
    return F.interpolate(x, size=size, mode=mode, **kwargs)


def _random_noise(x, rng, generator, gaussian_prob, sigma_range, poisson_range, gray_prob) -> torch.Tensor:
    n = x.shape[0]
    gray = torch.from_numpy(rng.uniform(size=n) < gray_prob).to(x.device)
    if rng.uniform() < gaussian_prob:
        sigmas = torch.from_numpy(rng.uniform(*sigma_range, size=n) / 255)
        return add_gaussian_noise(x, sigmas, gray, generator)
    return add_poisson_noise(x, torch.from_numpy(rng.uniform(*poisson_range, size=n)), gray, generator)


def _random_jpeg(x: torch.Tensor, rng: np.random.Generator, quality_range) -> torch.Tensor:
    quality = torch.from_numpy(rng.uniform(*quality_range, size=x.shape[0]))
    return jpeg_compress(x.clamp(0, 1), quality)


def real_esrgan_degrade(hr: torch.Tensor, scale: int, cfg: DegradationConfig = DegradationConfig(),
                        seed: int = 0) -> torch.Tensor:
    """Synthesise LR images from HR (N, 3, H, W) with Real-ESRGAN's second-order degradation.

    Stage 1 and 2: blur, random resize, Gaussian or Poisson noise, JPEG (stage 2 blurs with
    ``second_blur_prob``). Then, in random order: resize to H/scale x W/scale with a final sinc filter,
    and JPEG. Output (N, 3, H/scale, W/scale), quantised to 8 bits. Same ``seed``, same output.
    """
    n, _, h, w = hr.shape
    rng = np.random.default_rng(seed)
    generator = torch.Generator(device=hr.device).manual_seed(seed)
    kernels1 = torch.from_numpy(np.stack([random_kernel(rng, cfg.blur1) for _ in range(n)]))
    kernels2 = torch.from_numpy(np.stack([random_kernel(rng, cfg.blur2) for _ in range(n)]))
    finals = []
    for _ in range(n):
        if rng.uniform() < cfg.final_sinc_prob:
            size = int(rng.choice(cfg.blur1.kernel_sizes))
            finals.append(pad_kernel(sinc_kernel(rng.uniform(np.pi / 3, np.pi), size)))
        else:
            finals.append(pulse_kernel())
    final_kernels = torch.from_numpy(np.stack(finals))
    out_size = (h // scale, w // scale)

    # stage 1
    x = filter2d(hr, kernels1)
    x = _random_resize(x, rng, cfg.resize_probs, cfg.resize_range, (h, w))
    x = _random_noise(x, rng, generator, cfg.gaussian_noise_prob, cfg.noise_range, cfg.poisson_scale_range,
                      cfg.gray_noise_prob)
    x = _random_jpeg(x, rng, cfg.jpeg_range)
    # stage 2
    if rng.uniform() < cfg.second_blur_prob:
        x = filter2d(x, kernels2)
    x = _random_resize(x, rng, cfg.resize_probs2, cfg.resize_range2, out_size)
    x = _random_noise(x, rng, generator, cfg.gaussian_noise_prob2, cfg.noise_range2, cfg.poisson_scale_range2,
                      cfg.gray_noise_prob2)
    # final: resize back + sinc, and JPEG, in random order
    mode = RESIZE_MODES[rng.integers(3)]
    if rng.uniform() < 0.5:
        x = filter2d(_resize(x, out_size, mode), final_kernels)
        x = _random_jpeg(x, rng, cfg.jpeg_range2)
    else:
        x = _random_jpeg(x, rng, cfg.jpeg_range2)
        x = filter2d(_resize(x, out_size, mode), final_kernels)
    return quantise_8bit(x.clamp(0, 1))
