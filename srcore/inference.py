"""The inference engine: ``Upscaler`` runs a model over images of any size in overlapping, feathered tiles.

Tiles are cut with overlap, batched through the network on the device, and blended on the host with
separable linear ramps, so device memory grows with the tile, not with the image, and no seam shows.
Output rows are finished and converted to the output dtype as soon as no later tile touches them, so
host memory holds one band of float accumulators, not a float copy of the whole output.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

Precision = str  # "auto" | "fp32" | "fp16" | "bf16"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_precision(precision: Precision, device: torch.device) -> torch.dtype:
    """auto: bf16 (or fp16 on GPUs without bf16) on CUDA, fp32 elsewhere. fp16 on CPU falls back to fp32:
    CPU half-precision convolutions are slow or missing, the failure Real-ESRGAN users hit."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if precision not in DTYPES:
        raise ValueError(f"precision must be auto, fp32, fp16 or bf16, got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        warnings.warn("fp16 is not supported on CPU; using fp32", stacklevel=3)
        return torch.float32
    return DTYPES[precision]


def tile_starts(length: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Start offsets of tiles covering [0, length): evenly spread, consecutive overlaps >= ``overlap``,
    starts on multiples of ``multiple`` (length and tile must be multiples of it)."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    starts = [int(round(k * (length - tile) / (n - 1))) // multiple * multiple for k in range(n)]
    starts[-1] = length - tile
    return starts


def tile_weights(starts: list[int], tile: int, scale: int, feather: int) -> list[np.ndarray]:
    """Per-tile 1-D output weights. Between two neighbours the seam sits mid-overlap: each tile weighs 1 up to
    ``feather/2`` before it, ramps linearly to 0 by ``feather/2`` after it, and its outer context weighs 0.

    So every pixel that counts had at least (overlap - feather) / 2 input pixels of context, and the ramps
    of two neighbours add up to one.
    """
    n = len(starts)
    out = [np.ones(tile * scale, np.float32) for _ in range(n)]
    ramp_len = max(1, feather * scale)
    up = (np.arange(ramp_len, dtype=np.float32) + 0.5) / ramp_len
    for k in range(n - 1):
        seam = (starts[k + 1] + starts[k] + tile) * scale // 2  # output position, mid-overlap
        lo = seam - ramp_len // 2
        # tile k: ones, ramp down, zeros; tile k + 1: zeros, ramp up, ones (in its own coordinates)
        a, b = lo - starts[k] * scale, lo - starts[k + 1] * scale
        out[k][a : a + ramp_len] = np.minimum(out[k][a : a + ramp_len], 1 - up)
        out[k][a + ramp_len :] = 0
        out[k + 1][:b] = 0
        out[k + 1][b : b + ramp_len] = np.minimum(out[k + 1][b : b + ramp_len], up)
    return out


def fit_tile(length: int, tile: int | None, overlap: int, multiple: int) -> int:
    """The smallest tile (at most ``tile``) that covers ``length`` with as few tiles as ``tile`` would need,
    so the overlap stays near ``overlap`` instead of growing (and costing compute) when tiles are spread."""
    if tile is None or length <= tile:
        return length
    n = math.ceil((length - overlap) / (tile - overlap))
    return min(tile, _round_up(math.ceil((length + (n - 1) * overlap) / n), multiple))


@dataclass(frozen=True)
class TileGrid:
    """How one (padded) image is cut: tile starts per axis, tile size, per-tile weights and their sums."""

    ys: list[int]
    xs: list[int]
    tile_h: int
    tile_w: int
    wy: list[np.ndarray]
    wx: list[np.ndarray]
    norm_y: np.ndarray  # sum of the row weights over tiles, per output row
    norm_x: np.ndarray

    @classmethod
    def plan(cls, h: int, w: int, tile: int | None, overlap: int, scale: int, multiple: int,
             feather: int) -> TileGrid:
        tile_h, tile_w = fit_tile(h, tile, overlap, multiple), fit_tile(w, tile, overlap, multiple)
        ys = tile_starts(h, tile_h, overlap, multiple)
        xs = tile_starts(w, tile_w, overlap, multiple)
        wy, wx = tile_weights(ys, tile_h, scale, feather), tile_weights(xs, tile_w, scale, feather)
        norm_y, norm_x = np.zeros(h * scale, np.float32), np.zeros(w * scale, np.float32)
        for y, wgt in zip(ys, wy, strict=True):
            norm_y[y * scale : (y + tile_h) * scale] += wgt
        for x, wgt in zip(xs, wx, strict=True):
            norm_x[x * scale : (x + tile_w) * scale] += wgt
        return cls(ys, xs, tile_h, tile_w, wy, wx, norm_y, norm_x)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class Upscaler:
    """Upscale images with a model, tiled, batched, in mixed precision. Stateless per call and thread-safe.

    Args:
        model: an srcore network (has ``.descriptor``); copied, so the caller's model is untouched.
        device: ``"cuda"``, ``"cpu"``, ... (default: CUDA when available).
        precision: ``"auto"`` (bf16/fp16 on CUDA, fp32 on CPU), ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        tile: input tile size in pixels; ``"auto"``: max(512, 3 x overlap); ``None``: whole images (memory then
            grows with the image).
        tile_overlap: input pixels shared by neighbouring tiles (default: the model descriptor's
            ``tile_overlap``, enough context for outputs within 1/255 of untiled ones). Each tile's outer
            half of it is context only; a ``feather`` band (overlap / 8) at the middle is blended.
        batch_size: tiles (or whole small images) per forward pass.
        compile: wrap the model in ``torch.compile``.
    """

    def __init__(self, model: nn.Module, device: str | torch.device | None = None, precision: Precision = "auto",
                 tile: int | str | None = "auto", tile_overlap: int | None = None, batch_size: int = 4,
                 compile: bool = False):
        self.descriptor = model.descriptor
        if self.descriptor.kind != "generator":
            raise ValueError(f"{type(model).__name__} is a {self.descriptor.kind}, not an upscaling model")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = resolve_precision(precision, self.device)
        m = self.descriptor.size_multiple
        tile_overlap = self.descriptor.tile_overlap if tile_overlap is None else tile_overlap
        if tile_overlap < 0 or batch_size < 1:
            raise ValueError("tile_overlap must be >= 0 and batch_size >= 1")
        if tile == "auto":
            tile = max(512, 3 * tile_overlap)
        if tile is not None:
            tile = _round_up(int(tile), m)
            if tile <= tile_overlap + m:
                raise ValueError(f"tile ({tile}) must be larger than tile_overlap ({tile_overlap})")
        self.tile, self.overlap, self.batch_size = tile, tile_overlap, batch_size
        self.feather = max(1, tile_overlap // 8)
        model = copy.deepcopy(model).eval().requires_grad_(False).to(self.device, self.dtype)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.model = torch.compile(model) if compile else model

    @property
    def scale(self) -> int:
        return self.descriptor.scale

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) float32 host tensor in [0, 1] -> (N, C, h*s, w*s) float32 host tensor in [0, 1]."""
        x = batch.to(self.device, self.dtype, non_blocking=True)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.model(x).float().clamp_(0, 1).cpu()

    # ----------------------------------------------------------------- pixels of any mode

    def upscale_pixels(self, pixels: np.ndarray, alpha: str = "bicubic", outscale: float | None = None) -> np.ndarray:
        """(H, W, C) uint8/uint16 with C = 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA -> same C and dtype, upscaled.

        Gray goes through the RGB model and comes back gray (BT.601 luma). Alpha is upscaled by ``"bicubic"``
        or by the ``"network"``. ``outscale``: final size = input size x outscale (the network's scale, then
        a Lanczos or area resize), e.g. 3.5 with a x4 model.
        """
        return self.upscale_many([pixels], alpha, outscale)[0]

    def upscale_many(self, images: list[np.ndarray], alpha: str = "bicubic",
                     outscale: float | None = None) -> list[np.ndarray]:
        """:meth:`upscale_pixels` for several images at once: small images of equal size share forward passes."""
        if alpha not in ("bicubic", "network"):
            raise ValueError(f"alpha must be 'bicubic' or 'network', got {alpha!r}")
        if self.descriptor.in_channels != 3:
            raise ValueError("upscale_pixels needs an RGB model")
        jobs: list[np.ndarray] = []  # RGB arrays for the network: each image's colour, then maybe its alpha
        for pixels in images:
            c = pixels.shape[2]
            colour = pixels[..., : 3 if c >= 3 else 1]
            jobs.append(np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour)
            if c in (2, 4) and alpha == "network":
                jobs.append(np.repeat(pixels[..., c - 1 :], 3, axis=2))
        results = iter(self.upscale_arrays(jobs))
        return [self._finish(pixels, next(results), results, alpha, outscale) for pixels in images]

    def _finish(self, pixels: np.ndarray, out: np.ndarray, results: Iterator[np.ndarray], alpha: str,
                outscale: float | None) -> np.ndarray:
        """Back to the input's mode: gray from the RGB output, the alpha plane re-attached, the final resize."""
        c = pixels.shape[2]
        if c <= 2:
            out = _luma(out)
        if c in (2, 4):
            if alpha == "network":
                up_alpha = next(results).mean(axis=2, dtype=np.float32)
                up_alpha = np.clip(np.rint(up_alpha), 0, _max_value(pixels.dtype)).astype(pixels.dtype)
            else:
                h, w = out.shape[:2]
                up_alpha = cv2.resize(np.ascontiguousarray(pixels[..., c - 1]), (w, h), interpolation=cv2.INTER_CUBIC)
            out = np.concatenate([out, up_alpha[..., None]], axis=2)
        if outscale is not None and outscale != self.scale:
            out = resize_to(out, (round(pixels.shape[1] * outscale), round(pixels.shape[0] * outscale)))
        return out

    # ----------------------------------------------------------------- arrays

    def upscale_array(self, image: np.ndarray) -> np.ndarray:
        """(H, W, C) uint8, uint16 or float (in [0, 1]) -> (H*s, W*s, C) of the same dtype.

        C must equal the model's input channels; callers (``upscale_image``) convert modes first.
        """
        return self.upscale_arrays([image])[0]

    def upscale_arrays(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Upscale several images; small ones of equal size share forward passes."""
        results: list[np.ndarray | None] = [None] * len(images)
        whole: dict[tuple, list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            self._check(image)
            h, w = image.shape[:2]
            if self.tile is None or (h <= self.tile and w <= self.tile):
                whole[image.shape + (image.dtype.str,)].append(i)
            else:
                results[i] = self._upscale_tiled(image)
        for indices in whole.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                for i, out in zip(chunk, self._upscale_whole([images[i] for i in chunk]), strict=True):
                    results[i] = out
        return results  # type: ignore[return-value]

    def _check(self, image: np.ndarray) -> None:
        if image.ndim != 3 or image.shape[2] != self.descriptor.in_channels:
            raise ValueError(f"expected (H, W, {self.descriptor.in_channels}) pixels, got shape {image.shape}")
        if image.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
            raise ValueError(f"unsupported pixel dtype {image.dtype}")

    def _padded(self, image: np.ndarray) -> np.ndarray:
        """Reflect-pad (H, W, C) at the bottom and right to the model's size multiple (no copy when aligned)."""
        m = self.descriptor.size_multiple
        h, w = image.shape[:2]
        ph, pw = _round_up(h, m) - h, _round_up(w, m) - w
        if not ph and not pw:
            return image
        mode = "reflect" if ph < h and pw < w else "edge"
        return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode=mode)

    @staticmethod
    def _tensor(pixels: np.ndarray) -> torch.Tensor:
        """(h, w, C) pixels of any supported dtype -> (C, h, w) float32 in [0, 1]."""
        x = torch.from_numpy(np.array(pixels, dtype=np.float32, order="C")).permute(2, 0, 1)
        top = _max_value(pixels.dtype)
        return x / top if top != 1.0 else x

    def _upscale_whole(self, images: list[np.ndarray]) -> list[np.ndarray]:
        h, w = images[0].shape[:2]
        s = self.scale
        batch = torch.stack([self._tensor(self._padded(im)) for im in images])
        out = self.forward(batch)[..., : h * s, : w * s]
        return [_from_float(o.permute(1, 2, 0).numpy(), im.dtype) for o, im in zip(out, images, strict=True)]

    def _upscale_tiled(self, image: np.ndarray) -> np.ndarray:
        h, w, c = image.shape
        s = self.scale
        out = np.empty((h * s, w * s, c), image.dtype)
        for row0, band in self.bands(image):
            rows = min(band.shape[0], h * s - row0)
            _store(band[:rows, : w * s], out[row0 : row0 + rows])
        return out

    def bands(self, image: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Finished output bands (first row, (rows, W'*s, C) float32 in [0, 1]) of a tiled upscale, top to bottom.

        Each band is a view into a reused buffer: consume it before asking for the next.
        """
        src = self._padded(image)
        h, w, c = src.shape
        s = self.scale
        grid = TileGrid.plan(h, w, self.tile, self.overlap, s, self.descriptor.size_multiple, self.feather)
        th, tw = grid.tile_h * s, grid.tile_w * s
        # the band buffer starts at the current tile row's first output row and is one tile row high
        acc = np.zeros((th, w * s, c), np.float32)
        for r, y in enumerate(grid.ys):
            wy = grid.wy[r][:, None, None]
            for i in range(0, len(grid.xs), self.batch_size):
                xs = grid.xs[i : i + self.batch_size]
                batch = torch.stack([self._tensor(src[y : y + grid.tile_h, x0 : x0 + grid.tile_w]) for x0 in xs])
                outputs = self.forward(batch).permute(0, 2, 3, 1).numpy()
                for k, x0 in enumerate(xs):
                    tile_out = outputs[k]
                    tile_out *= wy
                    tile_out *= grid.wx[i + k][None, :, None]
                    acc[:, x0 * s : x0 * s + tw] += tile_out
            n = (grid.ys[r + 1] - y) * s if r + 1 < len(grid.ys) else th  # rows no later tile reaches
            band = acc[:n]
            band /= grid.norm_y[y * s : y * s + n, None, None]
            band /= grid.norm_x[None, :, None]
            yield y * s, band
            acc[: th - n] = acc[n:].copy()
            acc[th - n :] = 0


def _luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W, 1) BT.601 luma, same dtype."""
    y = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(np.rint(y), 0, _max_value(rgb.dtype)).astype(rgb.dtype)[..., None]


def resize_to(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """High-quality resize of (H, W, C) to (width, height): Lanczos when enlarging, area when shrinking."""
    w, h = size
    if w < 1 or h < 1:
        raise ValueError(f"outscale gives an empty image ({w}x{h})")
    shrink = w < pixels.shape[1]
    out = cv2.resize(pixels, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4)
    return out[..., None] if out.ndim == 2 else out


def _max_value(dtype: np.dtype) -> float:
    return {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(np.dtype(dtype), 1.0)


def _store(band: np.ndarray, target: np.ndarray) -> None:
    """Write float [0, 1] pixels into an integer or float array, in place (``band`` is scratch)."""
    top = _max_value(target.dtype)
    if top != 1.0:
        band *= top
        np.rint(band, out=band)
        np.clip(band, 0, top, out=band)
    target[...] = band


def _from_float(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    out = np.empty(x.shape, dtype)
    _store(np.array(x, dtype=np.float32), out)
    return out


def interpolate_models(model_a: nn.Module, model_b: nn.Module, alpha: float) -> nn.Module:
    """Network interpolation (ESRGAN) / deep network interpolation (Real-ESRGAN DNI):
    weights alpha * A + (1 - alpha) * B of two models of one architecture.

    For example A = a PSNR-oriented model and B = its GAN fine-tune: alpha trades realism for fidelity.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if type(model_a) is not type(model_b) or getattr(model_a, "hparams", None) != getattr(model_b, "hparams", None):
        raise ValueError("network interpolation needs two models of the same architecture and configuration")
    sa, sb = model_a.state_dict(), model_b.state_dict()
    mixed = {k: alpha * v + (1 - alpha) * sb[k] if v.is_floating_point() else v for k, v in sa.items()}
    out = copy.deepcopy(model_a)
    out.load_state_dict(mixed)
    return out
