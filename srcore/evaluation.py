"""Score an upscaler on HR image folders the way SR papers do (see ``srcore.metrics`` for conventions).

Images are read as ``srcore upscale`` reads them (:func:`srcore.imageio.decode`: EXIF orientation applied,
16-bit and gray kept). HR images are cropped to a multiple of the scale; LR inputs are made with
MATLAB-compatible bicubic and rounded to 8 bits; real inputs (no reference) go through the upscaler as decoded,
and every score is taken on 8-bit pixels without alpha (:func:`scoring_pixels`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .atomic import atomic_path
from .imageio import IMAGE_SUFFIXES, decode, to_8bit
from .inference import Upscaler
from .metrics import lr_consistency, niqe, psnr_np, ssim_np
from .resize import imresize_np

# (H, W[, C]) LR -> (H*s, W*s[, C]) SR of the same dtype (uint8; real inputs may be uint16)
UpscaleFn = Callable[[np.ndarray], np.ndarray]


def read_image(path: Path) -> np.ndarray:
    """A file's pixels as the upscaler sees them: (H, W, C) uint8 or uint16, C 1-4, EXIF orientation applied.
    An unreadable file is a ValueError naming it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read image ({exc.strerror or exc})") from None
    return decode(data, str(path)).pixels


def scoring_pixels(pixels: np.ndarray) -> np.ndarray:
    """What scores are computed on: 8 bits (the papers' convention), alpha dropped, gray as (H, W), else RGB."""
    pixels = to_8bit(pixels)
    if pixels.ndim == 2:
        return pixels
    if pixels.shape[2] in (2, 4):
        pixels = pixels[..., :-1]
    return pixels[..., 0] if pixels.shape[2] == 1 else pixels


def read_hr(path: Path) -> np.ndarray:
    """An HR image's scoring pixels: (H, W) uint8 for gray (scored on its own channel), else (H, W, 3)."""
    return scoring_pixels(read_image(path))


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def bicubic_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """The benchmark LR: MATLAB bicubic downscale of the mod-cropped HR, rounded to uint8."""
    return imresize_np(mod_crop(hr, scale), 1.0 / scale)


def bicubic_upscaler(scale: int) -> UpscaleFn:
    """MATLAB bicubic, same dtype out as in (16-bit inputs rounded and clipped as 8-bit ones are)."""
    def upscale(lr: np.ndarray) -> np.ndarray:
        if lr.dtype == np.uint8:
            return imresize_np(lr, float(scale))
        return np.clip(np.round(imresize_np(lr, float(scale))), 0, np.iinfo(lr.dtype).max).astype(lr.dtype)

    return upscale


def model_upscaler(model: torch.nn.Module, device: str | torch.device = "cpu", precision: str = "fp32",
                   tile: int | str | None = "auto", runtime: str = "auto") -> UpscaleFn:
    """Wrap a network in the one engine (:class:`srcore.Upscaler`): uint8 in, uint8 out, any size (padded to
    the model's size multiple). Modes are the engine's: gray through RGB models comes back gray, Y-channel
    models (SRCNN) see the luma and the chroma is upscaled by bicubic. fp32 by default, as papers score."""
    upscaler = Upscaler(model, device=device, precision=precision, tile=tile, runtime=runtime)

    def upscale(lr: np.ndarray) -> np.ndarray:
        sr = upscaler.upscale_image(lr[..., None] if lr.ndim == 2 else lr)
        return sr[..., 0] if lr.ndim == 2 else sr

    return upscale


@dataclass
class ImageScore:
    """One image's scores; ``psnr``/``ssim`` are None without a reference, ``niqe`` when the output is smaller
    than NIQE's two 96x96 blocks."""

    image: str
    psnr: float | None
    ssim: float | None
    lr_psnr: float  # LR-consistency PSNR
    niqe: float | None
    seconds: float  # upscaling only


@dataclass
class SetScore:
    name: str
    scale: int
    images: list[ImageScore] = field(default_factory=list)
    reference: bool = True  # scored against HR images; False: real LR inputs (NIQE and LR-consistency only)

    def _scored(self, key: str) -> list[float]:
        return [value for s in self.images if (value := getattr(s, key)) is not None]

    def mean(self, key: str) -> float:
        values = self._scored(key)
        return float(np.mean(values)) if values else float("nan")

    def median(self, key: str) -> float:
        values = self._scored(key)
        return float(np.median(values)) if values else float("nan")

    def summary(self) -> dict:
        """Per-set means (None where no image has the score) and the median LR-consistency."""
        values = {k: self.mean(k) for k in ("psnr", "ssim", "lr_psnr", "niqe", "seconds")}
        values["lr_psnr_median"] = self.median("lr_psnr")
        return {"set": self.name, "scale": self.scale, "count": len(self.images), "reference": self.reference,
                **{k: v if np.isfinite(v) else None for k, v in values.items()}}


def list_images(folder: Path) -> list[Path]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"{folder}: no images found")
    return paths


def niqe_or_none(sr: np.ndarray, crop_border: int) -> float | None:
    try:
        return niqe(sr, crop_border)
    except ValueError:  # smaller than two 96x96 blocks
        return None


def _timed(upscale: UpscaleFn, lr: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    sr = upscale(lr)
    return sr, time.perf_counter() - start


def score_image(upscale: UpscaleFn, hr: np.ndarray, scale: int, name: str = "") -> ImageScore:
    """Paper scores of one HR image: bicubic LR in, PSNR/SSIM against HR, LR-consistency, NIQE (border = scale)."""
    hr = mod_crop(hr, scale)
    lr = bicubic_lr(hr, scale)
    sr, seconds = _timed(upscale, lr)
    if sr.shape != hr.shape:
        raise ValueError(f"upscaler returned {sr.shape} for LR {lr.shape}, expected {hr.shape}")
    return ImageScore(name, psnr_np(sr, hr, scale), ssim_np(sr, hr, scale), lr_consistency(lr, sr, scale),
                      niqe_or_none(sr, scale), seconds)


def score_input(upscale: UpscaleFn, lr: np.ndarray, scale: int, name: str = "") -> ImageScore:
    """No-reference scores of one real LR input, upscaled as decoded (:func:`read_image`, e.g. 16-bit gray with
    alpha): NIQE of the output, LR-consistency with the input, both on :func:`scoring_pixels`."""
    sr, seconds = _timed(upscale, lr)
    lr, sr = scoring_pixels(lr), scoring_pixels(sr)
    return ImageScore(name, None, None, lr_consistency(lr, sr, scale), niqe_or_none(sr, scale), seconds)


def evaluate_set(upscale: UpscaleFn, folder: Path, scale: int, name: str | None = None,
                 progress: bool = True, reference: bool = True) -> SetScore:
    """Score every image in ``folder``: HR images (``reference``), or real LR inputs without ground truth."""
    result = SetScore(name or folder.name, scale, reference=reference)
    score = score_image if reference else score_input
    for path in tqdm(list_images(folder), desc=result.name, unit="img", disable=not progress, leave=False):
        pixels = read_hr(path) if reference else read_image(path)
        result.images.append(score(upscale, pixels, scale, path.name))
    return result


def resolve_sets(names: Iterable[str], data_root: Path, reference: bool | None = None) -> list[tuple[str, Path, bool]]:
    """(name, folder, has reference) per set. A name means ``<data_root>/<name>/HR`` (scored against it), or,
    without an HR folder, ``<data_root>/<name>`` itself as real LR inputs (like ``RealWorld``); a folder path
    is HR images unless ``reference`` is False."""
    sets = []
    for name in names:
        as_path = Path(name)
        if as_path.is_dir():
            label = as_path.name if as_path.name != "HR" else as_path.parent.name
            sets.append((label, as_path, reference is not False))
            continue
        folder = data_root / name / "HR"
        if folder.is_dir() and reference is not False:
            sets.append((name, folder, True))
        elif (data_root / name).is_dir() and reference is not True:
            sets.append((name, data_root / name, False))
        else:
            raise ValueError(f"set {name!r}: {folder} is not a folder (pass --data-root or a folder path)")
    return sets


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None or not np.isfinite(value) else format(value, fmt)


def markdown_table(model_name: str, results: list[SetScore]) -> str:
    """PSNR/SSIM (reference sets), NIQE (lower is more natural), LR-consistency mean and median, s/image."""
    lines = ["| model | scale | set | images | PSNR (dB) | SSIM | NIQE | LR-consistency mean / median (dB) | s/image |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r.summary()
        lines.append(f"| {model_name} | x{r.scale} | {r.name} | {s['count']} | {_cell(s['psnr'], '.2f')} "
                     f"| {_cell(s['ssim'], '.4f')} | {_cell(s['niqe'], '.2f')} | {_cell(s['lr_psnr'], '.2f')} / "
                     f"{_cell(s['lr_psnr_median'], '.2f')} | {_cell(s['seconds'], '.2f')} |")
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, model_name: str, results: list[SetScore]) -> tuple[Path, Path]:
    """``results.md`` (the table) and ``results.json`` (per set and per image), written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "results.md", out_dir / "results.json"
    with atomic_path(md) as tmp:
        tmp.write_text(markdown_table(model_name, results))
    payload = {"model": model_name,
               "sets": [{**r.summary(), "images": [asdict(i) for i in r.images]} for r in results]}
    with atomic_path(js) as tmp:
        tmp.write_text(json.dumps(payload, indent=2))
    return md, js
