"""Pixel modes around a network, in one place: gray, alpha, Y-channel models, 16-bit, and the final outscale.

Images travel as (H, W, C) uint8 or uint16 (or float in [0, 1]) with C = 1 gray, 2 gray + alpha, 3 RGB,
4 RGBA. A network sees RGB (or Y for a Y-channel model such as SRCNN); :func:`network_inputs` says which
arrays it must upscale for one image and :func:`assemble` puts its outputs back into the image's own mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import cv2
import numpy as np

from .archs.descriptor import ModelDescriptor
from .resize import imresize_np

ALPHA_MODES = ("bicubic", "network")
# full-range BT.601 (JFIF) YCbCr: what Pillow's "YCbCr" mode and the SRCNN papers' Y-channel models use
# (its first row is the one gray rule: luma, for gray from RGB anywhere in srcore)
BT601_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_TO_YCBCR = BT601_YCBCR.astype(np.float32)
_TO_RGB = np.linalg.inv(BT601_YCBCR).astype(np.float32)


def max_value(dtype: np.dtype) -> float:
    """The value of full intensity: 255 for uint8, 65535 for uint16, 1.0 for floats."""
    return {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(np.dtype(dtype), 1.0)


def check_alpha(alpha: str) -> None:
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be 'bicubic' or 'network', got {alpha!r}")


def network_inputs(pixels: np.ndarray, descriptor: ModelDescriptor, alpha: str = "bicubic") -> list[np.ndarray]:
    """The arrays the network must upscale for one image: its colour (as the network's channels), then its
    alpha plane when ``alpha == "network"``."""
    c = pixels.shape[2]
    colour = pixels[..., : 3 if c >= 3 else 1]
    if descriptor.in_channels == 1:  # a Y-channel model sees the luma only
        jobs = [colour if colour.shape[2] == 1 else _ycbcr(colour)[..., :1]]
    elif descriptor.in_channels == 3:
        jobs = [np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour]
    else:
        raise ValueError(f"models with {descriptor.in_channels} input channels cannot upscale images")
    if c in (2, 4) and alpha == "network":
        a = pixels[..., c - 1 :]
        jobs.append(a if descriptor.in_channels == 1 else np.repeat(a, 3, axis=2))
    return jobs


def assemble(pixels: np.ndarray, outputs: Iterator[np.ndarray], descriptor: ModelDescriptor, alpha: str = "bicubic",
             outscale: float | None = None) -> np.ndarray:
    """The network's outputs for ``pixels`` (in :func:`network_inputs`' order) -> the upscaled image in the
    input's mode and dtype: gray from RGB by BT.601 luma, a Y model's chroma by bicubic, alpha re-attached,
    then resized to ``outscale`` (Lanczos up, area down) when it differs from the model's scale."""
    c = pixels.shape[2]
    out = next(outputs)
    scale = descriptor.scale
    if descriptor.in_channels == 1 and c >= 3:
        out = _with_bicubic_chroma(pixels[..., :3], out, scale)
    elif descriptor.in_channels == 3 and c <= 2:
        out = luma(out)
    if c in (2, 4):
        if alpha == "network":
            up_alpha = next(outputs).astype(np.float32) @ _TO_YCBCR[0]  # alpha is a gray plane
            top = max_value(pixels.dtype)
            up_alpha = np.clip(np.rint(up_alpha) if top != 1.0 else up_alpha, 0, top).astype(pixels.dtype)
        else:
            h, w = out.shape[:2]
            up_alpha = cv2.resize(np.ascontiguousarray(pixels[..., c - 1]), (w, h), interpolation=cv2.INTER_CUBIC)
        out = np.concatenate([out, up_alpha[..., None]], axis=2)
    if outscale is not None and outscale != scale:
        out = resize_to(out, (round(pixels.shape[1] * outscale), round(pixels.shape[0] * outscale)))
    return out


def band_assembler(pixels: np.ndarray, descriptor: ModelDescriptor, alpha: str = "bicubic",
                   outscale: float | None = None) -> Callable[[np.ndarray], np.ndarray] | None:
    """For modes where each output row follows from the network's rows alone (an RGB model on RGB or gray
    pixels without alpha, at the model's own scale): what :func:`assemble` does to a band of rows.
    None for the rest (a Y model's bicubic chroma, alpha, a resize to ``outscale`` need whole images)."""
    c = pixels.shape[2]
    if descriptor.in_channels != 3 or c not in (1, 3) or outscale not in (None, descriptor.scale):
        return None
    return luma if c == 1 else _unchanged


def _unchanged(band: np.ndarray) -> np.ndarray:
    return band


def luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W, 1) BT.601 luma, same dtype."""
    y = rgb.astype(np.float32) @ _TO_YCBCR[0]
    return _to_dtype(y[..., None], rgb.dtype)


def _ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB -> full-range YCbCr of the same dtype (chroma centred on half the range)."""
    top = max_value(rgb.dtype)
    x = rgb.astype(np.float32) @ _TO_YCBCR.T
    x[..., 1:] += (top + (top != 1.0)) / 2  # 128 for 8 bits, 32768 for 16, 0.5 for floats
    return _to_dtype(x, rgb.dtype)


def _with_bicubic_chroma(rgb: np.ndarray, y_up: np.ndarray, scale: int) -> np.ndarray:
    """A Y model's upscaled luma joined with the input's chroma upscaled by (MATLAB) bicubic, back to RGB."""
    top = max_value(rgb.dtype)
    centre = (top + (top != 1.0)) / 2
    chroma = imresize_np(_ycbcr(rgb)[..., 1:].astype(np.float64), float(scale)).astype(np.float32)
    h, w = y_up.shape[:2]
    ycc = np.concatenate([y_up.astype(np.float32), chroma[:h, :w] - centre], axis=2)
    return _to_dtype(ycc @ _TO_RGB.T, rgb.dtype)


def _to_dtype(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    top = max_value(dtype)
    return np.clip(np.rint(x) if top != 1.0 else x, 0, top).astype(dtype)


def resize_to(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """High-quality resize of (H, W, C) to (width, height): Lanczos when enlarging, area when shrinking."""
    w, h = size
    if w < 1 or h < 1:
        raise ValueError(f"outscale gives an empty image ({w}x{h})")
    shrink = w < pixels.shape[1]
    out = cv2.resize(pixels, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4)
    return out[..., None] if out.ndim == 2 else out
