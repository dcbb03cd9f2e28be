"""Whole-file upscaling, one path for every caller (``srcore upscale`` and the bucket job's stages): the format
rule, the render decision (:func:`raster_input`: a raster; else :func:`image_format` and :func:`streams`: a
PNG streamed band by band, or a whole image) and the renderers (:func:`render_raster`, :func:`stream_png`,
:func:`render`). Their options are :mod:`srcore.options`'s, the provenance :mod:`srcore.provenance`'s.
"""

from __future__ import annotations

import os
import posixpath
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import gpu_codecs
from .atomic import atomic_path
from .geo import (
    GEO_SUFFIXES,
    SceneResult,
    gdal_env,
    is_georeferenced,
    network_bands,
    open_raster,
    parse_bands,
    upscale_scene,
)
from .imageio import (
    EXTENSIONS,
    FORMATS,
    Picture,
    decode,
    encode,
    png_chunks,
    with_resolution,
)
from .inference import Upscaler
from .metrics import LR_CHECK_PIXELS, LrCheck
from .modes import band_assembler
from .options import OutputOptions, parse_color
from .png_writer import PngWriter
from .provenance import Provenance, is_output_of
from .video import VideoResult, is_video, is_video_output_of, upscale_video


def output_format(name: str, fmt: str | None) -> str:
    """The output format (``PNG``...) for an input file or key: ``fmt`` if given, else the input's by its
    extension when srcore can write it, else PNG (bmp, gif). Rasters (.tif, .tiff, .jp2) are TIFF (GeoTIFF
    when georeferenced), or with ``cog`` COG; ``cog`` leaves other inputs to the default rule."""
    suffix = posixpath.splitext(name)[1].lower()
    if fmt and fmt.lower() == "cog":
        return "COG" if suffix in GEO_SUFFIXES else output_format(name, None)
    if suffix == ".jp2" and not fmt:
        return "TIFF"
    if fmt:
        if fmt.lower() not in FORMATS:
            raise ValueError(f"--format must be one of {sorted(FORMATS)}, got {fmt!r}")
        return FORMATS[fmt.lower()]
    return FORMATS.get(posixpath.splitext(name)[1][1:].lower(), "PNG")


def new_run_id() -> str:
    """A run's id: its UTC start time and a random suffix, e.g. ``20261123T154033Z-3fa2c1``."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def render(upscaler: Upscaler, source: Picture, fmt: str, options: OutputOptions,
           provenance: Provenance) -> tuple[bytes, Picture]:
    """Upscale decoded pixels and encode them: (the output file's bytes, the output picture)."""
    pixels = upscaler.upscale_image(source.pixels, options.alpha, options.outscale)
    return encode_output(source, pixels, fmt, options, provenance, upscaler.codec_device)


def encode_output(source: Picture, pixels, fmt: str, options: OutputOptions, provenance: Provenance,
                  device=None) -> tuple[bytes, Picture]:
    """Encode upscaled pixels with the source's metadata (ICC, EXIF, text) and the provenance.

    ``device``: a CUDA device (:attr:`Upscaler.codec_device`) encodes 8-bit RGB JPEGs there with nvJPEG
    (:func:`encode_jpegs_on_device`). Everything else, and every output without a device, is encoded on the CPU.
    """
    if device is not None and fmt == "JPEG" and gpu_codecs.can_encode(pixels.shape, pixels.dtype, source.source_mode):
        return encode_jpegs_on_device([(source, pixels, pixels, provenance)], options, device)[0]
    output = output_picture(source, pixels, options, provenance)
    if fmt == "JPEG" and pixels.shape[2] in (2, 4):
        warnings.warn(f"{provenance.source or 'output'}: JPEG has no alpha; composited on --background "
                      f"{options.background}", stacklevel=2)
    data = encode(output, fmt, options.quality, provenance, png_compression=options.png_compression,
                  background=parse_color(options.background))
    return data, output


def output_picture(source: Picture, pixels, options: OutputOptions, provenance: Provenance) -> Picture:
    """The output (``pixels``, or for a streamed output the source's pixels: only its metadata is read) with
    the source's catalogue metadata, its resolution scaled or kept (``--dpi``)."""
    return with_resolution(replace(source, pixels=pixels), provenance.scale if options.dpi == "scale" else 1)


def encode_jpegs_on_device(items: list[tuple[Picture, object, object, Provenance]], options: OutputOptions,
                           device) -> list[tuple[bytes, Picture]]:
    """8-bit RGB JPEG outputs (:func:`srcore.gpu_codecs.can_encode`) encoded on ``device`` in one batch: items
    are (source, host pixels, the same pixels on the device or None, provenance). Each file's metadata segments
    are those :func:`encode_output` writes on the CPU (Pillow encodes a 1x1 image with them), so both paths
    carry the same catalogue."""
    headers, on_device, outputs = [], [], []
    for source, pixels, device_pixels, provenance in items:
        output = output_picture(source, pixels, options, provenance)
        blank = replace(output, pixels=np.zeros((1, 1, 3), np.uint8))
        headers.append(encode(blank, "JPEG", options.quality, provenance, size=output.size))
        on_device.append(device_pixels if device_pixels is not None else pixels)
        outputs.append(output)
    try:
        files = gpu_codecs.encode_jpegs(on_device, options.quality, headers, device)
    except Exception as exc:  # nvJPEG refused them (or the GPU is full): Pillow encodes them, as it would anyway
        warnings.warn(f"nvJPEG could not encode {len(items)} output(s) ({type(exc).__name__}: {str(exc)[:200]}); "
                      "encoding on the CPU", stacklevel=2)
        files = [encode(output, "JPEG", options.quality, provenance)
                 for output, (_, _, _, provenance) in zip(outputs, items, strict=True)]
    return list(zip(files, outputs, strict=True))


STREAM_OUTPUT_PIXELS = OutputOptions().stream_output_pixels  # the default: PNGs above 64 MP go band by band


def streams(upscaler: Upscaler, source: Picture, fmt: str, options: OutputOptions) -> bool:
    """Is this output written band by band (:func:`stream_png`) rather than made whole in memory?

    PNG outputs above ``options.stream_output_pixels``, in modes whose rows follow from the network's rows alone
    (RGB or gray, at the model's scale). Other large outputs are made whole: their memory grows with them.
    """
    h, w = source.pixels.shape[:2]
    big = h * w * upscaler.scale**2 > options.stream_output_pixels
    return fmt == "PNG" and big and band_assembler(source.pixels, upscaler.descriptor, options.alpha,
                                                   options.outscale) is not None


@dataclass(frozen=True)
class Streamed:
    """What a streamed output was: its size and mode, and its LR-consistency when asked for."""

    size: tuple[int, int]
    mode: str
    lr_psnr: float | None = None


def stream_png(upscaler: Upscaler, source: Picture, options: OutputOptions, provenance: Provenance,
               file: BinaryIO, lr_check: bool = False) -> Streamed:
    """Upscale and write a PNG to ``file`` a tile row at a time (:meth:`Upscaler.image_bands`,
    :class:`srcore.png_writer.PngWriter`): memory grows with the image's width, never with its height.
    The metadata is what :func:`encode_output` writes. ``lr_check``: also score LR-consistency, band by band."""
    pixels = source.pixels
    bands = upscaler.image_bands(pixels, options.alpha, options.outscale)
    if bands is None:
        raise ValueError(f"a {source.mode} image with alpha={options.alpha}, outscale={options.outscale} "
                         "cannot be streamed")
    h, w, c = pixels.shape
    s = upscaler.scale
    metadata = output_picture(source, pixels, options, provenance)
    writer = PngWriter(file, w * s, h * s, c, pixels.dtype, options.png_compression,
                       png_chunks(metadata, provenance, (w * s, h * s)))
    # an LR check of the whole output would hold it: beyond 16 MP out it is scored on crops, band by band
    check = LrCheck(pixels, s, min(LR_CHECK_PIXELS, options.stream_output_pixels // (4 * s * s))) if lr_check else None
    for row0, band in bands:
        writer.write(band)
        if check is not None:
            check.add(row0, band)
    writer.close()
    return Streamed((w * s, h * s), source.mode, check.result() if check is not None else None)


def local_version(path: str | os.PathLike) -> str:
    """A local file's version as the bucket job records it (the one rule, :mod:`srcore.versions`)."""
    from .versions import file_version

    return file_version(path)


@lru_cache(maxsize=1)
def geo_installed() -> bool:
    """Is rasterio (the ``geo`` extra) installed? Without it every input takes the image path."""
    try:
        import rasterio  # noqa: F401
    except ImportError:
        return False
    return True


def may_be_raster(name: str) -> bool:
    """Could this input be a raster for :mod:`srcore.geo` (.tif, .tiff, .jp2, with the ``geo`` extra)?
    Only then is GDAL involved at all (:func:`opens_as_raster`, inside :func:`srcore.geo.gdal_env`)."""
    return posixpath.splitext(name)[1].lower() in GEO_SUFFIXES and geo_installed()


def opens_as_raster(name: str, open_source: Callable[[], object]):
    """The open rasterio dataset of a raster input that :func:`may_be_raster`: a georeferenced .tif/.tiff, or
    any .jp2; else None (plain TIFFs keep the image path). ``open_source`` opens it
    (:func:`srcore.geo.open_raster`); call inside :func:`srcore.geo.gdal_env`."""
    jp2 = posixpath.splitext(name)[1].lower() == ".jp2"
    try:
        src = open_source()
    except Exception:
        if jp2:
            raise
        return None  # not a raster GDAL reads: the image decoder says why
    if jp2 or is_georeferenced(src):
        return src
    src.close()
    return None


@contextmanager
def raster_input(name: str, open_source: Callable[[], object]) -> Iterator[object | None]:
    """The first of the render decision (raster, streamed PNG or whole image), for ``srcore upscale`` and the
    bucket job alike: the open raster (inside :func:`srcore.geo.gdal_env`) when the input is one, else None
    (then :func:`image_format` and :func:`streams` decide)."""
    if not may_be_raster(name):
        yield None
        return
    with gdal_env():
        raster = opens_as_raster(name, open_source)
        if raster is None:
            yield None
            return
        with raster:
            yield raster


def image_format(fmt: str) -> str:
    """The output format of an input that is not a raster: COG is a raster's; a plain TIFF asked for as COG
    is written as TIFF."""
    return "TIFF" if fmt == "COG" else fmt


GEO_NOTICE = "AI-upscaled: details may be synthesized, not measured"


def render_raster(upscaler: Upscaler, src, name: str, path: str, fmt: str, options: OutputOptions,
                  provenance: Provenance, progress: Callable[[int, int], None] | None = None) -> SceneResult:
    """Upscale an open georeferenced raster into a GeoTIFF (``fmt`` TIFF) or COG at the local ``path``
    (:func:`srcore.geo.upscale_scene`): every band, georeferencing and nodata kept, memory bounded by the
    window; the provenance in its ``SRCORE_*`` tags. Errors name ``name``."""
    s = upscaler.scale
    if fmt not in ("TIFF", "COG"):
        raise ValueError(f"{name}: a georeferenced raster is written as GeoTIFF (--format tiff) or COG (--format "
                         f"cog); --format {fmt.lower()} would drop its georeferencing")
    if options.outscale not in (None, s):
        raise ValueError(f"{name}: --outscale is not applied to georeferenced rasters (they keep the model's "
                         f"x{s}, so pixels stay aligned to the grid)")
    if options.max_input_pixels and src.width * src.height > options.max_input_pixels:
        raise ValueError(f"{name}: {src.width}x{src.height} is over --max-input-pixels ({options.max_input_pixels})")
    tags = {"notice": GEO_NOTICE, "model": provenance.model, "scale": f"{s}", "source": provenance.source,
            "source_version": provenance.source_version, "run": provenance.run or "",
            "bands_rgb": options.bands or ("1,2,3" if src.count >= 3 else "none"), "other_bands": options.other_bands}
    upscale = network_bands(upscaler, parse_bands(options.bands), options.other_bands)
    try:
        return upscale_scene(src, path, upscale, s, margin=upscaler.overlap // 2, cog=fmt == "COG", tags=tags,
                             xmp=provenance.xmp(), progress=progress)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc


def output_path(src: str | os.PathLike, out_dir: str | os.PathLike, stem: str, options: OutputOptions) -> Path:
    """Where :func:`upscale_file` writes ``src``: ``out_dir/<stem><ext>``, the extension by the format rule
    (rasters and COGs are .tif)."""
    return Path(out_dir) / f"{stem}{EXTENSIONS[output_format(str(src), options.format)]}"


def is_finished(target: Path, src: str | os.PathLike, model_id: str, scale: float) -> bool:
    """Is ``target`` already the output of this version of ``src`` by this model and scale (the bucket job's
    rule, :func:`srcore.provenance.is_output_of`)?"""
    if is_video(str(target)):
        return is_video_output_of(target, local_version(src), model_id, scale) if target.is_file() else False
    try:
        with open(target, "rb") as file:
            def read(start: int, end: int) -> bytes:
                file.seek(start)
                return file.read(end - start)

            return is_output_of(read, os.fstat(file.fileno()).st_size, local_version(src), model_id, scale)
    except OSError:
        return False


def upscale_file(upscaler: Upscaler, src: str | os.PathLike, out_dir: str | os.PathLike, model_id: str,
                 options: OutputOptions | None = None, stem: str | None = None, run: str | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 target: Path | None = None) -> tuple[Path, tuple[int, int]]:
    """Upscale ``src`` into ``out_dir/<stem><ext>`` (or ``target``: the path :func:`srcore.naming.plan_outputs`
    gave it), written atomically (temporary name, then rename); returns the output's path and (width, height).
    Large PNG outputs are streamed (:func:`streams`).

    The output's provenance names the source file and its version, as the bucket job's do. Georeferenced
    rasters become GeoTIFFs (:func:`render_raster`), calling ``progress(windows done, windows)`` as they go.
    """
    src, options = Path(src), options or OutputOptions()
    provenance = file_provenance(src, model_id, options.outscale or upscaler.scale, run)
    fmt = output_format(str(src), options.format)
    target = target or output_path(src, out_dir, stem or src.stem, options)
    with raster_input(src.name, lambda: open_raster(str(src))) as raster:
        if raster is not None:  # render_raster refuses formats other than TIFF and COG (.tif)
            with atomic_path(target) as tmp:
                out = render_raster(upscaler, raster, str(src), str(tmp), fmt, options, provenance, progress)
            return target, (out.width * upscaler.scale, out.height * upscaler.scale)
    source = decode(src.read_bytes(), str(src), options.max_input_pixels, upscaler.jpeg_pixels)
    fmt = image_format(fmt)
    with atomic_path(target) as tmp:
        if streams(upscaler, source, fmt, options):
            with open(tmp, "wb") as file:
                size = stream_png(upscaler, source, options, provenance, file).size
        else:
            data, output = render(upscaler, source, fmt, options, provenance)
            tmp.write_bytes(data)
            size = output.size
    return target, size


def file_provenance(src: Path, model_id: str, scale: float, run: str | None) -> Provenance:
    """A local input's provenance: its absolute path and version (as the bucket job records a key's)."""
    return Provenance(model_id, scale, src.resolve().as_posix(), local_version(src), run)


def upscale_video_file(upscaler: Upscaler, src: str | os.PathLike, target: Path, model_id: str,
                       options: OutputOptions, run: str | None = None,
                       progress: Callable[[int, int], None] | None = None) -> VideoResult:
    """``srcore upscale`` of a video into ``target`` (:func:`srcore.video.upscale_video`), atomically, with the
    provenance :func:`upscale_file` gives images; ``progress(frames done, frames)``."""
    src = Path(src)
    provenance = file_provenance(src, model_id, options.outscale or upscaler.scale, run)
    return upscale_video(upscaler, src, target, provenance, options, progress)
