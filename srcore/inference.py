"""The inference engine: ``Upscaler`` runs a model over images of any size in overlapping, feathered tiles.

Everything between integer pixels in and integer pixels out happens on the model's device: a band of input
rows is uploaded as integers (pinned, non-blocking on CUDA), normalised, cut into tiles, run in the model's
precision and channels_last, blended with separable linear ramps, and quantised to the output dtype; only
finished integer rows come back. So device and host memory grow with the tile row, not with the image, and
on a GPU the host never touches a float. On CUDA the download of one band overlaps the next band's compute.
"""

from __future__ import annotations

import copy
import math
import threading
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import gpu_codecs as gpu_codecs_module
from .archs.descriptor import ModelDescriptor
from .compiled import GraphedNetwork, compiled, resolve_compile
from .modes import assemble, band_assembler, check_alpha, max_value, network_inputs

Precision = str  # "auto" | "fp32" | "fp16" | "bf16"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 is 1.6-1.8x fp32 (docs/engine.md)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # older torch: read the flags
        try:
            flags = open("/proc/cpuinfo").read()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: Precision, device: torch.device,
                      descriptor: ModelDescriptor | None = None) -> torch.dtype:
    """auto: fp16 on CUDA (bf16 for models that overflow in fp16, such as SwinIR), bf16 on CPUs with native
    bf16, fp32 on other CPUs; never a half type the model's descriptor rules out. fp16 on CPU falls back to
    fp32: CPU half-precision convolutions are slow or missing, the failure Real-ESRGAN users hit.

    fp16 first on CUDA because bf16's 8-bit mantissa compounds through deep networks: on an H200, official
    x4plus at bf16 was up to 55 levels off fp32 (7% of pixels over one level), at fp16 up to 8 (0.05%), and
    fp16 was as fast or faster (bench/results/2026-11-30-nvidia-h200*.md)."""
    half_ok = descriptor is None or descriptor.supports_half
    bf16_ok = descriptor is None or descriptor.supports_bfloat16
    if precision == "auto":
        if device.type == "cuda":
            if half_ok:
                return torch.float16
            return torch.bfloat16 if bf16_ok and torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if device.type == "cpu" and bf16_ok and cpu_has_native_bf16() else torch.float32
    if precision not in DTYPES:
        raise ValueError(f"precision must be auto, fp32, fp16 or bf16, got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        warnings.warn("fp16 is not supported on CPU; using fp32", stacklevel=3)
        return torch.float32
    if (precision == "fp16" and not half_ok) or (precision == "bf16" and not bf16_ok):
        arch = descriptor.arch if descriptor else "this model"
        warnings.warn(f"{arch} does not support {precision}; using fp32", stacklevel=3)
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


def _resolve_runtime(runtime: str, device: torch.device) -> str:
    from .openvino_runtime import openvino_available

    if runtime not in ("auto", "torch", "openvino"):
        raise ValueError(f"runtime must be auto, torch or openvino, got {runtime!r}")
    if runtime == "openvino":
        if device.type != "cpu":
            raise ValueError(f"the OpenVINO runtime runs on CPUs, not {device.type}")
        if not openvino_available():
            raise ValueError("runtime 'openvino' needs the openvino package: pip install 'srcore[openvino]'")
    if runtime == "auto":
        return "openvino" if device.type == "cpu" and openvino_available() else "torch"
    return runtime


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def pad_index(padded: int, length: int) -> np.ndarray | None:
    """Source indices of an axis padded at its end from ``length`` to ``padded``: reflected (as np.pad's
    "reflect"), or the edge repeated where the axis is too short to reflect; None when nothing is padded."""
    if padded == length:
        return None
    idx = np.arange(padded)
    idx = np.where(idx < length, idx, 2 * (length - 1) - idx)
    return np.clip(idx, 0, length - 1)


class Upscaler:
    """Upscale images with a model: tiled, on the model's device end to end, in mixed precision. Thread-safe.

    Two levels, named by what they take: :meth:`upscale_image` / :meth:`upscale_images` / :meth:`image_bands`
    take images in any mode (gray, alpha, RGB; :mod:`srcore.modes`), :meth:`upscale_network_input` /
    :meth:`upscale_network_inputs` / :meth:`network_input_bands` take exactly the network's channels.

    Args:
        model: an srcore network (has ``.descriptor``); copied, so the caller's model is untouched.
        device: ``"cuda"``, ``"cpu"``, ... (default: CUDA when available).
        precision: ``"auto"`` (fp16 on CUDA, bf16 where a model rules fp16 out and on CPUs with native bf16,
            else fp32; see :func:`resolve_precision`), ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        tile: input tile size in pixels; ``"auto"``: max(512, 3 x overlap); ``None``: whole images (memory then
            grows with the image).
        tile_overlap: input pixels shared by neighbouring tiles (default: the model descriptor's
            ``tile_overlap``, enough context for outputs within 1/255 of untiled ones). Each tile's outer
            half of it is context only; a ``feather`` band (overlap / 8) at the middle is blended.
        batch_size: tiles (or whole small images) per forward pass; ``"auto"``: 1 on CPU (batching costs there:
            2.1 vs 4.3 MP/s for 4 small images on 2 cores), on CUDA as many as half the free memory holds.
        compile: ``"auto"`` (CUDA: a captured CUDA graph for each recurring shape, kept where it measures
            faster than eager), ``"graphs"`` (always, for recurring shapes), ``"inductor"`` (``torch.compile``
            first; on CPUs too), ``"off"``; see :mod:`srcore.compiled`. True and False mean inductor and off.
        gpu_codecs: on CUDA, JPEG inputs decode and JPEG outputs encode on the GPU (:attr:`codec_device`).
        runtime: ``"auto"``: OpenVINO on CPUs where the ``openvino`` extra is installed (1.2-2x eager
            PyTorch, see docs/engine.md), else PyTorch; ``"torch"``;
            ``"openvino"`` (CPU only). A model OpenVINO cannot convert runs on PyTorch, with a warning.

    On CUDA an out-of-memory error retries the image with half the batch, then half the tile, instead of
    failing it (with a warning saying so). The smaller batch or tile stays for later calls: the one state an
    Upscaler learns, so that an out-of-memory error is paid once, not once per image.
    """

    def __init__(self, model: nn.Module, device: str | torch.device | None = None, precision: Precision = "auto",
                 tile: int | str | None = "auto", tile_overlap: int | None = None, batch_size: int | str = "auto",
                 compile: bool | str = "auto", runtime: str = "auto", gpu_codecs: bool = True):
        self.descriptor = model.descriptor
        if self.descriptor.kind != "generator":
            raise ValueError(f"{type(model).__name__} is a {self.descriptor.kind}, not an upscaling model")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = resolve_precision(precision, self.device, self.descriptor)
        m = self.descriptor.size_multiple
        tile_overlap = self.descriptor.tile_overlap if tile_overlap is None else tile_overlap
        if batch_size != "auto" and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be 'auto' or an integer >= 1, got {batch_size!r}")
        if tile_overlap < 0:
            raise ValueError(f"tile_overlap must be >= 0, got {tile_overlap}")
        if tile == "auto":
            tile = max(512, 3 * tile_overlap)
        if tile is not None:
            tile = _round_up(int(tile), m)
            if tile <= tile_overlap + m:
                raise ValueError(f"tile ({tile}) must be larger than tile_overlap ({tile_overlap}), the context "
                                 f"{self.descriptor.arch} needs for seamless tiles: use tile >= "
                                 f"{_round_up(3 * tile_overlap, m)}, or lower tile_overlap (--tile-overlap; outputs "
                                 "then differ from untiled ones near tile edges)")
            waste = (tile / (tile - tile_overlap)) ** 2
            if waste > 2:  # each tile computes its overlap again: 64 px tiles with 32 overlap do 4x the work
                warnings.warn(f"tile {tile} with overlap {tile_overlap} computes every output pixel about "
                              f"{waste:.1f} times; tile {_round_up(max(512, 3 * tile_overlap), m)} or more is "
                              "much faster", stacklevel=2)
        self.tile, self.overlap = tile, tile_overlap
        self.batch_size: int | str = batch_size
        self.feather = max(1, tile_overlap // 8)
        self._auto_batch: dict[tuple, int] = {}
        self.runtime = _resolve_runtime(runtime, self.device)
        self._threads = torch.get_num_threads()
        self._auto = precision == "auto"
        self.compile = resolve_compile(compile, self.device, self.runtime)
        # where JPEGs are decoded and encoded (srcore.gpu_codecs), None: on the CPU
        self.codec_device = self.device if gpu_codecs and self.device.type == "cuda" else None
        self.jpeg_pixels = gpu_codecs_module.jpeg_decoder(self.device) if self.codec_device else None
        self._lock = threading.Lock()
        # "auto" keeps an fp32 source: 16-bit and float pixels run in fp32 (bf16 would keep 8 of their bits)
        keep = self._auto and self.dtype != torch.float32
        self._source = copy.deepcopy(model).cpu() if keep else None
        self._models: dict[torch.dtype, nn.Module] = {self.dtype: self._prepared(model, self.dtype)}

    def _prepared(self, model: nn.Module, dtype: torch.dtype):
        if self.runtime == "openvino":
            from .openvino_runtime import OpenVINONetwork

            try:
                return OpenVINONetwork(model, dtype, self._threads)
            except Exception as exc:  # an operation OpenVINO's converter lacks: PyTorch runs it
                warnings.warn(f"OpenVINO cannot run {self.descriptor.arch} ({type(exc).__name__}: "
                              f"{str(exc)[:200]}); using PyTorch", stacklevel=3)
                self.runtime = "torch"
        model = copy.deepcopy(model).eval().requires_grad_(False).to(self.device, dtype)
        model = model.to(memory_format=torch.channels_last)  # +5% (CPU fp32) to 1.6x (CPU bf16), and on CUDA
        return compiled(model, self.compile, self.device)

    @property
    def model(self):
        """The network as it runs 8-bit pixels (device, precision, channels_last; or OpenVINO's)."""
        return self._models[self.dtype]

    def compute_dtype(self, pixel_dtype: np.dtype) -> torch.dtype:
        """The precision pixels of ``pixel_dtype`` run in: the resolved one, except that ``"auto"`` runs
        16-bit and float pixels in fp32, whose extra bits bf16 and fp16 would lose."""
        if self._auto and np.dtype(pixel_dtype) != np.uint8:
            return torch.float32
        return self.dtype

    def _model_for(self, dtype: torch.dtype) -> nn.Module:
        if dtype not in self._models:
            with self._lock:
                if dtype not in self._models:
                    self._models[dtype] = self._prepared(self._source, dtype)
        return self._models[dtype]

    @property
    def scale(self) -> int:
        return self.descriptor.scale

    @property
    def precision(self) -> str:
        return {v: k for k, v in DTYPES.items()}[self.dtype]

    def _network(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """(N, C, h, w) on the device -> (N, C, h*s, w*s) on the device, by the network of precision ``dtype``
        (default: x's). PyTorch networks return x's dtype; OpenVINO's take and return float32."""
        if self.runtime == "torch":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():  # not inference_mode: its tensors refuse the in-place blending that follows
            return self._model_for(dtype or x.dtype)(x)

    # ----------------------------------------------------------------- pixels of any mode

    def upscale_image(self, pixels: np.ndarray, alpha: str = "bicubic", outscale: float | None = None) -> np.ndarray:
        """(H, W, C) uint8/uint16 with C = 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA -> same C and dtype, upscaled.

        Modes are :mod:`srcore.modes`'s: gray goes through an RGB model and comes back gray (BT.601 luma), a
        Y-channel model sees the luma and the chroma is upscaled by bicubic, alpha is upscaled by
        ``"bicubic"`` or by the ``"network"``. ``outscale``: final size = input size x outscale (the
        network's scale, then a Lanczos or area resize), e.g. 3.5 with a x4 model.
        """
        return self.upscale_images([pixels], alpha, outscale)[0]

    def upscale_images(self, images: list[np.ndarray], alpha: str = "bicubic",
                     outscale: float | None = None) -> list[np.ndarray]:
        """:meth:`upscale_image` for several images at once: small images of equal size share forward passes."""
        check_alpha(alpha)
        jobs = [network_inputs(pixels, self.descriptor, alpha) for pixels in images]
        results = iter(self.upscale_network_inputs([a for j in jobs for a in j]))
        return [assemble(pixels, results, self.descriptor, alpha, outscale) for pixels in images]

    def image_bands(self, pixels: np.ndarray, alpha: str = "bicubic",
                    outscale: float | None = None) -> Iterator[tuple[int, np.ndarray]] | None:
        """:meth:`upscale_image`' output as (first row, rows) bands, top to bottom, without the whole output in
        memory: one tile row at a time (an image that fits one tile comes as one band). Only for modes whose
        output rows follow from the network's rows alone (:func:`srcore.modes.band_assembler`); None for
        the others. Unlike the other calls, an out-of-memory error is not retried: rows may be out already."""
        finish = band_assembler(pixels, self.descriptor, alpha, outscale)
        if finish is None:
            return None
        [image] = network_inputs(pixels, self.descriptor, alpha)
        self._check(image)
        h, w = image.shape[:2]
        whole = self.tile is None or (h <= self.tile and w <= self.tile)
        bands = iter([(0, self.upscale_network_input(image))]) if whole else self.network_input_bands(image)
        return ((row0, finish(band)) for row0, band in bands)

    # ----------------------------------------------------------------- arrays

    def upscale_network_input(self, image: np.ndarray) -> np.ndarray:
        """(H, W, C) uint8, uint16 or float (in [0, 1]) -> (H*s, W*s, C) of the same dtype.

        C must equal the model's input channels; :meth:`upscale_image` converts modes first.
        """
        return self.upscale_network_inputs([image])[0]

    def upscale_network_inputs(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Upscale several images; small ones of equal size share forward passes. On a CUDA out-of-memory error
        the call is repeated with half the batch, then half the tile, until it fits."""
        for image in images:
            self._check(image)
        while True:
            try:
                return self._upscale_all(images)
            except torch.cuda.OutOfMemoryError:
                if self.device.type == "cuda":
                    for network in self._models.values():  # captured graphs hold memory for shapes that change
                        if isinstance(network, GraphedNetwork):
                            network.reset()
                    torch.cuda.empty_cache()
                if not self._shrink(images):
                    raise

    def _upscale_all(self, images: list[np.ndarray]) -> list[np.ndarray]:
        results: list[np.ndarray | None] = [None] * len(images)
        whole: dict[tuple, list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            h, w = image.shape[:2]
            if self.tile is None or (h <= self.tile and w <= self.tile):
                whole[image.shape + (image.dtype.str,)].append(i)
            else:
                results[i] = self._upscale_tiled(image)
        for indices in whole.values():
            for i, out in zip(indices, self._upscale_group([images[i] for i in indices]), strict=True):
                results[i] = out
        return results  # type: ignore[return-value]

    def _check(self, image: np.ndarray) -> None:
        if image.ndim != 3 or image.shape[2] != self.descriptor.in_channels:
            raise ValueError(f"expected (H, W, {self.descriptor.in_channels}) pixels, got shape {image.shape}")
        if image.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
            raise ValueError(f"unsupported pixel dtype {image.dtype}")

    def _shrink(self, images: list[np.ndarray]) -> bool:
        """Smaller batches, else smaller tiles (never below 2 x overlap); False when nothing is left to shrink."""
        if self.batch_size == "auto" and any(n > 1 for n in self._auto_batch.values()):
            self._auto_batch = {k: max(1, n // 2) for k, n in self._auto_batch.items()}
            change = "batch halved"
        elif isinstance(self.batch_size, int) and self.batch_size > 1:
            self.batch_size //= 2
            change = f"batch size {self.batch_size}"
        else:
            m = self.descriptor.size_multiple
            side = self.tile or max(max(im.shape[:2]) for im in images)
            smaller = _round_up(side // 2, m)
            if smaller <= 2 * self.overlap + m:
                return False
            self.tile = smaller
            change = f"tile {smaller}"
        warnings.warn(f"out of device memory: retrying with {change}", stacklevel=3)
        return True

    def _tiles_per_pass(self, c: int, h: int, w: int, dtype: torch.dtype) -> int:
        """Tiles of (c, h, w) in ``dtype`` per forward pass: ``batch_size``, or with ``"auto"`` 1 on CPU and, on
        CUDA, as many as half the free device memory holds, from one tile's measured peak (at most 16)."""
        if self.batch_size != "auto":
            return int(self.batch_size)
        if self.device.type != "cuda":
            return 1
        key = (c, h, w, dtype)  # fp32 tiles (16-bit pixels) need twice bf16's memory
        if key not in self._auto_batch:
            torch.cuda.synchronize(self.device)
            free, _ = torch.cuda.mem_get_info(self.device)
            base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._network(torch.zeros((1, c, h, w), dtype=dtype, device=self.device))
            per_tile = max(1, torch.cuda.max_memory_allocated(self.device) - base)
            self._auto_batch[key] = int(max(1, min(16, free // 2 // per_tile)))
        return self._auto_batch[key]

    # ----------------------------------------------------------------- host <-> device

    def _upload(self, pixels: np.ndarray) -> torch.Tensor:
        """(h, w, C) host pixels -> (1, C, h, w) on the device in the compute dtype, in [0, 1].

        Integers travel as integers (a quarter of float32's bytes for 8-bit) and are normalised on the device;
        uint16 travels as int16 bits (torch's uint16 has few kernels) and is unwrapped there.
        """
        top = max_value(pixels.dtype)
        if not pixels.flags.writeable:  # torch wants writable memory (decoders hand out read-only arrays)
            pixels = pixels.copy()
        if pixels.dtype == np.uint16:
            host = torch.from_numpy(np.ascontiguousarray(pixels).view(np.int16))
        elif pixels.dtype == np.uint8:
            host = torch.from_numpy(np.ascontiguousarray(pixels))
        else:
            host = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
        if self.device.type == "cuda":
            x = host.pin_memory().to(self.device, non_blocking=True)
        else:
            x = host.to(self.device)
        if pixels.dtype == np.uint16:
            x = x.to(torch.int32).bitwise_and_(0xFFFF)
        x = x.permute(2, 0, 1)[None].float()
        if top != 1.0:
            x = x.div_(top)
        return x if self.runtime == "openvino" else x.to(self.compute_dtype(pixels.dtype))

    def _quantised(self, y: torch.Tensor, dtype: np.dtype) -> torch.Tensor:
        """(N, C, H, W) device floats in [0, 1] -> (N, H, W, C) device tensor ready to become ``dtype`` pixels."""
        top = max_value(dtype)
        y = y.permute(0, 2, 3, 1).float()  # contiguous already when y is channels_last
        if top == 1.0:  # a new tensor: y may be a view of the tile accumulator, which is reused
            return y.clamp(0, 1).contiguous()
        out = torch.empty(y.shape, dtype=torch.uint8 if top == 255.0 else torch.int32, device=y.device)
        return out.copy_(y.mul_(top).round_().clamp_(0, top))  # cast and made contiguous in one copy

    def _download(self, q: torch.Tensor, dtype: np.dtype, asynchronous: bool = False):
        """A quantised device tensor -> host numpy of ``dtype``; with ``asynchronous``, a function returning it
        (on CUDA it waits for the copy, so the caller can queue more work first)."""
        if self.device.type != "cuda":
            arr = _as_numpy(q, dtype)
            return (lambda: arr) if asynchronous else arr
        host = torch.empty(q.shape, dtype=q.dtype, pin_memory=True)
        host.copy_(q, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        if not asynchronous:
            done.synchronize()
            return _as_numpy(host, dtype)
        return lambda: (done.synchronize(), _as_numpy(host, dtype))[1]

    # ----------------------------------------------------------------- whole images and tiles

    def _padded_size(self, h: int, w: int) -> tuple[int, int]:
        m = self.descriptor.size_multiple
        return _round_up(h, m), _round_up(w, m)

    def _rows(self, image: np.ndarray, y0: int, y1: int) -> np.ndarray:
        """Rows [y0, y1) of ``image`` padded (reflect) to the model's size multiple: a view when nothing is padded."""
        h, w = image.shape[:2]
        ph, pw = self._padded_size(h, w)
        rows, cols = pad_index(ph, h), pad_index(pw, w)
        if y1 <= h and cols is None:
            return image[y0:y1]
        band = image[y0:y1] if y1 <= h else image[rows[y0:y1]]
        return band if cols is None else band[:, cols]

    def _upscale_group(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Whole images of one shape and dtype, ``_tiles_per_pass`` at a time."""
        h, w, c = images[0].shape
        s, dtype = self.scale, images[0].dtype
        ph, pw = self._padded_size(h, w)
        compute = self.compute_dtype(dtype)
        network = self._model_for(compute)
        if dtype == np.uint8 and hasattr(network, "upscale_uint8"):  # OpenVINO: pixels in, pixels out
            padded = [np.ascontiguousarray(self._rows(im, 0, ph)) for im in images]
            outs = network.upscale_uint8(padded)
            return outs if (ph, pw) == (h, w) else [np.ascontiguousarray(o[: h * s, : w * s]) for o in outs]
        per_pass = self._tiles_per_pass(c, ph, pw, compute)
        out: list[np.ndarray] = []
        for start in range(0, len(images), per_pass):
            x = torch.cat([self._upload(self._rows(im, 0, ph)) for im in images[start : start + per_pass]])
            y = self._network(x, compute)[..., : h * s, : w * s]
            out.extend(self._download(self._quantised(y, dtype), dtype))
        return out

    def _upscale_tiled(self, image: np.ndarray) -> np.ndarray:
        h, w, c = image.shape
        s = self.scale
        out = np.empty((h * s, w * s, c), image.dtype)
        for row0, band in self.network_input_bands(image):
            out[row0 : row0 + band.shape[0]] = band
        return out

    def network_input_bands(self, image: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Finished output rows of a tiled upscale, top to bottom: (first row, (rows, W*s, C) of the image's
        dtype). Only one tile row of input and of float accumulators lives on the device at a time. Inside
        :func:`tile_progress`, each finished tile row calls its callback with (tiles done, tiles)."""
        report = _TILE_PROGRESS.get()
        h, w, c = image.shape
        s, dtype = self.scale, image.dtype
        ph, pw = self._padded_size(h, w)
        grid = TileGrid.plan(ph, pw, self.tile, self.overlap, s, self.descriptor.size_multiple, self.feather)
        th, tw = grid.tile_h * s, grid.tile_w * s
        dev = self.device
        wx = torch.from_numpy(np.stack(grid.wx)).to(dev)  # (tiles across, tw)
        wy = torch.from_numpy(np.stack(grid.wy)).to(dev)  # (tile rows, th)
        norm_x, norm_y = torch.from_numpy(grid.norm_x).to(dev), torch.from_numpy(grid.norm_y).to(dev)
        compute = self.compute_dtype(dtype)
        per_pass = self._tiles_per_pass(c, grid.tile_h, grid.tile_w, compute)
        acc = torch.zeros((c, th, pw * s), dtype=torch.float32, device=dev)  # from the tile row's first output row
        pending = None
        for r, y in enumerate(grid.ys):
            band_in = self._upload(self._rows(image, y, y + grid.tile_h))
            for i in range(0, len(grid.xs), per_pass):
                xs = grid.xs[i : i + per_pass]
                tiles = torch.cat([band_in[..., x0 : x0 + grid.tile_w] for x0 in xs])
                out = self._network(tiles, compute).float()
                out *= wy[r].view(1, 1, th, 1)
                out *= wx[i : i + len(xs)].view(len(xs), 1, 1, tw)
                for k, x0 in enumerate(xs):
                    acc[:, :, x0 * s : x0 * s + tw] += out[k]
            n = (grid.ys[r + 1] - y) * s if r + 1 < len(grid.ys) else th  # rows no later tile reaches
            rows = min(n, h * s - y * s)
            band = acc[:, :rows, : w * s]
            for r0 in range(0, rows, 256):  # normalised in place, in slices: no accumulator-sized temporary
                band[:, r0 : r0 + 256] /= norm_x[: w * s] * norm_y[y * s + r0 : y * s + min(rows, r0 + 256), None]
            ready = self._download(self._quantised(band[None], dtype), dtype, asynchronous=True)
            if self.device.type != "cuda":  # nothing to overlap on a CPU: the rows go out now
                yield y * s, ready()[0]
            else:  # the host takes band r while the device computes band r + 1
                if pending is not None:
                    yield pending[0], pending[1]()[0]
                pending = (y * s, ready)
            if report is not None:
                report((r + 1) * len(grid.xs), len(grid.ys) * len(grid.xs))
            carry = acc[:, n:].clone()  # the overlap rows the next tile row adds to (a few rows, not a tile)
            acc.zero_()
            acc[:, : th - n] = carry
            if rows < n:
                break
        if pending is not None:
            yield pending[0], pending[1]()[0]


_TILE_PROGRESS: ContextVar[Callable[[int, int], None] | None] = ContextVar("srcore_tile_progress", default=None)


@contextmanager
def tile_progress(callback: Callable[[int, int], None]) -> Iterator[None]:
    """Within this block (this thread only), tiled upscales call ``callback(tiles done, tiles)`` after each
    tile row: progress inside one large image, e.g. for a progress bar."""
    token = _TILE_PROGRESS.set(callback)
    try:
        yield
    finally:
        _TILE_PROGRESS.reset(token)


def _as_numpy(q: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    arr = q.cpu().numpy()
    return arr if arr.dtype == dtype else arr.astype(dtype)
