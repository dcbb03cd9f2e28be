"""Whole-file upscaling, one path for every caller: the options (engine and output), the format rule, the
model id, and ``render``. The ``srcore upscale`` CLI and the bucket job take their flags from these
dataclasses (:func:`add_flags`), so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import uuid
import warnings
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ImageColor

from . import gpu_codecs
from .atomic import atomic_path
from .compiled import COMPILE_MODES
from .geo import (
    GEO_SUFFIXES,
    OTHER_BANDS,
    SceneResult,
    gdal_env,
    is_georeferenced,
    network_bands,
    open_raster,
    parse_bands,
    upscale_scene,
)
from .imageio import (
    DEFAULT_MAX_PIXELS,
    EXTENSIONS,
    FORMATS,
    Picture,
    Provenance,
    decode,
    encode,
    made_from,
    png_chunks,
    probe_provenance,
    with_resolution,
)
from .inference import Upscaler
from .metrics import LR_CHECK_PIXELS, LrCheck
from .modes import ALPHA_MODES, band_assembler
from .png_writer import PngWriter
from .redact import redact


def _word_or_int(value, words: dict, expected: str):
    if value in words:
        return words[value]
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {expected}, got {value!r}") from None


def parse_tile(value: str | int | None) -> int | str | None:
    """``--tile``: ``auto`` (the engine's model-aware default), ``none`` or ``0`` (whole images), or a size."""
    words = {None: None, "none": None, "0": None, 0: None, "auto": "auto"}
    return _word_or_int(value, words, "'auto', 'none' or a size in pixels")


def parse_batch(value: str | int) -> int | str:
    """``--batch-size``: ``auto`` or a count."""
    return _word_or_int(value, {"auto": "auto"}, "'auto' or a count")


def parse_color(value: str) -> tuple[int, int, int]:
    """``--background``: a colour name or #rrggbb (Pillow's ImageColor) as RGB."""
    try:
        return ImageColor.getrgb(value)[:3]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a colour name or #rrggbb, got {value!r}") from None


DPI_MODES = ("scale", "keep")


def _flag(default, help: str, parse=None, choices=None):
    return field(default=default, metadata={"help": help, "parse": parse, "choices": choices})


@dataclass(frozen=True)
class EngineOptions:
    """How the network runs (:class:`srcore.Upscaler`'s settings). Every field is a flag of the same name."""

    precision: str = _flag("auto", "auto: fp16 on GPUs (bf16 for models that cannot take fp16), bf16 on "
                           "CPUs with native bf16, else fp32; 16-bit images: fp32",
                           choices=("auto", "fp32", "fp16", "bf16"))
    tile: int | str | None = _flag("auto", "input tile size, 'auto' (max(512, 3 x the model's overlap)) or 'none' "
                                   "(whole images; 0 means the same)", parse=parse_tile)
    tile_overlap: int | None = _flag(None, "tile overlap (default: the model's)", parse=int)
    batch_size: int | str = _flag("auto", "tiles or small images per forward pass; auto: 1 on CPU, from free "
                                  "memory on GPUs", parse=parse_batch)
    runtime: str = _flag("auto", "auto: OpenVINO on CPUs where the openvino extra is installed, else PyTorch",
                         choices=("auto", "torch", "openvino"))
    compile: str = _flag("auto", "CUDA: 'graphs' replays each recurring shape as a captured CUDA graph, 'inductor' "
                         "also compiles the network with torch.compile (a minute or more per shape the first time, "
                         "cached on local disk; on CPUs too, with --runtime torch), 'auto' keeps CUDA graphs where "
                         "they measure faster than eager, 'off' runs eager", choices=COMPILE_MODES)
    codecs: str = _flag("auto", "auto: when the model runs on a CUDA GPU, JPEG inputs decode and JPEG outputs encode "
                        "there (nvJPEG), else on the CPU; cpu: always on the CPU", choices=("auto", "cpu"))

    def __post_init__(self):
        check_flags([
            (self.precision in ("auto", "fp32", "fp16", "bf16"), "precision", "must be auto, fp32, fp16 or bf16"),
            (self.tile in ("auto", None) or (isinstance(self.tile, int) and self.tile > 0), "tile",
             "must be 'auto', None or > 0"),
            (self.tile_overlap is None or self.tile_overlap >= 0, "tile-overlap", "must be >= 0"),
            (self.batch_size == "auto" or (isinstance(self.batch_size, int) and self.batch_size >= 1),
             "batch-size", "must be 'auto' or >= 1"),
            (self.runtime in ("auto", "torch", "openvino"), "runtime", "must be auto, torch or openvino"),
            (self.compile in COMPILE_MODES, "compile", f"must be one of {', '.join(COMPILE_MODES)}"),
            (self.codecs in ("auto", "cpu"), "codecs", "must be auto or cpu"),
        ], self)

    def build(self, model, device: str | None = None) -> Upscaler:
        return Upscaler(model, device=device, precision=self.precision, tile=self.tile,
                        tile_overlap=self.tile_overlap, batch_size=self.batch_size, runtime=self.runtime,
                        compile=self.compile, gpu_codecs=self.codecs == "auto")


@dataclass(frozen=True)
class OutputOptions:
    """How outputs are made and written. Every field is a flag of the same name.

    Attributes:
        format: ``png``, ``jpg``, ``webp``, ``tiff``, or None to keep the input's (PNG for others).
        quality: JPEG/WebP quality, 1-100.
        png_compression: zlib level; 1 (as OpenCV and Real-ESRGAN write) is about 4.5x as fast as 6 for files
            about 7% larger: encoding 16x outputs is often the pipeline's limit.
        alpha: ``"bicubic"`` or ``"network"`` upscaling of the alpha channel.
        outscale: final scale (None: the model's).
        max_input_pixels: inputs above this many pixels are refused before decoding (decompression bombs).
        bands: georeferenced rasters: the three 1-based bands that feed the network as R, G, B (``4,3,2``);
            default the first three.
        other_bands: georeferenced rasters: every other band through the network as gray, or bicubic.
    """

    format: str | None = _flag(None, "output format (default: the input's, PNG for formats srcore cannot write); "
                               "georeferenced rasters are GeoTIFF, or with 'cog' Cloud-Optimized GeoTIFF",
                               choices=tuple(sorted(FORMATS)) + ("cog",))
    quality: int = _flag(95, "JPEG/WebP quality", parse=int)
    png_compression: int = _flag(1, "PNG zlib level 0-9 (1: fastest; 6+ for ~7%% smaller files, 4.5x slower)",
                                 parse=int)
    alpha: str = _flag("bicubic", "how alpha is upscaled", choices=ALPHA_MODES)
    outscale: float | None = _flag(None, "final scale (default: the model's)", parse=float)
    max_input_pixels: int | None = _flag(DEFAULT_MAX_PIXELS, "refuse larger inputs before decoding "
                                         "(decompression bombs)", parse=int)
    bands: str | None = _flag(None, "georeferenced rasters: the three bands (1-based) that feed the network as "
                              "R,G,B, e.g. 4,3,2 for Sentinel-2 B04,B03,B02 (default: the first three)")
    other_bands: str = _flag("network", "georeferenced rasters: every other band (NIR, SWIR, ...) through the "
                             "network as gray, or bicubic", choices=OTHER_BANDS)
    background: str = _flag("white", "JPEG outputs of images with alpha are composited on this colour (name or "
                            "#rrggbb)")
    dpi: str = _flag("scale", "the output's stated resolution (dpi): 'scale' multiplies the input's by the scale, "
                     "so a print of the output has the original's size (600 dpi in, x4: 2400 dpi); 'keep' states "
                     "the input's (a print 4x as large)", choices=DPI_MODES)
    stream_output_pixels: int = _flag(1 << 26, "PNG outputs above this many pixels are written a tile row at a "
                                      "time, in memory that follows their width", parse=int)

    def __post_init__(self):
        check_flags([
            (self.format is None or self.format.lower() in (*FORMATS, "cog"), "format",
             f"must be one of {sorted(FORMATS) + ['cog']}"),
            (1 <= self.quality <= 100, "quality", "must be in 1..100"),
            (0 <= self.png_compression <= 9, "png-compression", "must be in 0..9"),
            (self.alpha in ALPHA_MODES, "alpha", "must be 'bicubic' or 'network'"),
            (self.outscale is None or self.outscale > 0, "outscale", "must be > 0"),
            (self.stream_output_pixels > 0, "stream-output-pixels", "must be > 0"),
            (self.max_input_pixels is None or self.max_input_pixels > 0, "max-input-pixels", "must be > 0"),
            (self.other_bands in OTHER_BANDS, "other-bands", "must be 'network' or 'bicubic'"),
            (self.dpi in DPI_MODES, "dpi", "must be 'scale' or 'keep'"),
        ], self)
        parse_bands(self.bands)  # names --bands in its error
        try:
            parse_color(self.background)
        except argparse.ArgumentTypeError as exc:
            raise ValueError(f"--background {exc}") from None


def check_flags(rules: list[tuple[bool, str, str]], options) -> None:
    """Raise ValueError naming the flag of the first rule that fails: ``(ok, "flag-name", "must be ...")``."""
    for ok, name, rule in rules:
        if not ok:
            raise ValueError(f"--{name} {rule}, got {redact(repr(getattr(options, name.replace('-', '_'))))}")


def add_flags(parser: argparse.ArgumentParser, options: type) -> None:
    """One ``--flag`` per field of an options dataclass, with its default, help, parser and choices."""
    for f in fields(options):
        meta = f.metadata
        default = f.default if f.default is not MISSING else None
        help_text = meta["help"] + ("" if default is None or "default" in meta["help"] else " (default: %(default)s)")
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=default, type=meta.get("parse"),
                            choices=meta.get("choices"), help=help_text)


def add_realism_flag(parser: argparse.ArgumentParser) -> None:
    """``--realism``, shared by ``srcore upscale``, the bucket job and the evaluate job."""
    parser.add_argument("--realism", type=float, default=None, metavar="A",
                        help="fidelity-realism knob, 0..1, for a model with a GAN / PSNR pair (srcore-compact-x4-gan "
                             "and srcore-compact-x4): A * GAN + (1 - A) * PSNR weights; 0 = the PSNR model (faithful, "
                             "smooth), 1 = the GAN model (sharp, invented texture); recorded in the provenance")


def from_flags(options: type, args: argparse.Namespace):
    """The options dataclass from parsed :func:`add_flags` flags."""
    return options(**{f.name: getattr(args, f.name) for f in fields(options)})


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
    pixels = upscaler.upscale_pixels(source.pixels, options.alpha, options.outscale)
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
    """Upscale and write a PNG to ``file`` a tile row at a time (:meth:`Upscaler.pixel_bands`,
    :class:`srcore.png_writer.PngWriter`): memory grows with the image's width, never with its height.
    The metadata is what :func:`encode_output` writes. ``lr_check``: also score LR-consistency, band by band."""
    pixels = source.pixels
    bands = upscaler.pixel_bands(pixels, options.alpha, options.outscale)
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


@dataclass
class UpscaleResult:
    data: bytes
    format: str  # PNG, JPEG, WEBP, TIFF
    source: Picture  # decoded input (pixels kept for quality figures)
    output: Picture

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def local_version(path: str | os.PathLike) -> str:
    """A local file's version as the bucket job records it: ``mtime:<ns>`` (changes when it is rewritten)."""
    return f"mtime:{int(float(os.stat(path).st_mtime) * 1e9)}"


def upscale_bytes(upscaler: Upscaler, data: bytes, name: str, model_id: str,
                  options: OutputOptions = OutputOptions(), provenance: Provenance | None = None) -> UpscaleResult:
    """Decode, upscale and encode one image; errors name ``name``."""
    source = decode(data, name, options.max_input_pixels, upscaler.jpeg_pixels)
    fmt = output_format(name, options.format)
    provenance = provenance or Provenance(model_id, options.outscale or upscaler.scale, name)
    out, output = render(upscaler, source, fmt, options, provenance)
    return UpscaleResult(out, fmt, source, output)


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
    """Is ``target`` already the output of this version of ``src`` by this model and scale (its provenance
    says so: the bucket job's rule, :func:`srcore.imageio.made_from`)?"""
    try:
        with open(target, "rb") as file:
            def read(start: int, end: int) -> bytes:
                file.seek(start)
                return file.read(end - start)

            found = probe_provenance(read, os.fstat(file.fileno()).st_size)
    except OSError:
        return False
    return made_from(found, local_version(src), model_id, scale)


def upscale_file(upscaler: Upscaler, src: str | os.PathLike, out_dir: str | os.PathLike, model_id: str,
                 options: OutputOptions = OutputOptions(), stem: str | None = None, run: str | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 target: Path | None = None) -> tuple[Path, tuple[int, int]]:
    """Upscale ``src`` into ``out_dir/<stem><ext>`` (or ``target``: the path :func:`srcore.naming.plan_outputs`
    gave it), written atomically (temporary name, then rename); returns the output's path and (width, height).
    Large PNG outputs are streamed (:func:`streams`).

    The output's provenance names the source file and its version, as the bucket job's do. Georeferenced
    rasters become GeoTIFFs (:func:`render_raster`), calling ``progress(windows done, windows)`` as they go.
    """
    src = Path(src)
    provenance = Provenance(model_id, options.outscale or upscaler.scale, src.resolve().as_posix(),
                            local_version(src), run)
    fmt = output_format(str(src), options.format)
    target = target or output_path(src, out_dir, stem or src.stem, options)
    if may_be_raster(src.name):
        with gdal_env():
            raster = opens_as_raster(src.name, lambda: open_raster(str(src)))
            if raster is not None:  # render_raster refuses formats other than TIFF and COG (.tif)
                with raster, atomic_path(target) as tmp:
                    out = render_raster(upscaler, raster, str(src), str(tmp), fmt, options, provenance, progress)
                return target, (out.width * upscaler.scale, out.height * upscaler.scale)
    source = decode(src.read_bytes(), str(src), options.max_input_pixels, upscaler.jpeg_pixels)
    fmt = "TIFF" if fmt == "COG" else fmt  # a plain TIFF asked for as COG
    with atomic_path(target) as tmp:
        if streams(upscaler, source, fmt, options):
            with open(tmp, "wb") as file:
                size = stream_png(upscaler, source, options, provenance, file).size
        else:
            data, output = render(upscaler, source, fmt, options, provenance)
            tmp.write_bytes(data)
            size = output.size
    return target, size
