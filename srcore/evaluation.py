"""Score an upscaler on HR image folders the way SR papers do (see ``srcore.metrics`` for conventions).

HR images are cropped to a multiple of the scale; LR inputs are made with MATLAB-compatible bicubic and
rounded to 8 bits; SR outputs are rounded to 8 bits before scoring.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .atomic import atomic_path
from .imageio import IMAGE_SUFFIXES
from .inference import Upscaler
from .metrics import lr_consistency, psnr_np, ssim_np
from .resize import imresize_np

# (H, W[, C]) uint8 LR -> (H*s, W*s[, C]) uint8 SR
UpscaleFn = Callable[[np.ndarray], np.ndarray]


def read_hr(path: Path) -> np.ndarray:
    """8-bit HR pixels: gray images stay one channel (scored on their own channel), others become RGB."""
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im if im.mode == "L" else im.convert("RGB"))
    except Exception as exc:
        raise ValueError(f"{path}: cannot read image ({exc})") from None


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def bicubic_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """The benchmark LR: MATLAB bicubic downscale of the mod-cropped HR, rounded to uint8."""
    return imresize_np(mod_crop(hr, scale), 1.0 / scale)


def bicubic_upscaler(scale: int) -> UpscaleFn:
    return lambda lr: imresize_np(lr, float(scale))


def model_upscaler(model: torch.nn.Module, device: str | torch.device = "cpu", precision: str = "fp32",
                   tile: int | str | None = "auto", runtime: str = "auto") -> UpscaleFn:
    """Wrap a network in the one engine (:class:`srcore.Upscaler`): uint8 in, uint8 out, any size (padded to
    the model's size multiple). Modes are the engine's: gray through RGB models comes back gray, Y-channel
    models (SRCNN) see the luma and the chroma is upscaled by bicubic. fp32 by default, as papers score."""
    upscaler = Upscaler(model, device=device, precision=precision, tile=tile, runtime=runtime)

    def upscale(lr: np.ndarray) -> np.ndarray:
        sr = upscaler.upscale_pixels(lr[..., None] if lr.ndim == 2 else lr)
        return sr[..., 0] if lr.ndim == 2 else sr

    return upscale


@dataclass
class ImageScore:
    image: str
    psnr: float
    ssim: float
    lr_psnr: float  # LR-consistency PSNR
    seconds: float


@dataclass
class SetScore:
    name: str
    scale: int
    images: list[ImageScore] = field(default_factory=list)

    def mean(self, key: str) -> float:
        return float(np.mean([getattr(s, key) for s in self.images]))

    def summary(self) -> dict:
        return {"set": self.name, "scale": self.scale, "count": len(self.images),
                **{k: self.mean(k) for k in ("psnr", "ssim", "lr_psnr")}}


def list_images(folder: Path) -> list[Path]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"{folder}: no images found")
    return paths


def score_image(upscale: UpscaleFn, hr: np.ndarray, scale: int) -> tuple[float, float, float]:
    hr = mod_crop(hr, scale)
    lr = bicubic_lr(hr, scale)
    sr = upscale(lr)
    if sr.shape != hr.shape:
        raise ValueError(f"upscaler returned {sr.shape} for LR {lr.shape}, expected {hr.shape}")
    return psnr_np(sr, hr, scale), ssim_np(sr, hr, scale), lr_consistency(lr, sr, scale)


def evaluate_set(upscale: UpscaleFn, folder: Path, scale: int, name: str | None = None,
                 progress: bool = True) -> SetScore:
    """Score every image in ``folder``."""
    result = SetScore(name or folder.name, scale)
    for path in tqdm(list_images(folder), desc=result.name, unit="img", disable=not progress, leave=False):
        start = time.perf_counter()
        psnr, ssim, lr_psnr = score_image(upscale, read_hr(path), scale)
        result.images.append(ImageScore(path.name, psnr, ssim, lr_psnr, time.perf_counter() - start))
    return result


def resolve_sets(names: Iterable[str], data_root: Path) -> list[tuple[str, Path]]:
    """A set name means ``<data_root>/<name>/HR``; an existing folder path is used as it is."""
    sets = []
    for name in names:
        as_path = Path(name)
        if as_path.is_dir():
            sets.append((as_path.name if as_path.name != "HR" else as_path.parent.name, as_path))
            continue
        folder = data_root / name / "HR"
        if not folder.is_dir():
            raise ValueError(f"set {name!r}: {folder} is not a folder (pass --data-root or a folder path)")
        sets.append((name, folder))
    return sets


def markdown_table(model_name: str, results: list[SetScore]) -> str:
    lines = ["| model | scale | set | images | PSNR (dB) | SSIM | LR-consistency PSNR (dB) |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        s = r.summary()
        lines.append(f"| {model_name} | x{r.scale} | {r.name} | {s['count']} | {s['psnr']:.2f} | {s['ssim']:.4f} "
                     f"| {s['lr_psnr']:.2f} |")
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
