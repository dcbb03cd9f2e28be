"""MATLAB-compatible ``imresize`` (bicubic, antialiased when downscaling), in numpy and batched torch.

Super-resolution benchmarks make their LR inputs with MATLAB's ``imresize(HR, 1/s, 'bicubic')``;
Pillow, OpenCV and ``torch.nn.functional.interpolate`` give different pixels and scores.
Each axis is a weighted sum over a few neighbours: the weights and (symmetrically reflected)
source indices are computed once per axis, so memory grows with the output size times the kernel
support, not with the image squared.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5, as MATLAB uses."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


def axis_weights(in_length: int, out_length: int, scale: float,
                 antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Weights (out_length, taps) and source indices (out_length, taps) for resizing one axis.

    Indices outside [0, in_length) are reflected symmetrically (edge pixel repeated), as MATLAB pads.
    """
    kernel_width = 4.0
    shrink = scale < 1 and antialias
    if shrink:
        kernel_width /= scale  # widen the kernel: antialiasing
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centre in input coordinates (1-based)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # 1-based
    distance = u[:, None] - indices
    weights = scale * cubic(distance * scale) if shrink else cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    keep = np.any(weights != 0, axis=0)  # drop all-zero tap columns, as MATLAB does
    weights, indices = weights[:, keep], indices[:, keep]
    indices = indices.astype(np.int64) - 1  # 0-based
    period = 2 * in_length
    indices = np.mod(indices, period)
    indices = np.where(indices >= in_length, period - 1 - indices, indices)  # symmetric reflection
    return weights, indices


def output_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return tuple(int(math.ceil(s * scale)) for s in size)


def _resize_plan(h: int, w: int, scale: float, antialias: bool):
    out_h, out_w = output_size((h, w), scale)
    return axis_weights(h, out_h, scale, antialias), axis_weights(w, out_w, scale, antialias)


def imresize_np(image: np.ndarray, scale: float, antialias: bool = True) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) image by ``scale`` like MATLAB's ``imresize(image, scale, 'bicubic')``.

    Computes in float64. uint8 input gives uint8 output, rounded and clipped as MATLAB does;
    float input gives unclipped float64 output.
    """
    if scale <= 0:
        raise ValueError(f"imresize: scale must be positive, got {scale}")
    is_uint8 = image.dtype == np.uint8
    x = image.astype(np.float64)
    (wh, ih), (ww, iw) = _resize_plan(x.shape[0], x.shape[1], scale, antialias)
    # height first: with equal scales MATLAB's order; out[i] = sum_t w[i, t] * x[idx[i, t]]
    x = np.einsum("ot,ot...->o...", wh, x[ih])
    x = np.einsum("ot,iot...->io...", ww, x[:, iw])
    if is_uint8:
        return np.clip(np.round(x), 0, 255).astype(np.uint8)
    return x


DENSE_WEIGHTS = 1 << 22  # entries of an axis's weight matrix up to which the resize is two matrix products


def imresize_torch(images: torch.Tensor, scale: float, antialias: bool = True) -> torch.Tensor:
    """Batched ``imresize`` on (..., H, W) float tensors on any device; same arithmetic as ``imresize_np``.

    No rounding or clipping: callers quantise when they need 8-bit values. Each axis is a product with its
    (out, in) weight matrix while those are small (ten times the speed of gathering taps: the LR-consistency
    check of every output runs here), else a weighted sum over gathered taps.
    """
    if scale <= 0:
        raise ValueError(f"imresize: scale must be positive, got {scale}")
    if not images.is_floating_point():
        raise TypeError("imresize_torch expects a float tensor (divide uint8 images by 255 first)")
    h, w = images.shape[-2], images.shape[-1]
    dev, dt = images.device, images.dtype
    out_h, out_w = output_size((h, w), scale)
    if max(out_h * h, out_w * w) <= DENSE_WEIGHTS:
        return _dense_weights(h, scale, antialias, dev, dt) @ images @ _dense_weights(w, scale, antialias, dev, dt).T
    (wh, ih), (ww, iw) = _resize_plan(h, w, scale, antialias)
    wh, ww = torch.from_numpy(wh).to(dev, dt), torch.from_numpy(ww).to(dev, dt)
    ih, iw = torch.from_numpy(ih).to(dev), torch.from_numpy(iw).to(dev)
    x = images[..., ih, :]  # (..., out_h, taps, W)
    x = torch.einsum("ot,...otw->...ow", wh, x)
    x = x[..., iw]  # (..., out_h, out_w, taps)
    return torch.einsum("ot,...hot->...ho", ww, x)


@lru_cache(maxsize=64)
def _dense_weights(length: int, scale: float, antialias: bool, device: torch.device, dtype: torch.dtype
                   ) -> torch.Tensor:
    """An axis's weights at their source indices as an (out, length) matrix on ``device`` (reflected indices
    that repeat add up, as the tap sum does); cached: a job's images mostly share a few sizes. Callers never
    write to it."""
    weights, indices = axis_weights(length, output_size((length,), scale)[0], scale, antialias)
    matrix = np.zeros((weights.shape[0], length))
    np.add.at(matrix, (np.arange(weights.shape[0])[:, None], indices), weights)
    return torch.from_numpy(matrix).to(device, dtype)
