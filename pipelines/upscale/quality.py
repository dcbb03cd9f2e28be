"""Quality figures of one output: LR-consistency PSNR and the report's before/after crops."""

from __future__ import annotations

import numpy as np

from srcore.imageio import to_8bit


def lr_consistency(lr: np.ndarray, sr: np.ndarray, scale: float) -> float | None:
    """PSNR (dB, Y channel) of the output downscaled by MATLAB bicubic against the input: high means faithful.

    Y is taken before downscaling (both are linear, so this equals downscaling RGB first, up to rounding) to
    resize one plane instead of three. Alpha is ignored; 16-bit pixels are compared on the 8-bit scale.
    None for outputs too small to downscale.
    """
    import torch

    from srcore.metrics import to_y_torch
    from srcore.resize import imresize_torch

    if min(sr.shape[:2]) < 4:
        return None
    top = 65535.0 if sr.dtype == np.uint16 else 255.0

    def y_plane(pixels: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(pixels[..., :3] if pixels.shape[2] >= 3 else pixels[..., :1], np.float32))
        return to_y_torch(x.permute(2, 0, 1)[None] / top)

    with torch.inference_mode():
        down = imresize_torch(y_plane(sr), 1.0 / scale)
        ref = y_plane(lr)
        h, w = min(down.shape[2], ref.shape[2]), min(down.shape[3], ref.shape[3])
        mse = float(((down[..., :h, :w] - ref[..., :h, :w]) ** 2).mean())
    return 10 * float(np.log10(255.0**2 / max(mse, 1e-10)))


def preview_pair(lr: np.ndarray, sr: np.ndarray, size: int = 48) -> tuple[bytes, bytes]:
    """PNG crops for the report: the input's busiest size x size region (nearest-upscaled) and the output's."""
    from PIL import Image

    lr8, sr8 = to_8bit(lr), to_8bit(sr)
    s_y, s_x = sr8.shape[0] / lr8.shape[0], sr8.shape[1] / lr8.shape[1]
    size = min(size, lr8.shape[0], lr8.shape[1])
    gray = lr8[..., :3].mean(axis=2) if lr8.shape[2] >= 3 else lr8[..., 0].astype(np.float32)
    best, y0, x0 = -1.0, 0, 0
    step = max(1, size // 2)
    for y in range(0, lr8.shape[0] - size + 1, step):
        for x in range(0, lr8.shape[1] - size + 1, step):
            busy = float(np.var(np.diff(gray[y : y + size, x : x + size], axis=1)))
            if busy > best:
                best, y0, x0 = busy, y, x
    before = lr8[y0 : y0 + size, x0 : x0 + size]
    after = sr8[round(y0 * s_y) : round((y0 + size) * s_y), round(x0 * s_x) : round((x0 + size) * s_x)]
    show = (after.shape[1], after.shape[0])
    return _png(Image.fromarray(_rgb(before)).resize(show, Image.NEAREST)), _png(Image.fromarray(_rgb(after)))


def _rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., :1], 3, axis=2) if a.shape[2] <= 2 else a[..., :3]


def _png(im) -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
