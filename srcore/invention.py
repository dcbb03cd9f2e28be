"""Where an output holds detail its input cannot attest: the invention map.

A low-resolution input records nothing above its own Nyquist limit: whatever an upscaled output holds there was
made by the model (a GAN's texture, or a sharp edge's ringing). The map is the output minus the output carried
down to the input's grid and back up (MATLAB bicubic both ways, on luminance), as a local RMS per output pixel
in 8-bit levels; the figure is the share of the output's area where it exceeds a threshold. The way down samples
without anti-aliasing: an interpolating upscaler's output (bicubic) then comes back almost exactly (a mean of
0.2 levels on RealWorld crops), while an anti-aliased round trip would count the input's own detail near its
Nyquist limit as invented (bicubic outputs: 2 levels, 18% of the area over the threshold on a JPEG photo).

What it does not catch: content changed *within* the input's band (a shifted colour, a moved edge) survives
the round trip; LR-consistency (:func:`srcore.metrics.lr_consistency`) measures that instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .imageio import to_8bit
from .metrics import Y_WEIGHTS
from .resize import imresize_torch

INVENTION_THRESHOLD = 4.0  # 8-bit Y levels of local RMS detail above the input's band: visible texture
INVENTION_MAX_PIXELS = 1 << 20  # output pixels mapped for a row's figure at most (~0.1 CPU-s): beyond, a crop grid


@dataclass(frozen=True)
class InventionMap:
    """magnitude: (H, W) float32, local RMS (8-bit Y levels) of the detail above the input's Nyquist limit;
    share: the fraction of pixels whose magnitude is over ``threshold``."""

    magnitude: np.ndarray
    share: float
    threshold: float

    def image(self, full_scale: float = 32.0) -> np.ndarray:
        """The map as an (H, W) uint8 image: 0 none, 255 at ``full_scale`` levels or more (a sidecar)."""
        return np.clip(self.magnitude * (255.0 / full_scale), 0, 255).astype(np.uint8)

    def overlay(self, full_scale: float = 16.0) -> np.ndarray:
        """The map as an (H, W, 4) uint8 red layer to lay over the output: opaque where the detail is
        ``full_scale`` levels or more, transparent where there is none (report.html's previews)."""
        alpha = np.clip(self.magnitude * (220.0 / full_scale), 0, 220).astype(np.uint8)
        layer = np.zeros((*alpha.shape, 4), np.uint8)
        layer[..., 0], layer[..., 1], layer[..., 2], layer[..., 3] = 255, 32, 32, alpha
        return layer


def _luminance(pixels: torch.Tensor) -> torch.Tensor:
    """(..., H, W, C) 8-bit-scale pixels -> (N, 1, H, W) float Y (gray: the values; alpha left out)."""
    x = pixels[..., :3] if pixels.shape[-1] in (3, 4) else pixels[..., :1]
    x = x.float()
    if x.shape[-1] == 3:
        y = x @ (torch.tensor(Y_WEIGHTS, device=x.device) / 255.0) + 16.0
    else:
        y = x[..., 0]
    return y.reshape(-1, 1, *y.shape[-2:])


def invention_magnitude(y: torch.Tensor, scale: float) -> torch.Tensor:
    """(N, 1, H, W) float Y planes (8-bit levels) of outputs made at ``scale`` -> the local RMS of their detail
    above the inputs' Nyquist limit, (N, 1, H, W), on their device."""
    if scale <= 1:
        raise ValueError(f"invention map: scale must be > 1, got {scale}")
    h, w = y.shape[-2:]
    back = imresize_torch(imresize_torch(y, 1 / scale, antialias=False), scale)[..., :h, :w]
    if back.shape[-2:] != (h, w):
        back = F.pad(back, (0, w - back.shape[-1], 0, h - back.shape[-2]), mode="replicate")
    detail = y - back
    window = max(3, 2 * int(round(scale)) + 1)  # about one input pixel around each output pixel
    r = window // 2
    squared = F.pad(detail * detail, (r, r, r, r), mode="reflect" if min(h, w) > r else "replicate")
    return F.avg_pool2d(squared, window, stride=1).clamp_min(0).sqrt()


def invention_map(output: np.ndarray, scale: float, threshold: float = INVENTION_THRESHOLD) -> InventionMap:
    """The invention map of an (H, W, C) uint8/uint16 output made at ``scale`` from its input (any C: gray,
    RGB, with or without alpha; alpha is left out)."""
    pixels = to_8bit(np.asarray(output))
    with torch.inference_mode():
        rms = invention_magnitude(_luminance(torch.from_numpy(np.ascontiguousarray(pixels))), scale)[0, 0]
    magnitude = rms.numpy().astype(np.float32)
    return InventionMap(magnitude, float((magnitude > threshold).mean()), threshold)


def invention_share(output: np.ndarray | torch.Tensor, scale: float, threshold: float = INVENTION_THRESHOLD,
                    max_pixels: int = INVENTION_MAX_PIXELS) -> float:
    """The share of an output's area with invented detail over ``threshold`` (the bucket job's per-row figure),
    on the output's device (a GPU worker's outputs stay there; 8-bit pixels). An output over ``max_pixels`` is
    mapped on an even grid of crops covering about ``max_pixels`` of it: the cost is bounded, as the
    LR-consistency check's is."""
    pixels = output if isinstance(output, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(to_8bit(output)))
    h, w = pixels.shape[:2]
    crop = 512
    with torch.inference_mode():
        if h * w <= max_pixels or min(h, w) < crop:
            return float((invention_magnitude(_luminance(pixels), scale) > threshold).float().mean())
        per_axis = max(1, int((max_pixels / crop**2) ** 0.5))
        ys = np.linspace(0, h - crop, min(per_axis, h // crop)).round().astype(int)
        xs = np.linspace(0, w - crop, min(per_axis, w // crop)).round().astype(int)
        crops = torch.cat([_luminance(pixels[y:y + crop, x:x + crop]) for y in ys for x in xs])
        return float((invention_magnitude(crops, scale) > threshold).float().mean())
