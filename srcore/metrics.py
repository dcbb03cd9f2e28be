"""PSNR and SSIM exactly as SR papers compute them, in numpy (8-bit images) and batched torch; NIQE (no reference).

Conventions: RGB images are scored on the Y channel of ITU-R BT.601 YCbCr
(Y = 16 + 65.481 R + 128.553 G + 24.966 B, with R, G, B in [0, 1]); a grayscale image on its own
channel; ``crop_border`` (= the scale) pixels removed at each border; SSIM with an 11x11 Gaussian window,
sigma 1.5, K1 = 0.01, K2 = 0.03, over valid positions only, on the [0, 255] range.
numpy takes (H, W) or (H, W, C) arrays with values in [0, 255]; torch takes (N, C, H, W) in [0, 1].
"""

from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path

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


def lr_consistency(lr: np.ndarray, sr: np.ndarray | torch.Tensor, scale: float, max_pixels: int = LR_CHECK_PIXELS,
                   device: torch.device | str | None = None) -> float | None:
    """LR-consistency PSNR (dB, on Y): the output downscaled by the benchmarks' MATLAB bicubic against the input.

    Needs no ground truth: a faithful upscaler reproduces its input when downscaled again; hallucinated or
    shifted content does not. The one implementation for evaluation, training validation and the bucket job
    (:class:`LrCheck` takes the output in bands instead).

    Y is taken before downscaling (both are linear, so this equals downscaling RGB first, up to rounding) to
    resize one plane instead of three. Alpha is ignored; 16-bit pixels are compared on the 8-bit scale.
    None for outputs too small to downscale.

    Memory is bounded: an input over ``max_pixels`` (integer scales) is checked on an even grid of 256-pixel
    crops covering about ``max_pixels`` of it, each downscaled with 4 pixels of context and compared inside
    it, so the check needs about 40 bytes per output pixel of one crop (some 45 MB at x4), not of the image.

    ``device``: where the arithmetic runs (default the CPU); ``sr`` may already be a tensor there, as a GPU
    worker holds its outputs: pixels go there as integers, only two input-sized planes come back.
    """
    check = LrCheck(lr, scale, max_pixels, device)
    check.add(0, sr)
    return check.result()


def lr_consistency_many(lrs: list[np.ndarray], srs: torch.Tensor, scale: float) -> list[float | None]:
    """:func:`lr_consistency` of a group of equal-shaped 8-bit outputs held as one (N, H, W, C) uint8 tensor
    on its device (a GPU worker's batch): one pass and one transfer back for the group. Images the check would
    score on crops (over :data:`LR_CHECK_PIXELS`) are scored one by one."""
    h, w = lrs[0].shape[:2]
    if h * w > LR_CHECK_PIXELS and scale == int(scale) and min(h, w) >= _CROP:
        return [lr_consistency(lr, sr, scale, device=srs.device) for lr, sr in zip(lrs, srs, strict=True)]
    if min(srs.shape[1:3]) < 4:
        return [None] * len(lrs)
    lr = torch.from_numpy(np.stack([x if x.ndim == 3 else x[..., None] for x in lrs]))
    with torch.inference_mode():
        down = imresize_torch(_y_planes(srs, 255.0), 1.0 / scale)
        ref = _y_planes(lr.to(srs.device, non_blocking=True), 255.0)
        rows, cols = min(down.shape[2], ref.shape[2]), min(down.shape[3], ref.shape[3])
        mse = ((down[..., :rows, :cols] - ref[..., :rows, :cols]) ** 2).mean(dim=(1, 2, 3)).double().cpu().numpy()
    return [10 * float(np.log10(255.0**2 / max(m, 1e-10))) for m in mse]


def _y_planes(pixels: torch.Tensor, top: float) -> torch.Tensor:
    """(..., H, W, C) integer pixels on a device -> (N, 1, H, W) Y (:func:`to_y_torch`'s), on the 8-bit scale."""
    x = (pixels[..., :3] if pixels.shape[-1] >= 3 else pixels[..., :1]).float()
    weights = torch.tensor(Y_WEIGHTS if x.shape[-1] == 3 else (255.0,), device=x.device) / top
    y = x @ weights + (16.0 if x.shape[-1] == 3 else 0.0)
    return y.reshape(-1, 1, *y.shape[-2:])


class LrCheck:
    """:func:`lr_consistency` of an output that arrives as bands of rows, top to bottom (:meth:`add`).

    Holds only the output pixels of the crops of one grid row being gathered (of the whole output when the
    input is at most ``max_pixels``, or the scale is not an integer: such outputs are small or held anyway).
    """

    def __init__(self, lr: np.ndarray, scale: float, max_pixels: int = LR_CHECK_PIXELS,
                 device: torch.device | str | None = None):
        self.lr = lr[..., None] if lr.ndim == 2 else lr
        self.scale = scale
        self.device = torch.device(device or "cpu")
        h, w = self.lr.shape[:2]
        self.whole = h * w <= max_pixels or scale != int(scale) or min(h, w) < _CROP
        self._bands: list[np.ndarray] = []
        self._squared, self._count = 0.0, 0
        self._rows: list[dict] = []  # crop rows of the grid still being gathered
        if not self.whole:
            per_axis = max(1, int((max_pixels / _CROP**2) ** 0.5))
            xs = np.linspace(0, w - _CROP, per_axis).astype(int)
            for y in np.linspace(0, h - _CROP, per_axis).astype(int):
                y0, y1 = max(0, y - _MARGIN), min(h, y + _CROP + _MARGIN)
                crops = []
                for x in xs:
                    x0, x1 = max(0, x - _MARGIN), min(w, x + _CROP + _MARGIN)
                    crops.append((x, x0, x1, None))
                self._rows.append({"y": y, "y0": y0, "y1": y1, "crops": crops, "filled": 0})

    def add(self, row0: int, band: np.ndarray) -> None:
        """Output rows ``row0 .. row0 + len(band)`` (each row exactly once, in order)."""
        band = band[..., None] if band.ndim == 2 else band
        if self.whole:
            self._bands.append(band)
            return
        if isinstance(band, torch.Tensor):  # crops are gathered on the host, a grid row at a time
            band = band.cpu().numpy()
        s, n = int(self.scale), band.shape[0]
        for grid_row in list(self._rows):
            top, bottom = grid_row["y0"] * s, grid_row["y1"] * s
            a, b = max(top, row0), min(bottom, row0 + n)
            if a >= b:
                continue
            crops = grid_row["crops"]
            for i, (x, x0, x1, buf) in enumerate(crops):
                if buf is None:
                    buf = np.empty((bottom - top, (x1 - x0) * s, band.shape[2]), band.dtype)
                    crops[i] = (x, x0, x1, buf)
                buf[a - top : b - top] = band[a - row0 : b - row0, x0 * s : x1 * s]
            grid_row["filled"] += b - a
            if grid_row["filled"] == bottom - top:
                self._finish(grid_row)
                self._rows.remove(grid_row)

    def _finish(self, grid_row: dict) -> None:
        y, y0, y1 = grid_row["y"], grid_row["y0"], grid_row["y1"]
        for x, x0, x1, buf in grid_row["crops"]:
            down, ref = _y_pair(self.lr[y0:y1, x0:x1], buf, int(self.scale), self.device)
            inside = (..., slice(y - y0, y - y0 + _CROP), slice(x - x0, x - x0 + _CROP))
            self._squared += float(((down[inside] - ref[inside]) ** 2).sum())
            self._count += _CROP * _CROP

    def result(self) -> float | None:
        if self.whole:
            sr = self._bands[0] if len(self._bands) == 1 else np.concatenate(self._bands)
            if min(sr.shape[:2]) < 4:
                return None
            return _psnr(*_y_pair(self.lr, sr, self.scale, self.device))
        if self._rows or not self._count:
            raise ValueError("the output's rows have not all been added")
        return 10 * float(np.log10(255.0**2 / max(self._squared / self._count, 1e-10)))


def _y_pair(lr: np.ndarray, sr: np.ndarray | torch.Tensor, scale: float, device: torch.device):
    """(the output's Y downscaled by 1/scale, the input's Y), on the 8-bit scale, cropped to a common size;
    computed on ``device``."""
    top = 65535.0 if sr.dtype in (np.uint16, torch.int32) else 255.0

    def y_plane(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(H, W, C) pixels -> (1, 1, H, W) Y, as one product over the channels, on the device."""
        if isinstance(pixels, np.ndarray):  # integers travel; uint16 as int32 (torch's uint16 has few kernels)
            wide = pixels.dtype == np.uint16
            pixels = torch.from_numpy(pixels.astype(np.int32) if wide or not pixels.flags.writeable
                                      else np.ascontiguousarray(pixels))
        return _y_planes(pixels.to(device, non_blocking=True), top)

    with torch.inference_mode():
        down, ref = imresize_torch(y_plane(sr), 1.0 / scale), y_plane(lr)
        h, w = min(down.shape[2], ref.shape[2]), min(down.shape[3], ref.shape[3])
        return down[..., :h, :w].cpu().numpy(), ref[..., :h, :w].cpu().numpy()


def _psnr(down: np.ndarray, ref: np.ndarray) -> float:
    mse = float(((down - ref) ** 2).mean())
    return 10 * float(np.log10(255.0**2 / max(mse, 1e-10)))


# --------------------------------------------------------------------------- NIQE (no reference)

NIQE_BLOCK = 96  # the NIQE release's block size, no overlap


@functools.lru_cache(maxsize=1)
def niqe_pristine_model() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mu (1, 36), cov (36, 36), 7x7 Gaussian window) of the NIQE authors' pristine model (see data/NOTICE.md)."""
    params = np.load(Path(__file__).parent / "data" / "niqe_pris_params.npz")
    return params["mu_pris_param"], params["cov_pris_param"], params["gaussian_window"]


@functools.lru_cache(maxsize=1)
def _aggd_table() -> tuple[np.ndarray, np.ndarray]:
    shapes = np.arange(0.2, 10.001, 0.001)
    ratio = np.array([math.gamma(2 / a) ** 2 / (math.gamma(1 / a) * math.gamma(3 / a)) for a in shapes])
    return shapes, ratio


def _aggd_params(block: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit (shape alpha, left and right scales) by moment matching."""
    block = block.ravel()
    shapes, ratio = _aggd_table()
    left_std = np.sqrt(np.mean(block[block < 0] ** 2))
    right_std = np.sqrt(np.mean(block[block > 0] ** 2))
    gamma_hat = left_std / right_std
    r_hat = np.mean(np.abs(block)) ** 2 / np.mean(block**2)
    r_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    alpha = shapes[np.argmin((ratio - r_norm) ** 2)]
    spread = np.sqrt(math.gamma(1 / alpha) / math.gamma(3 / alpha))
    return alpha, left_std * spread, right_std * spread


def _niqe_features(block: np.ndarray) -> list[float]:
    """18 features of one normalised block: its AGGD fit, and that of its products with 4 neighbours."""
    alpha, left, right = _aggd_params(block)
    feats = [alpha, (left + right) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        alpha, left, right = _aggd_params(block * np.roll(block, shift, axis=(0, 1)))
        feats += [alpha, (right - left) * math.gamma(2 / alpha) / math.gamma(1 / alpha), left, right]
    return feats


def _smooth(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.convolve(image, window, mode='nearest')`` for a symmetric odd window: sums in float64,
    result in the input's dtype, as scipy gives it."""
    r = window.shape[0] // 2
    padded = np.pad(image.astype(np.float64), r, mode="edge")
    h, w = image.shape
    out = np.zeros((h, w))
    for dy in range(window.shape[0]):
        for dx in range(window.shape[1]):
            out += window[dy, dx] * padded[dy:dy + h, dx:dx + w]
    return out.astype(image.dtype)


def niqe_y(y: np.ndarray) -> float:
    """NIQE of a Y (or gray) plane in [0, 255] of at least two 96x96 blocks; lower is more natural.

    Arithmetic in float32 where BasicSR's is (its reference values depend on it: the local variance
    E[x^2] - E[x]^2 cancels in float32 on flat areas).
    """
    mu_p, cov_p, window = niqe_pristine_model()
    h, w = y.shape
    nh, nw = h // NIQE_BLOCK, w // NIQE_BLOCK
    if nh * nw < 2:  # one block has no covariance (BasicSR fails there with "SVD did not converge")
        raise ValueError(f"NIQE needs at least two {NIQE_BLOCK}x{NIQE_BLOCK} blocks (e.g. {NIQE_BLOCK}x"
                         f"{2 * NIQE_BLOCK} pixels), got {w}x{h}")
    img = np.asarray(y, dtype=np.float32)[: nh * NIQE_BLOCK, : nw * NIQE_BLOCK]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # a flat block has no AGGD fit: its features are NaN and left out, as in BasicSR and the MATLAB release
        warnings.simplefilter("ignore", RuntimeWarning)
        return _niqe_of(img, mu_p, cov_p, window, nh, nw)


def _niqe_of(img: np.ndarray, mu_p, cov_p, window, nh: int, nw: int) -> float:
    per_scale = []
    for scale in (1, 2):
        mu = _smooth(img, window)
        sigma = np.sqrt(np.abs(_smooth(np.square(img), window) - np.square(mu)))
        normalised = (img - mu) / (sigma + 1)
        size = NIQE_BLOCK // scale
        per_scale.append(np.array([_niqe_features(normalised[i * size:(i + 1) * size, j * size:(j + 1) * size])
                                   for j in range(nw) for i in range(nh)]))
        if scale == 1:
            img = imresize_torch(torch.from_numpy(img / 255.0), 0.5).numpy() * 255.0
    feats = np.concatenate(per_scale, axis=1)
    mu_d = np.nanmean(feats, axis=0)
    cov_d = np.cov(feats[~np.isnan(feats).any(axis=1)], rowvar=False)
    diff = mu_p - mu_d
    return float(np.sqrt(np.squeeze(diff @ np.linalg.pinv((cov_p + cov_d) / 2) @ diff.T)))


def niqe(image: np.ndarray, crop_border: int = 0) -> float:
    """NIQE (Mittal et al. 2013) as BasicSR's ``calculate_niqe(..., convert_to='y')`` computes it.

    ``image``: (H, W) or (H, W, 3) RGB, values in [0, 255]. Scored on Y (rounded to integers, as the MATLAB
    release's input is), ``crop_border`` pixels removed at each border, 96x96 blocks, two scales.
    """
    return niqe_y(np.round(_crop(to_y_np(image).astype(np.float32), crop_border)))
