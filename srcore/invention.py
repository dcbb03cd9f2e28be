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

import cv2
import numpy as np

from .imageio import to_8bit
from .metrics import to_y_np
from .resize import imresize_np

INVENTION_THRESHOLD = 4.0  # 8-bit Y levels of local RMS detail above the input's band: visible texture


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


def invention_map(output: np.ndarray, scale: float, threshold: float = INVENTION_THRESHOLD) -> InventionMap:
    """The invention map of an (H, W, C) uint8/uint16 output made at ``scale`` from its input (any C: gray,
    RGB, with or without alpha; alpha is left out)."""
    if scale <= 1:
        raise ValueError(f"invention map: scale must be > 1, got {scale}")
    pixels = to_8bit(np.asarray(output))
    pixels = pixels[..., :3] if pixels.shape[-1] in (3, 4) else pixels[..., :1]
    y = to_y_np(pixels)
    h, w = y.shape
    back = imresize_np(imresize_np(y, 1 / scale, antialias=False), scale)
    back = np.pad(back[:h, :w], ((0, max(0, h - back.shape[0])), (0, max(0, w - back.shape[1]))), mode="edge")
    detail = (y - back).astype(np.float32)
    window = max(3, 2 * int(round(scale)) + 1)  # about one input pixel around each output pixel
    rms = np.sqrt(np.maximum(cv2.blur(detail * detail, (window, window), borderType=cv2.BORDER_REFLECT), 0))
    return InventionMap(rms, float((rms > threshold).mean()), threshold)
