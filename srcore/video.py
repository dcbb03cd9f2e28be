"""Videos in and out, one path for ``srcore upscale`` and the bucket job (PyAV: FFmpeg's libraries come in the
``av`` wheel, no ffmpeg binary).

A video is upscaled as segments cut at its keyframes (:func:`probe`, :func:`plan_segments`). Each segment is
decoded, upscaled through the engine in batches of frames and encoded into a part of its own
(:func:`upscale_segment`): an MP4 that keeps the input's time base, timestamps and frame durations exactly.
The parts are then joined without re-encoding, the input's audio and subtitle packets copied beside them,
the input's metadata kept and the provenance added (:func:`join_parts`). ``srcore upscale`` makes one segment of
a whole video (:func:`upscale_video`); the bucket job makes many, on any actors, and joins them when all are
there. Memory holds a batch of frames and the encoder's look-ahead, whatever the video's length.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import posixpath
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .atomic import atomic_path
from .inference import Upscaler
from .modes import BT601_YCBCR, max_value
from .options import OutputOptions
from .provenance import Provenance, is_srcore_notice, matches, read_provenance

# containers srcore reads; those it also writes keep their container, the others become Matroska (AVI, MPEG-TS
# and the rest cannot carry variable frame rates exactly, or srcore's provenance)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".m2ts", ".mts",
                  ".flv", ".wmv", ".3gp", ".ogv", ".vob")
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
# --video-codec: the encoder in the av wheel for each name; ffv1 stores RGB losslessly
VIDEO_CODECS = {"h264": "libx264", "h265": "libx265", "av1": "libsvtav1", "vp9": "libvpx-vp9", "ffv1": "ffv1"}
DEFAULT_CRF = {"h264": 18, "h265": 20, "av1": 25, "vp9": 31}  # visually close to the upscaled frames
WEBM_CODECS = ("av1", "vp9")
SEGMENT_SECONDS = 60.0
PART_FORMAT = "mp4"  # ISO BMFF keeps any time base and every frame's duration (Matroska rounds to 1 ms)
METADATA_KEY = "srcore"  # the container tag holding srcore's XMP record (Matroska writes it as SRCORE)
# what the muxer writes of its own: not the archive's catalogue
MUXER_KEYS = {"major_brand", "minor_version", "compatible_brands", "encoder", "software", "duration"}


class VideoError(ValueError):
    """A video that cannot be upscaled: the message names the file (and the frame, for decoding errors)."""


def is_video(name: str) -> bool:
    return posixpath.splitext(name)[1].lower() in VIDEO_SUFFIXES


def output_suffix(name: str) -> str:
    """The output's suffix: the input's where srcore writes that container, else ``.mkv``."""
    suffix = posixpath.splitext(name)[1].lower()
    return suffix if suffix in CONTAINERS else ".mkv"


def codec_name(options: OutputOptions, suffix: str) -> str:
    """``--video-codec`` resolved for a container (``auto``: AV1 in WebM, H.264 elsewhere); errors name the flag."""
    codec = options.video_codec
    if codec == "auto":
        return "av1" if suffix == ".webm" else "h264"
    if suffix == ".webm" and codec not in WEBM_CODECS:
        raise ValueError(f"--video-codec {codec}: WebM holds {' or '.join(WEBM_CODECS)} only")
    if suffix == ".mov" and codec == "ffv1":
        raise ValueError("--video-codec ffv1: QuickTime (.mov) cannot hold FFV1; write .mkv or .mp4")
    return codec


# ---------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Segment:
    """Frames ``start <= pts < end`` of the video stream (None: from the first / to the last), in time base
    units; ``first_frame`` is the index of its first frame in the whole video."""

    index: int
    start: int | None
    end: int | None
    first_frame: int
    frames: int
    video_frames: int  # in the whole video


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` reads of a video without decoding it."""

    width: int
    height: int
    frames: int
    duration_s: float
    time_base: Fraction
    codec: str
    keyframes: tuple[int, ...]  # pts of the video stream's keyframes, ascending
    frame_pts: np.ndarray = field(repr=False, compare=False)  # every frame's pts, ascending

    def frames_between(self, start: int | None, end: int | None) -> tuple[int, int]:
        """(index of the first frame at or after ``start``, frames in ``start <= pts < end``)."""
        lo = 0 if start is None else int(np.searchsorted(self.frame_pts, start, "left"))
        hi = len(self.frame_pts) if end is None else int(np.searchsorted(self.frame_pts, end, "left"))
        return lo, hi - lo


def _open(source: str | os.PathLike | BinaryIO, name: str):
    import av

    try:
        return av.open(source if not isinstance(source, os.PathLike) else str(source), "r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{name}: not a video FFmpeg can read ({_error_text(exc)})") from None


def _error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def probe(source: str | os.PathLike | BinaryIO, name: str) -> VideoInfo:
    """The video stream's size, frames, duration and keyframes, from its packets (read, not decoded)."""
    import av

    with _open(source, name) as container:
        if not container.streams.video:
            raise VideoError(f"{name}: holds no video stream")
        stream = container.streams.video[0]
        pts, keys = [], []
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:  # (an edit list's dropped frames are not shown)
                    continue
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None:
                    raise VideoError(f"{name}: frame {len(pts) + 1} has no timestamp")
                pts.append(stamp)
                if packet.is_keyframe:
                    keys.append(stamp)
        except av.FFmpegError as exc:
            raise VideoError(f"{name}: unreadable after frame {len(pts)} ({_error_text(exc)})") from None
        if not pts:
            raise VideoError(f"{name}: its video stream holds no frames")
        context = stream.codec_context
        duration = (float(container.duration) / 1e6 if container.duration else
                    float((max(pts) - min(pts)) * stream.time_base))
        return VideoInfo(context.width, context.height, len(pts), duration, stream.time_base, context.name,
                         tuple(sorted(keys)), np.sort(np.asarray(pts, np.int64)))


def plan_segments(info: VideoInfo, seconds: float = SEGMENT_SECONDS) -> list[Segment]:
    """Cut at keyframes into segments of at least ``seconds`` (the last may be shorter); one for short videos."""
    starts: list[int | None] = [None]
    last = int(info.frame_pts[0])
    length = Fraction(seconds).limit_denominator(1_000_000)  # 0.4 s is 2/5 s, not the float just above it
    for key in info.keyframes:
        if (key - last) * info.time_base >= length and info.frames_between(key, None)[1] > 0:
            starts.append(key)
            last = key
    segments = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else None
        first, frames = info.frames_between(start, end)
        segments.append(Segment(i, start, end, first, frames, info.frames))
    return segments


def decoded_frames(container, name: str, segment: Segment) -> Iterator:
    """The segment's frames, decoded in order (seeking to its keyframe); a decoding error raises
    :class:`VideoError` naming the frame (1-based, in the whole video) that did not decode."""
    import av

    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    kept, previous = 0, None
    try:
        for frame in _frames_from(container, stream, segment.start):
            if frame.pts is None:
                raise VideoError(f"{name}: frame {segment.first_frame + kept + 1} has no timestamp")
            if previous is not None and frame.pts <= previous:  # (AVI's guessed stamps with B-frames)
                raise VideoError(f"{name}: frame {segment.first_frame + kept + 1}: timestamps out of order "
                                 f"({frame.pts} after {previous})")
            previous = frame.pts
            if segment.start is not None and frame.pts < segment.start:
                continue  # decoded from the keyframe before, or an open GOP's leading frames
            if segment.end is not None and frame.pts >= segment.end:
                return
            kept += 1
            yield frame
    except av.FFmpegError as exc:
        raise VideoError(f"{name}: frame {segment.first_frame + kept + 1} of {segment.video_frames} did not decode "
                         f"({_error_text(exc)})") from None


SEEK_BACK_SECONDS = (0, 1, 4, 16, 64, 256)


def _frames_from(container, stream, start: int | None) -> Iterator:
    """Decoded frames from the keyframe at or before ``start`` (None: from the first). Some demuxers (MPEG-TS
    and -PS seek by a search on decode times) land after the keyframe asked for: then the seek is retried from
    further back, at last from the beginning, so no frame of the segment is skipped."""
    if start is None:
        yield from _decoded(container, stream)
        return
    for back in (*SEEK_BACK_SECONDS, None):
        target = start - int(back / stream.time_base) if back is not None else None
        if target is None or target <= (stream.start_time or 0):
            container.seek(stream.start_time or 0, stream=stream, backward=True, any_frame=False)
            yield from _decoded(container, stream)
            return
        container.seek(target, stream=stream, backward=True)
        frames = _decoded(container, stream)
        first = next(frames, None)
        if first is not None and (first.pts is None or first.pts <= start):
            yield first
            yield from frames
            return  # (no frame, or a later one: landed past the keyframe, maybe at the end; further back)


def _decoded(container, stream) -> Iterator:
    for packet in container.demux(stream):
        yield from packet.decode()


# ---------------------------------------------------------------------------------------------- writing


@dataclass
class Flicker:
    """Temporal stability: the mean frame-to-frame change of the output's luma against that of the
    bicubic-upscaled input's (same size). 1.0 changes as much as bicubic does; above 1, the model adds
    change of its own from frame to frame (flicker, crawling texture)."""

    pairs: int = 0
    output_change: float = 0.0  # sum over frame pairs of the mean absolute luma change, in 8-bit levels
    bicubic_change: float = 0.0
    _previous: tuple | None = field(default=None, repr=False)

    def add(self, source: np.ndarray, output: np.ndarray) -> None:
        import cv2

        h, w = output.shape[:2]
        out_y = _luma(output)
        bic_y = cv2.resize(_luma(source), (w, h), interpolation=cv2.INTER_CUBIC)
        if self._previous is not None:
            self.pairs += 1
            self.output_change += float(np.abs(out_y - self._previous[0]).mean())
            self.bicubic_change += float(np.abs(bic_y - self._previous[1]).mean())
        self._previous = (out_y, bic_y)

    def merge(self, other: Flicker) -> None:
        self.pairs += other.pairs
        self.output_change += other.output_change
        self.bicubic_change += other.bicubic_change

    @property
    def ratio(self) -> float | None:
        return self.output_change / self.bicubic_change if self.bicubic_change > 0 else None

    def record(self) -> dict:
        return {"pairs": self.pairs, "output_change": self.output_change, "bicubic_change": self.bicubic_change}


def _luma(pixels: np.ndarray) -> np.ndarray:
    """BT.601 luma in 8-bit levels (the one gray rule, :data:`srcore.modes.BT601_YCBCR`), as float32."""
    weights = BT601_YCBCR[0].astype(np.float32) * np.float32(255.0 / max_value(pixels.dtype))
    return pixels[..., :3].astype(np.float32) @ weights


@dataclass(frozen=True)
class SegmentResult:
    """What :func:`upscale_segment` wrote: one part, and its figures (the bucket job keeps them beside the part,
    :meth:`to_json`)."""

    index: int
    frames: int
    seconds: float  # decode, upscale and encode
    flicker: dict
    source_version: str
    model: str
    scale: float

    def to_json(self) -> bytes:
        """The part's record, kept beside it (``part-NNNNN.mp4.json``) by the bucket job: a rerun reuses the
        part when it matches, and the join sums its figures."""
        return json.dumps(asdict(self)).encode()

    @staticmethod
    def from_json(data: bytes) -> SegmentResult | None:
        """A record written by :meth:`to_json`; None for anything else."""
        try:
            return SegmentResult(**json.loads(data))
        except (ValueError, TypeError):
            return None


def _pixel_formats(frame, codec: str) -> tuple[str, str]:
    """(the RGB format the network sees, the encoder's pixel format) for a decoded frame: 16-bit RGB for
    sources above 8 bits where the encoder takes them, else 8-bit; FFV1 keeps planar RGB, lossless."""
    import av

    deep = any(c.bits > 8 for c in frame.format.components)
    supported = {f.name for f in (av.Codec(VIDEO_CODECS[codec], "w").video_formats or [])}
    if codec == "ffv1":
        return ("rgb48le", "gbrp16le") if deep else ("rgb24", "bgr0")
    for rgb, yuv in ((("rgb48le", "yuv420p10le"),) if deep else ()) + (("rgb24", "yuv420p"),):
        if yuv in supported:
            return rgb, yuv
    raise VideoError(f"--video-codec {codec}: the encoder takes neither yuv420p10le nor yuv420p")


FRAMES_PER_BATCH = 8


def upscale_segment(upscaler: Upscaler, source: str | os.PathLike | BinaryIO, name: str, segment: Segment,
                    part: str | os.PathLike, options: OutputOptions, provenance: Provenance,
                    progress: Callable[[int], None] | None = None, suffix: str | None = None) -> SegmentResult:
    """Decode ``segment`` of ``source``, upscale its frames in batches, and encode them into the MP4 ``part``
    with the input's timestamps and durations; returns the segment's record and figures.
    ``progress(frames)`` is called after each batch with the frames it added."""
    import av

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration per encoder otherwise
    start = time.perf_counter()
    codec = codec_name(options, suffix or output_suffix(name))  # the output file's container decides
    flicker, written = Flicker(), 0
    with _open(source, name) as container, av.open(str(part), "w", format=PART_FORMAT) as out:
        in_stream = container.streams.video[0]
        stream = None
        batch: list = []

        def flush() -> None:
            nonlocal stream, written
            pixels = [f.to_ndarray(format=rgb_format) for f in batch]
            upscaled = upscaler.upscale_images(pixels, "bicubic", options.outscale)
            for frame, lr, hr in zip(batch, pixels, upscaled, strict=True):
                if stream is None:
                    stream = _video_stream(out, in_stream, frame, hr.shape, codec, pix_fmt, options, name)
                flicker.add(lr, hr)
                encoded = av.VideoFrame.from_ndarray(np.ascontiguousarray(hr), format=rgb_format)
                if pix_fmt != rgb_format:
                    encoded = encoded.reformat(format=pix_fmt, dst_colorspace=frame.colorspace,
                                               dst_color_range=frame.color_range)  # full-range sources stay full
                encoded.pts, encoded.time_base, encoded.duration = frame.pts, frame.time_base, frame.duration
                encoded.color_range = frame.color_range
                encoded.colorspace = frame.colorspace
                durations[frame.pts] = frame.duration
                for packet in stream.encode(encoded):
                    mux(packet)
            written += len(batch)
            if progress is not None:
                progress(len(batch))
            batch.clear()

        # each frame's own duration, until its packet is out: x264 stamps the packets it flushes at the end
        # with a duration of its own, which would change the last frame's (and the video's) duration
        durations: dict[int, int] = {}

        def mux(packet) -> None:
            duration = durations.pop(packet.pts, None)
            if duration:
                packet.duration = duration
            out.mux(packet)

        rgb_format = pix_fmt = None
        for frame in decoded_frames(container, name, segment):
            if rgb_format is None:
                rgb_format, pix_fmt = _pixel_formats(frame, codec)
            batch.append(frame)
            if len(batch) >= FRAMES_PER_BATCH:
                flush()
        if batch:
            flush()
        if stream is None:
            raise VideoError(f"{name}: segment {segment.index} (frames {segment.first_frame + 1}..) decoded no frame")
        for packet in stream.encode():
            mux(packet)
    return SegmentResult(segment.index, written, time.perf_counter() - start, flicker.record(),
                         provenance.source_version or "", provenance.model, provenance.scale)


def _video_stream(out, in_stream, frame, shape: tuple, codec: str, pix_fmt: str, options: OutputOptions,
                  name: str):
    """The part's video stream: the input's time base, rate, aspect and colour, at the output's size."""
    h, w = shape[:2]
    if pix_fmt.startswith("yuv420") and (h % 2 or w % 2):
        raise VideoError(f"{name}: {w}x{h} output frames: 4:2:0 video needs even sizes; choose another --outscale")
    rate = in_stream.average_rate or in_stream.guessed_rate or Fraction(25)
    stream = out.add_stream(VIDEO_CODECS[codec], rate=rate)
    stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
    stream.time_base = in_stream.time_base
    stream.codec_context.time_base = in_stream.time_base
    context = in_stream.codec_context
    for attribute in ("color_range", "colorspace", "color_primaries", "color_trc"):
        setattr(stream.codec_context, attribute, getattr(context, attribute))
    if not pix_fmt.startswith("yuv"):
        stream.codec_context.colorspace = 0  # RGB samples (FFV1): no YUV matrix, whatever the input's was
    if context.sample_aspect_ratio:
        stream.codec_context.sample_aspect_ratio = context.sample_aspect_ratio
    crf = options.crf if options.crf is not None else DEFAULT_CRF.get(codec)
    settings = {"crf": str(crf)} if crf is not None else {}
    if codec == "ffv1":
        settings = {"level": "3", "slicecrc": "1"}
    elif codec == "vp9":
        settings["b"] = "0"  # constant quality
    elif codec == "h265":
        settings["x265-params"] = "log-level=error"  # x265 prints its whole configuration otherwise
    stream.options = settings
    return stream


@dataclass(frozen=True)
class VideoResult:
    """What a finished video is: for the CLI's summary and the bucket job's report row."""

    size: tuple[int, int]
    frames: int
    duration_s: float
    segments: int
    seconds: float  # decode, upscale and encode, summed over segments
    flicker: float | None
    audio_streams: int
    subtitle_streams: int

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def join_parts(parts: list[str | os.PathLike], results: list[SegmentResult], source: str | os.PathLike | BinaryIO,
               name: str, output: str | os.PathLike, suffix: str, provenance: Provenance) -> VideoResult:
    """Join the parts (in order) into ``output`` without re-encoding, with the input's audio and subtitle
    packets copied, its container and stream metadata, chapters and rotation kept, and the provenance added."""
    import av

    container_format = CONTAINERS.get(suffix, "matroska")
    options = {"movflags": "use_metadata_tags"} if container_format in ("mp4", "mov") else {}
    with _open(source, name) as src, av.open(str(output), "w", format=container_format, options=options) as out, \
            av.open(str(parts[0])) as first:
        video_in = first.streams.video[0]
        # copied as it is (opaque): a template's encoder is looked up by its decoder's name, and libdav1d has none
        video = out.add_stream_from_template(video_in, opaque=True)
        video.time_base = video_in.time_base
        source_video = src.streams.video[0]
        video.metadata.update({k: v for k, v in source_video.metadata.items() if k.lower() not in MUXER_KEYS})
        rotation = _rotation(src, name)
        if rotation:
            video.set_display_rotation(rotation)
        copied = {}
        for stream in src.streams:
            if stream.type in ("audio", "subtitle"):
                try:
                    copy = out.add_stream_from_template(stream)
                except ValueError as exc:
                    raise VideoError(f"{name}: its {stream.type} stream {stream.index} ({stream.codec_context.name})"
                                     f" cannot go into {suffix}: {exc}") from None
                copy.metadata.update(stream.metadata)
                copy.time_base = stream.time_base
                copied[stream.index] = copy
        out.metadata.update({k: v for k, v in src.metadata.items() if k.lower() not in MUXER_KEYS})
        out.metadata[METADATA_KEY] = provenance.xmp().decode()
        comment = next((v for k, v in src.metadata.items() if k.lower() == "comment"), "")
        if not str(comment).strip() or is_srcore_notice(comment):  # the image path's rule (srcore.imageio)
            for key in [k for k in out.metadata if k.lower() == "comment"]:
                del out.metadata[key]
            out.metadata["comment"] = provenance.description
        if src.chapters():
            out.set_chapters(src.chapters())

        def video_packets() -> Iterator:
            last = None  # decode time of the packet before (every part has the input's time base)
            for i, path in enumerate(parts):
                with contextlib.nullcontext(first) if i == 0 else av.open(str(path)) as part:
                    for packet in part.demux(part.streams.video[0]):
                        if not packet.size:
                            continue
                        if last is not None and packet.dts is not None and packet.dts <= last:
                            # x264 starts a part's decode times one reorder delay before its first frame, in that
                            # part's frame spacing: after longer frames they can reach back into the part before
                            if packet.pts is not None and last + 1 > packet.pts:
                                raise VideoError(f"{name}: part {i + 1}: decode times overlap the part before")
                            packet.dts = last + 1
                        last = packet.dts if packet.dts is not None else last
                        packet.stream = video
                        yield packet

        def other_packets() -> Iterator:
            if not copied:
                return
            # a demuxer of its own from the first byte: seeking src back to 0 (it decoded a frame for the rotation)
            # skips the packets stamped before 0 in Matroska/WebM (Opus' pre-skip, AAC's priming)
            if hasattr(source, "seek"):
                source.seek(0)
            with _open(source, name) as again:
                for packet in again.demux([s for s in again.streams if s.index in copied]):
                    if packet.size and (packet.dts is not None or packet.pts is not None):
                        packet.stream = copied[packet.stream_index]
                        yield packet

        def when(packet) -> Fraction:
            return (packet.dts if packet.dts is not None else packet.pts) * packet.time_base

        counts = {"audio": 0, "subtitle": 0}
        for packet in heapq.merge(video_packets(), other_packets(), key=when):
            out.mux(packet)
        counts = {kind: sum(s.type == kind for s in src.streams if s.index in copied) for kind in counts}
        info_duration = float(src.duration) / 1e6 if src.duration else 0.0
        size = (video_in.codec_context.width, video_in.codec_context.height)
    total = Flicker()
    for result in results:
        total.merge(Flicker(**result.flicker))
    return VideoResult(size, sum(r.frames for r in results), info_duration, len(results),
                       sum(r.seconds for r in results), total.ratio, counts["audio"], counts["subtitle"])


def check_container(source: str | os.PathLike | BinaryIO, name: str, suffix: str, options: OutputOptions) -> None:
    """Fail before any frame is upscaled when the output container cannot hold the video codec or one of the
    streams the join copies (AAC audio in WebM, say); the error names the file, the stream and the flag."""
    import io

    import av

    codec_name(options, suffix)
    with _open(source, name) as src, av.open(io.BytesIO(), "w", format=CONTAINERS.get(suffix, "matroska")) as probe:
        for stream in src.streams:
            if stream.type in ("audio", "subtitle"):
                try:
                    probe.add_stream_from_template(stream)
                except ValueError as exc:
                    raise VideoError(f"{name}: its {stream.type} stream {stream.index} ({stream.codec_context.name})"
                                     f" cannot go into {suffix}: {exc}") from None
    if hasattr(source, "seek"):
        source.seek(0)


def _rotation(container, name: str) -> int:
    """The video stream's display rotation in degrees (0 when none), from its first frame's display matrix."""
    try:
        container.seek(0)
        frame = next(container.decode(video=0))
        return int(round(frame.rotation or 0))
    except Exception:  # rotation is metadata: a video that does not decode fails in the segments, naming the frame
        return 0
    finally:
        container.seek(0)


def video_provenance(source: str | os.PathLike | BinaryIO) -> dict[str, str]:
    """srcore's record in a video output's container metadata ({} when there is none or it cannot be read)."""
    import av

    try:
        with av.open(source if not isinstance(source, os.PathLike) else str(source)) as container:
            tags = {k.lower(): v for k, v in container.metadata.items()}
    except (av.FFmpegError, OSError, ValueError):
        return {}
    return read_provenance(tags.get(METADATA_KEY, "").encode())


def is_video_output_of(source: str | os.PathLike | BinaryIO, source_version: str, model: str, scale: float,
                       run: str | None = None) -> bool:
    """The one "finished" rule (:func:`srcore.provenance.matches`) for a video output."""
    return matches(video_provenance(source), source_version, model, scale, run)


def upscale_video(upscaler: Upscaler, src: str | os.PathLike, target: str | os.PathLike, provenance: Provenance,
                  options: OutputOptions, progress: Callable[[int, int], None] | None = None) -> VideoResult:
    """``srcore upscale`` of one video: one segment (the whole video) into a part in a scratch folder, then
    joined into ``target`` atomically. ``progress(frames done, frames)`` as frames are encoded."""
    name = str(src)
    check_container(src, name, Path(target).suffix.lower(), options)
    info = probe(src, name)
    segment = Segment(0, None, None, 0, info.frames, info.frames)
    done = 0

    def advance(frames: int) -> None:
        nonlocal done
        done += frames
        if progress is not None:
            progress(done, info.frames)

    Path(target).parent.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".srcore-video-", dir=Path(target).parent)  # inside the output folder
    try:
        part = Path(scratch) / "part-00000.mp4.part"  # (not a video suffix: a killed run's part is no input)
        result = upscale_segment(upscaler, src, name, segment, part, options, provenance, advance,
                                 suffix=Path(target).suffix.lower())
        with atomic_path(target) as tmp:
            return join_parts([part], [result], src, name, tmp, Path(target).suffix.lower(), provenance)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def middle_frame(source: str | os.PathLike | BinaryIO, name: str) -> np.ndarray:
    """The frame shown at half the video's duration, as (H, W, 3) uint8 RGB: the report's preview of a video
    (an input and its output keep the same timestamps, so both give the same frame)."""
    with _open(source, name) as container:
        if not container.streams.video:
            raise VideoError(f"{name}: holds no video stream")
        stream = container.streams.video[0]
        half = (container.duration or 0) / 2 / 1e6  # seconds
        target = int(half / stream.time_base) + (stream.start_time or 0)
        container.seek(target, stream=stream, backward=True)
        last = None
        for frame in container.decode(stream):
            last = frame
            if frame.pts is not None and frame.pts >= target:
                break
        if last is None:
            raise VideoError(f"{name}: no frame decodes")
        return last.to_ndarray(format="rgb24")
