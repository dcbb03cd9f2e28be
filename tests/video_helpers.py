"""Test videos written with PyAV (the tests make their own clips), read back as facts to compare, and damaged.

:func:`write_clip` writes a small clip whose frames are a window sliding over a training image (real texture
that moves, as a camera pan does), with optional sine-wave audio, irregular timestamps, a display rotation,
colour tags, container metadata and a subtitle stream. :func:`read_video` returns what a test compares between
an input and its output, :func:`damage` breaks one video packet so that decoding that frame fails.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from conftest import shared_path
from PIL import Image

SOURCE_IMAGE = "datasets/T91/HR/t1.png"  # 197x176: room for a 96x64 window to slide 40 frames
VFR_TIME_BASE = Fraction(1, 12800)
VFR_DURATIONS = (512, 1280)  # 1/25 s and 1/10 s in VFR_TIME_BASE, alternating
AUDIO_RATE = 44100
AUDIO_FRAME = 1024  # AAC's frame size


def source_image() -> np.ndarray:
    """The training image the clips pan over (the test is skipped when the shared data is absent)."""
    return np.asarray(Image.open(shared_path(SOURCE_IMAGE)).convert("RGB"))


def pan(image: np.ndarray, frames: int, size: tuple[int, int]) -> list[np.ndarray]:
    """``frames`` crops of ``size`` (width, height), the window moving 2 px right and 1 px down per frame
    (wrapping inside the image)."""
    w, h = size
    spare_x, spare_y = image.shape[1] - w, image.shape[0] - h
    assert spare_x > 0 and spare_y > 0, "the source image is smaller than the clip"
    return [np.ascontiguousarray(image[(i % spare_y):(i % spare_y) + h, (2 * i) % spare_x:(2 * i) % spare_x + w])
            for i in range(frames)]


CONTAINER_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".ts": "mpegts"}


def write_clip(path: str | os.PathLike, frames: int = 30, size: tuple[int, int] = (64, 48), rate: int = 25,
               codec: str = "libx264", audio: bool = True, vfr: bool = False, rotation: int = 0,
               color: bool = False, metadata: dict[str, str] | None = None, subtitles: bool = False,
               gop: int | None = None, bframes: bool = True) -> Path:
    """Write a clip: ``frames`` frames of a pan over :data:`SOURCE_IMAGE` at ``rate`` frames/s (``vfr``: frame
    durations alternating 1/25 s and 1/10 s, with time base 1/12800 and explicit pts), ``codec`` in the container
    the suffix names. ``audio``: a 440 Hz sine as long as the video, mono (AAC at 44.1 kHz, or in WebM Opus at
    48 kHz), each audio frame stamped with its pts in samples. ``rotation``: a display rotation (degrees
    counter-clockwise); ``color``: BT.709 tags (primaries, transfer, matrix 1; limited range); ``metadata``:
    container tags; ``subtitles``: two cues (mov_text in MP4/MOV, SubRip in Matroska). ``gop``: a keyframe exactly every
    ``gop`` frames (no scene-cut keyframes); ``bframes=False``: decoding order is display order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    pictures = pan(source_image(), frames, size)
    with av.open(str(path), "w", format=CONTAINER_FORMATS[suffix]) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "bgr0" if codec == "ffv1" else "yuv420p"
        options = {}
        if codec == "libx264":
            options["preset"] = "veryfast"
            if gop:
                options.update(g=str(gop), keyint_min=str(gop), sc_threshold="0")
            if not bframes:
                options["bf"] = "0"
        elif codec == "libvpx-vp9":
            options.update(deadline="realtime", **{"cpu-used": "8"})
        if gop and codec != "libx264":
            options["g"] = str(gop)
        stream.options = options
        if vfr:
            stream.time_base = stream.codec_context.time_base = VFR_TIME_BASE
        if color:
            context = stream.codec_context
            context.color_primaries = context.color_trc = context.colorspace = 1  # BT.709
            context.color_range = 1  # MPEG (limited)
        if rotation:
            stream.set_display_rotation(rotation)
        sound = None
        if audio:
            webm = suffix == ".webm"  # WebM holds Opus, not AAC
            sound = out.add_stream("libopus" if webm else "aac", rate=48000 if webm else AUDIO_RATE)
            sound.layout = "mono"
        cues = None
        if subtitles:
            cues = out.add_mux_stream("subrip" if suffix in (".mkv", ".webm") else "mov_text")
            cues.time_base = Fraction(1, 1000)
        out.metadata.update(metadata or {})

        seconds = Fraction(0)  # the video's length so far
        for i, picture in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            if vfr:
                frame.pts, frame.time_base = int(seconds / VFR_TIME_BASE), VFR_TIME_BASE
                seconds += VFR_DURATIONS[i % 2] * VFR_TIME_BASE
            else:
                frame.pts, frame.time_base = i, Fraction(1, rate)
                seconds += Fraction(1, rate)
            if color:
                frame.colorspace, frame.color_range = 1, 1
            if codec != "ffv1":
                frame = frame.reformat(format="yuv420p", dst_colorspace=frame.colorspace,
                                       dst_color_range=frame.color_range)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if sound is not None:  # (muxed after the video: the muxer interleaves packets by time)
            sample_rate, sample_format = sound.codec_context.sample_rate, sound.codec_context.format.name
            total = int(seconds * sample_rate)
            t = np.arange(total, dtype=np.float64) / sample_rate
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            step = 960 if webm else AUDIO_FRAME  # samples an encoder frame takes
            for start in range(0, total, step):
                chunk = np.zeros((1, step), np.float32)
                chunk[0, :min(step, total - start)] = wave[start:start + step]
                if sample_format.startswith("s16"):  # libopus takes 16-bit samples
                    chunk = (chunk * 32767).astype(np.int16)
                frame = av.AudioFrame.from_ndarray(chunk, format=sample_format, layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, Fraction(1, sample_rate)
                for packet in sound.encode(frame):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
        if cues is not None:
            for i, text in enumerate(("first cue", "second cue")):
                data = text.encode()
                packet = av.Packet(data if suffix in (".mkv", ".webm") else struct.pack(">H", len(data)) + data)
                packet.stream, packet.time_base = cues, Fraction(1, 1000)
                packet.pts = packet.dts = int(i * seconds * 500)  # two cues, each over a quarter of the clip
                packet.duration = int(seconds * 250)
                out.mux(packet)
    return path


@dataclass
class VideoFacts:
    """What :func:`read_video` reads of a video: the facts an output must keep from its input."""

    codec: str
    width: int
    height: int
    frame_pts: list[int]
    time_base: Fraction
    video_duration: int | None  # in time_base
    duration: float | None  # the container's, in seconds
    audio: list[tuple[int, bytes]]  # (pts in the audio stream's time base, packet bytes)
    audio_time_base: Fraction | None
    subtitles: list[tuple[Fraction, bytes]]  # (time in seconds, packet bytes) of non-empty cues
    rotation: int
    colour: dict[str, int]
    metadata: dict[str, str]
    keyframes: list[int] = field(default_factory=list)  # indices (in display order) of keyframes
    frames: list[np.ndarray] | None = None  # rgb24, when asked for

    @property
    def times(self) -> list[Fraction]:
        """Every frame's presentation time in seconds (exact)."""
        return [p * self.time_base for p in self.frame_pts]


def read_video(path: str | os.PathLike, pixels: bool = False) -> VideoFacts:
    """Demux ``path`` (decoding the video, to read each frame's timestamp and rotation; ``pixels``: keep each
    frame as rgb24)."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        context = video.codec_context
        colour = {k: getattr(context, k) for k in ("color_primaries", "color_trc", "colorspace", "color_range")}
        audio, audio_tb, subtitles = [], None, []
        others = [s for s in container.streams if s.type in ("audio", "subtitle")]
        for packet in container.demux(others) if others else ():  # demux([]) would give every stream's
            if not packet.size:
                continue
            if packet.stream.type == "audio":
                audio.append((packet.pts, bytes(packet)))
                audio_tb = packet.time_base
            elif len(bytes(packet)) > 2:  # mov_text writes an empty cue (a 0 length) between cues
                subtitles.append((packet.pts * packet.time_base, bytes(packet)))
        container.seek(0)
        pts, keys, frames, rotation = [], [], [], 0
        for i, frame in enumerate(container.decode(video=0)):
            pts.append(frame.pts)
            if frame.key_frame:
                keys.append(i)
            if i == 0:
                rotation = frame.rotation
            if pixels:
                frames.append(frame.to_ndarray(format="rgb24"))
        return VideoFacts(context.name, context.width, context.height, pts, video.time_base, video.duration,
                          container.duration / 1e6 if container.duration is not None else None, audio, audio_tb,
                          subtitles, rotation, colour, dict(container.metadata), keys, frames if pixels else None)


def damage(path: str | os.PathLike, packet_index: int) -> None:
    """Break the ``packet_index``-th (0-based, in file order) video packet of ``path`` in place, so that
    decoding it raises: its first 4 bytes are flipped. For H.264 in MP4 those are the NAL unit's length
    prefix, which becomes larger than the packet (FFmpeg: "Invalid NAL unit size"); flipping bytes inside
    a slice instead is concealed by the decoder, and would fail no test."""
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
        target = packets[packet_index]
        offset, size = target.pos, target.size
    assert offset is not None and offset >= 0 and size >= 4, (offset, size)
    with open(path, "r+b") as file:
        file.seek(offset)
        head = file.read(4)
        file.seek(offset)
        file.write(bytes(b ^ 0xFF for b in head))
