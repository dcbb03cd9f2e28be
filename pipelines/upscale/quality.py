"""The report's before/after crops of one output and its invention map (its LR-consistency is
``srcore.metrics.lr_consistency``)."""

from __future__ import annotations

import numpy as np

from srcore.imageio import to_8bit
from srcore.invention import invention_map
from srcore.modes import luma


def preview_pair(lr: np.ndarray, sr: np.ndarray, size: int = 48) -> tuple[bytes, bytes, bytes | None]:
    """PNG crops for the report: the input's busiest size x size region (nearest-upscaled), the output's (alpha
    kept), and the output crop's invention map as a red RGBA layer (None when the output is not larger)."""
    from PIL import Image

    lr8, sr8 = to_8bit(lr), to_8bit(sr)
    s_y, s_x = sr8.shape[0] / lr8.shape[0], sr8.shape[1] / lr8.shape[1]
    size = min(size, lr8.shape[0], lr8.shape[1])
    gray = (luma(lr8[..., :3]) if lr8.shape[2] >= 3 else lr8[..., :1])[..., 0].astype(np.float32)
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
    before_png = _png(Image.fromarray(_displayable(before)).resize(show, Image.NEAREST))
    overlay = _png(Image.fromarray(invention_map(after, s_y).overlay())) if min(s_y, s_x) > 1 else None
    return before_png, _png(Image.fromarray(_displayable(after))), overlay


def _displayable(a: np.ndarray) -> np.ndarray:
    """RGB, or RGBA where the image has alpha (the report shows it on a checkerboard)."""
    if a.shape[2] <= 2:
        gray = np.repeat(a[..., :1], 3, axis=2)
        return np.concatenate([gray, a[..., 1:2]], axis=2) if a.shape[2] == 2 else gray
    return a


def _png(im) -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
