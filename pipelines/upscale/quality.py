"""Quality figures of one output: LR-consistency PSNR and the report's before/after crops."""

from __future__ import annotations

import numpy as np

from srcore.imageio import to_8bit

LR_CHECK_PIXELS = 1 << 21  # input pixels checked at most: beyond them, a grid of crops stands for the image
_CROP, _MARGIN = 256, 4  # crop side and context (input pixels; the bicubic kernel reaches 2 of them)


def lr_consistency(lr: np.ndarray, sr: np.ndarray, scale: float, max_pixels: int = LR_CHECK_PIXELS) -> float | None:
    """PSNR (dB, Y channel) of the output downscaled by MATLAB bicubic against the input: high means faithful.

    Y is taken before downscaling (both are linear, so this equals downscaling RGB first, up to rounding) to
    resize one plane instead of three. Alpha is ignored; 16-bit pixels are compared on the 8-bit scale.
    None for outputs too small to downscale.

    Memory is bounded: an input over ``max_pixels`` (integer scales) is checked on an even grid of 256-pixel
    crops covering about ``max_pixels`` of it, each downscaled with 4 pixels of context and compared inside
    it, so the check needs about 40 bytes per output pixel of one crop (some 45 MB at x4), not of the image.
    """
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
    import torch

    from srcore.metrics import to_y_torch
    from srcore.resize import imresize_torch

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
