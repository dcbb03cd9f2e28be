"""The options of an upscale, the one source of flags for ``srcore upscale`` and the bucket job
(:func:`add_flags`): :class:`EngineOptions` (how the network runs) and :class:`OutputOptions` (how outputs are
made and written). Bad values fail with the flag's name.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, field, fields

from PIL import ImageColor

from .compiled import COMPILE_MODES
from .geo import OTHER_BANDS, parse_bands
from .imageio import DEFAULT_MAX_PIXELS, FORMATS
from .inference import Upscaler
from .modes import ALPHA_MODES
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
VIDEO_CODEC_NAMES = ("auto", "h264", "h265", "av1", "vp9", "ffv1")  # srcore.video's encoders


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
    video_codec: str = _flag("auto", "videos: h264, h265, av1 (SVT-AV1), vp9, or ffv1 (lossless RGB); auto: av1 "
                             "in .webm, h264 elsewhere", choices=VIDEO_CODEC_NAMES)
    crf: int | None = _flag(None, "videos: constant-quality factor, lower is better (default: h264 18, h265 20, "
                            "av1 25, vp9 31; ffv1 is lossless)", parse=int)

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
            (self.video_codec in VIDEO_CODEC_NAMES, "video-codec", f"must be one of {', '.join(VIDEO_CODEC_NAMES)}"),
            (self.crf is None or 0 <= self.crf <= 63, "crf", "must be in 0..63"),
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
