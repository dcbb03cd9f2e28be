"""Videos through ``srcore upscale`` and :mod:`srcore.video`: real clips (written by :mod:`video_helpers` with
PyAV: a pan over a training image, sine-wave audio), real encoders and decoders, the output compared with its
input as a player would see it: every frame's timestamp, the durations, the audio packets byte for byte, the
rotation, colour tags and metadata; FFV1 outputs pixel for pixel with the image path's upscale.

The command runs as ``main(argv)`` in this process (command_helpers.srcore_cli, as test_cli does: a process
would add seconds of imports per call and assert nothing more). Clips are 64x48, 20-40 frames: the bundled
model does ~60 frames/s at that size on a CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from command_helpers import srcore_cli
from PIL import Image
from video_helpers import VFR_DURATIONS, damage, read_video, source_image, write_clip

from srcore.options import EngineOptions, OutputOptions
from srcore.upscale import file_provenance, upscale_video_file
from srcore.versions import file_version
from srcore.video import join_parts, plan_segments, probe, upscale_segment, video_provenance
from srcore.weights import load_upscaling_model


@pytest.fixture(scope="module")
def engine():
    """(the bundled default model's Upscaler on the CPU, its name): what ``srcore upscale`` loads by default."""
    model, name = load_upscaling_model(None, None)
    return EngineOptions().build(model, "cpu"), name


def upscale(*args: str):
    return srcore_cli("upscale", *args)


def files_in(folder: Path) -> list[str]:
    """The names in an output folder, hidden ones too ([] when srcore never made it or removed it again)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def leftovers(folder: Path) -> list[str]:
    """Scratch folders and temporary files srcore may leave in an output folder (all hidden: .srcore-video-*,
    .name.*.tmp)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def assert_same_timeline(made, source) -> None:
    """The output shows every input frame at the same time, for as long, beside the same audio packets."""
    assert len(made.frame_pts) == len(source.frame_pts)
    assert made.times == source.times  # every frame's pts * time_base, exactly
    assert made.time_base == source.time_base
    assert made.video_duration == source.video_duration  # the video stream's (None in Matroska)
    assert made.duration == source.duration  # the container's
    assert len(made.audio) == len(source.audio) > 0
    assert made.audio_time_base == source.audio_time_base
    assert made.audio == source.audio  # (pts, bytes) of each packet: copied, not re-encoded
    assert made.subtitles == source.subtitles


# ------------------------------------------------------------------------------------------ timing and audio


@pytest.mark.parametrize("name, kind", [("clip.mp4", {}), ("vfr.mp4", {"vfr": True}),
                                        ("cues.mkv", {"subtitles": True})])
def test_every_frame_keeps_its_timestamp_beside_the_same_audio(tmp_path, name, kind):
    """Constant-rate H.264 MP4, variable-rate MP4 (frame durations alternating 1/25 and 1/10 s) and Matroska
    with SubRip cues, each with AAC audio, through the command; its progress is a frames bar and a summary."""
    clip = write_clip(tmp_path / name, frames=30, **kind)
    source = read_video(clip)
    if kind.get("vfr"):  # the clip really is variable-rate
        assert set(np.diff(source.frame_pts)) == set(VFR_DURATIONS)
    if kind.get("subtitles"):
        assert len(source.subtitles) == 2
    out = tmp_path / "out"
    result = upscale(str(clip), "-o", str(out))
    assert result.returncode == 0, result.stderr
    made = read_video(out / name)
    assert (made.width, made.height) == (4 * source.width, 4 * source.height)
    assert_same_timeline(made, source)
    assert "frame/s" in result.stderr  # the video's own bar counts frames (tqdm's unit "frame")
    assert f"{clip}: 30 frames" in result.stderr  # the line it leaves when done
    assert "1 of 1 inputs upscaled" in result.stdout and "videos: 1, 30 frames at" in result.stdout
    assert leftovers(out) == []


# ------------------------------------------------------------------------------------------ pixels


def test_ffv1_frames_are_the_image_paths_upscale_of_each_decoded_frame(tmp_path, engine):
    """Lossless FFV1 output, decoded, equals the Upscaler's image path on the same decoded frames (the video
    path batches frames: within 1 level)."""
    upscaler, model = engine
    clip = write_clip(tmp_path / "clip.mp4", frames=24)
    out = tmp_path / "out" / "clip.mkv"
    result = upscale_video_file(upscaler, clip, out, model, OutputOptions(video_codec="ffv1"))
    assert result.frames == 24 and result.size == (256, 192)
    source, made = read_video(clip, pixels=True), read_video(out, pixels=True)
    assert made.codec == "ffv1" and len(made.frames) == len(source.frames) == 24
    for i, (frame, output) in enumerate(zip(source.frames, made.frames, strict=True)):
        expected = upscaler.upscale_image(frame)
        assert output.shape == expected.shape == (192, 256, 3)
        assert np.abs(output.astype(int) - expected.astype(int)).max() <= 1, f"frame {i}"


# ------------------------------------------------------------------------------------------ metadata


def test_rotation_colour_tags_metadata_and_cues_are_kept_and_provenance_added(tmp_path, engine):
    _, model = engine
    tagged = write_clip(tmp_path / "in" / "tagged.mp4", frames=20, rotation=90, color=True, subtitles=True,
                        metadata={"title": "harbour pan", "comment": "reel 7, archive's own note"})
    plain = write_clip(tmp_path / "in" / "plain.mp4", frames=20)
    out = tmp_path / "out"
    result = upscale(str(tmp_path / "in"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    source, made = read_video(tagged), read_video(out / "tagged.mp4")
    assert (made.width, made.height) == (256, 192)  # coded size x4; the rotation is the player's business
    assert source.rotation == made.rotation == 90
    assert source.colour == made.colour == {"color_primaries": 1, "color_trc": 1, "colorspace": 1,
                                            "color_range": 1}  # BT.709, limited range
    assert made.metadata["title"] == "harbour pan"
    assert made.metadata["comment"] == "reel 7, archive's own note"  # the archive's, not replaced
    assert made.subtitles == source.subtitles and len(made.subtitles) == 2  # mov_text cues copied
    found = video_provenance(out / "tagged.mp4")
    assert found["model"] == model and found["scale"] == "4"
    assert found["sourceVersion"] == file_version(tagged)
    assert found["source"] == tagged.resolve().as_posix()
    # an input without a comment of its own gets the AI notice there
    assert read_video(out / "plain.mp4").metadata["comment"].startswith("AI-upscaled x4 by srcore")
    assert video_provenance(out / "plain.mp4")["sourceVersion"] == file_version(plain)


def test_an_output_upscaled_again_carries_the_new_runs_notice(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=20, audio=False)
    once = upscale(str(clip), "-o", str(tmp_path / "once"), "--outscale", "2")
    assert once.returncode == 0, once.stderr
    assert read_video(tmp_path / "once" / "clip.mp4").metadata["comment"].startswith("AI-upscaled x2 by srcore")
    twice = upscale(str(tmp_path / "once" / "clip.mp4"), "-o", str(tmp_path / "twice"), "--outscale", "1.5")
    assert twice.returncode == 0, twice.stderr
    assert video_provenance(tmp_path / "twice" / "clip.mp4")["scale"] == "1.5"
    assert read_video(tmp_path / "twice" / "clip.mp4").metadata["comment"].startswith("AI-upscaled x1.5 by srcore")


# ------------------------------------------------------------------------------------------ reruns


def test_a_rerun_skips_a_finished_video_and_redoes_overwritten_or_changed_ones(tmp_path):
    clip = write_clip(tmp_path / "in" / "clip.mp4", frames=20)
    out = tmp_path / "out"
    target = out / "clip.mp4"
    first = upscale(str(clip), "-o", str(out))
    assert first.returncode == 0, first.stderr
    made, run = target.stat().st_mtime_ns, video_provenance(target)["run"]

    again = upscale(str(clip), "-o", str(out))
    assert again.returncode == 0 and "0 of 1 inputs upscaled, 1 already done" in again.stdout
    assert target.stat().st_mtime_ns == made and "videos:" not in again.stdout

    again = upscale(str(clip), "-o", str(out), "--overwrite")
    assert again.returncode == 0 and "1 of 1 inputs upscaled, 0 already done" in again.stdout
    assert video_provenance(target)["run"] != run  # written again, by this run

    stat = clip.stat()  # the input rewritten since (a new modification time): its output is stale
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    again = upscale(str(clip), "-o", str(out))
    assert again.returncode == 0 and "1 of 1 inputs upscaled, 0 already done" in again.stdout
    assert video_provenance(target)["sourceVersion"] == file_version(clip)
    assert leftovers(out) == []


# ------------------------------------------------------------------------------------------ failures


def test_a_damaged_video_fails_alone_naming_its_frame_and_leaves_nothing_behind(tmp_path):
    inputs = tmp_path / "in"
    good = write_clip(inputs / "good.mp4", frames=20)
    # no B-frames: packets come in display order, so packet 12 is frame 13 (1-based)
    broken = write_clip(inputs / "broken.mp4", frames=20, audio=False, bframes=False)
    damage(broken, 12)
    Image.fromarray(source_image()[:40, :40]).save(inputs / "still.png")
    out = tmp_path / "out"
    result = upscale(str(inputs), "-o", str(out))
    assert result.returncode == 1
    assert f"failed: {broken}: frame 13 of 20 did not decode" in result.stderr
    assert "2 of 3 inputs upscaled" in result.stdout and "1 failed" in result.stdout
    # the others are whole; the broken one left no part, scratch folder or temporary file
    assert files_in(out) == ["good.mp4", "still.png"]
    assert read_video(out / "good.mp4").frame_pts == read_video(good).frame_pts
    assert Image.open(out / "still.png").size == (160, 160)


def test_files_that_are_not_videos_fail_naming_the_file(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    empty = inputs / "empty.mp4"
    empty.write_bytes(b"")
    notes = inputs / "notes.mp4"
    notes.write_text("shot list, reel 7:\n1. harbour pan\n2. crane\n")
    out = tmp_path / "out"
    result = upscale(str(inputs), "-o", str(out))
    assert result.returncode == 1
    for path in (empty, notes):
        assert f"failed: {path}: not a video FFmpeg can read" in result.stderr
    assert "Traceback" not in result.stderr
    assert "0 of 2 inputs upscaled" in result.stdout and "2 failed" in result.stdout
    assert files_in(out) == []


def test_bad_video_flags_fail_naming_the_flag(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=20)
    result = upscale(str(clip), "-o", str(tmp_path / "out"), "--crf", "99")
    assert result.returncode == 2 and "--crf must be in 0..63" in result.stderr
    # WebM holds AV1 or VP9 only
    webm = write_clip(tmp_path / "in" / "clip.webm", frames=20, codec="libvpx-vp9")
    out = tmp_path / "webm-out"
    result = upscale(str(webm), "-o", str(out), "--video-codec", "h264")
    assert result.returncode == 1
    assert f"failed: {webm}: --video-codec h264: WebM holds av1 or vp9 only" in result.stderr
    assert files_in(out) == []
    # nor AAC: the input's audio stream is named
    result = upscale(str(clip), "-o", str(out / "clip.webm"), "--video-codec", "vp9")
    assert result.returncode == 1
    assert f"failed: {clip}: its audio stream 1 (aac) cannot go into .webm" in result.stderr
    assert files_in(out) == []


def test_the_output_files_container_decides_the_video_codec(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=20, audio=False)  # (WebM cannot hold AAC)
    out = tmp_path / "out"
    result = upscale(str(clip), "-o", str(out / "clip.webm"), "--video-codec", "h264")
    assert result.returncode in (1, 2) and "--video-codec h264: WebM holds av1 or vp9 only" in result.stderr
    assert not out.exists() or leftovers(out) == []  # refused before anything was written
    result = upscale(str(clip), "-o", str(out / "clip.webm"))  # auto: AV1 in WebM
    assert result.returncode == 0, result.stderr
    assert read_video(out / "clip.webm").codec in ("av1", "libdav1d")


# ------------------------------------------------------------------------------------------ WebM


def test_webm_becomes_av1_in_webm_by_default(tmp_path):
    clip = write_clip(tmp_path / "clip.webm", frames=20, codec="libvpx-vp9", audio=False)
    out = tmp_path / "out"
    result = upscale(str(clip), "-o", str(out))
    assert result.returncode == 0, result.stderr
    source, made = read_video(clip), read_video(out / "clip.webm")
    assert made.codec in ("av1", "libdav1d")  # the decoder's name: libdav1d
    assert (made.width, made.height) == (256, 192)
    assert made.times == source.times


def test_webm_keeps_every_opus_packet(tmp_path):
    clip = write_clip(tmp_path / "clip.webm", frames=20, codec="libvpx-vp9")
    assert read_video(clip).audio[0][0] < 0  # Opus' first packet comes before the first frame
    out = tmp_path / "out"
    result = upscale(str(clip), "-o", str(out), "--video-codec", "vp9")  # (VP9: AV1 has a bug of its own)
    assert result.returncode == 0, result.stderr
    source, made = read_video(clip), read_video(out / "clip.webm")
    assert made.codec == "vp9" and made.times == source.times
    assert made.audio == source.audio


# ------------------------------------------------------------------------------------------ segments


def test_segments_start_at_keyframes_and_join_into_the_unsplit_video(tmp_path, engine):
    """A keyframe every 10 frames at 25 frames/s, segments of at least 0.5 s: cut at frame 20. Each segment
    upscaled into a part of its own and the parts joined make the same video as one segment does (FFV1:
    identical frames)."""
    upscaler, model = engine
    clip = write_clip(tmp_path / "clip.mp4", frames=40, gop=10)
    info = probe(clip, str(clip))
    assert info.frames == 40 and info.time_base * info.keyframes[1] == pytest.approx(0.4)
    segments = plan_segments(info, seconds=0.5)
    assert [(s.first_frame, s.frames) for s in segments] == [(0, 20), (20, 20)]
    assert segments[0].start is None and segments[-1].end is None
    for before, after in zip(segments, segments[1:], strict=False):
        assert after.start == before.end and after.start in info.keyframes  # cut at a keyframe, no gap
        assert after.first_frame == before.first_frame + before.frames
    assert sum(s.frames for s in segments) == info.frames

    options = OutputOptions(video_codec="ffv1")
    whole = tmp_path / "whole" / "clip.mp4"
    upscale_video_file(upscaler, clip, whole, model, options, run="r1")
    provenance = file_provenance(clip, model, 4, "r1")  # the record upscale_video_file wrote
    parts, results = [], []
    for segment in segments:
        part = tmp_path / f"part-{segment.index:05d}.mp4"
        results.append(upscale_segment(upscaler, clip, str(clip), segment, part, options, provenance))
        parts.append(part)
        assert results[-1].frames == segment.frames
        assert read_video(part).frame_pts == list(info.frame_pts[segment.first_frame:
                                                                 segment.first_frame + segment.frames])
    joined = tmp_path / "joined.mp4"
    video = join_parts(parts, results, clip, str(clip), joined, ".mp4", provenance)
    assert (video.frames, video.segments, video.size) == (40, 2, (256, 192))
    a, b = read_video(whole, pixels=True), read_video(joined, pixels=True)
    assert_same_timeline(b, a)
    assert b.frame_pts == a.frame_pts == list(info.frame_pts)
    for i, (x, y) in enumerate(zip(a.frames, b.frames, strict=True)):
        assert np.array_equal(x, y), f"frame {i}"
    assert video_provenance(joined) == video_provenance(whole)


@pytest.mark.parametrize("vfr", [False, True], ids=["constant", "variable"])
def test_h264_parts_with_b_frames_join_with_the_inputs_timeline(tmp_path, engine, vfr):
    """H.264 parts (B-frames: each part's first packets decode before they show) joined in order: every frame's
    timestamp and every audio packet are the input's, and the joined video decodes whole."""
    upscaler, model = engine
    clip = write_clip(tmp_path / "clip.mp4", frames=40, gop=10, vfr=vfr)
    info = probe(clip, str(clip))
    segments = plan_segments(info, seconds=0.4)
    assert len(segments) >= 2
    provenance = file_provenance(clip, model, 4, "r1")
    parts = [tmp_path / f"part-{s.index:05d}.mp4" for s in segments]
    results = [upscale_segment(upscaler, clip, str(clip), s, part, OutputOptions(), provenance)
               for s, part in zip(segments, parts, strict=True)]
    joined = tmp_path / "joined.mp4"
    join_parts(parts, results, clip, str(clip), joined, ".mp4", provenance)
    source, made = read_video(clip), read_video(joined, pixels=True)
    assert_same_timeline(made, source)
    assert made.frame_pts == list(info.frame_pts) and len(made.frames) == 40


def test_mpeg_ts_segments_lose_no_frame_where_its_seeks_land_late(tmp_path, engine):
    """MPEG-TS seeks by a search on decode times and can land a GOP after the keyframe asked for: each segment
    still starts at its own keyframe, and the split video equals the unsplit one frame for frame."""
    upscaler, model = engine
    clip = write_clip(tmp_path / "clip.ts", frames=40, gop=10)
    info = probe(clip, str(clip))
    segments = plan_segments(info, seconds=0.4)
    assert len(segments) == 4
    options = OutputOptions(video_codec="ffv1")
    provenance = file_provenance(clip, model, 4, "r1")
    parts = [tmp_path / f"part-{s.index:05d}.mp4" for s in segments]
    results = [upscale_segment(upscaler, clip, str(clip), s, part, options, provenance)
               for s, part in zip(segments, parts, strict=True)]
    assert [r.frames for r in results] == [s.frames for s in segments] == [10, 10, 10, 10]
    joined = tmp_path / "joined.mkv"
    join_parts(parts, results, clip, str(clip), joined, ".mkv", provenance)
    whole = tmp_path / "whole" / "clip.mkv"
    upscale_video_file(upscaler, clip, whole, model, options, run="r1")
    a, b = read_video(joined, pixels=True), read_video(whole, pixels=True)
    assert a.frame_pts == b.frame_pts and len(a.frames) == 40
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames, strict=True))
