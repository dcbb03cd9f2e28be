"""Whole-file upscaling: bytes or paths in, encoded bytes or files out. Used by the CLI and the bucket pipeline."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from .atomic import atomic_path
from .imageio import DEFAULT_MAX_PIXELS, EXTENSIONS, FORMATS, Picture, Provenance, decode, encode
from .inference import Upscaler


@dataclass(frozen=True)
class OutputOptions:
    """How outputs are made and written.

    Attributes:
        format: ``png``, ``jpg``, ``webp``, ``tiff``, or None to keep the input's format (PNG for others).
        quality: JPEG/WebP quality, 1-100.
        alpha: ``"bicubic"`` or ``"network"`` upscaling of the alpha channel.
        outscale: final scale (None: the model's).
        max_pixels: inputs above this many pixels are refused before decoding (decompression bombs).
    """

    format: str | None = None
    quality: int = 95
    alpha: str = "bicubic"
    outscale: float | None = None
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    def __post_init__(self):
        if self.format is not None and self.format.lower() not in FORMATS:
            raise ValueError(f"format must be one of {sorted(FORMATS)}, got {self.format!r}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be in 1..100, got {self.quality}")
        if self.outscale is not None and self.outscale <= 0:
            raise ValueError(f"outscale must be > 0, got {self.outscale}")


def output_format(options: OutputOptions, picture: Picture) -> str:
    if options.format:
        return FORMATS[options.format.lower()]
    return picture.format if picture.format in EXTENSIONS else "PNG"


@dataclass
class UpscaleResult:
    data: bytes
    format: str  # PNG, JPEG, WEBP, TIFF
    source: Picture  # decoded input (pixels kept for quality figures)
    output: Picture

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def upscale_bytes(upscaler: Upscaler, data: bytes, name: str, model_id: str,
                  options: OutputOptions = OutputOptions()) -> UpscaleResult:
    """Decode, upscale and encode one image; errors name ``name``."""
    source = decode(data, name, options.max_pixels)
    pixels = upscaler.upscale_pixels(source.pixels, options.alpha, options.outscale)
    output = replace(source, pixels=pixels)
    fmt = output_format(options, source)
    provenance = Provenance(model_id, options.outscale or upscaler.scale)
    return UpscaleResult(encode(output, fmt, options.quality, provenance), fmt, source, output)


def upscale_file(upscaler: Upscaler, src: str | os.PathLike, out_dir: str | os.PathLike, model_id: str,
                 options: OutputOptions = OutputOptions(), stem: str | None = None) -> tuple[Path, UpscaleResult]:
    """Upscale ``src`` into ``out_dir/<stem><ext>``, written atomically (temporary name, then rename)."""
    src = Path(src)
    result = upscale_bytes(upscaler, src.read_bytes(), str(src), model_id, options)
    target = Path(out_dir) / f"{stem or src.stem}{result.extension}"
    with atomic_path(target) as tmp:
        tmp.write_bytes(result.data)
    return target, result
