"""Videos in the bucket job: one video cut at keyframes over several actors, on the loopback S3 server and in
local folders, on the run's shared Ray head.

A clip of 30 frames with a keyframe every 10 (25 frames/s) cut at 0.4 s gives 3 segments. The reference is the
unsplit output of ``srcore upscale`` (one segment, one process): FFV1 is lossless, so frames compare exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import s3fs
from bucket_helpers import list_objects, make_bucket, run_job, summary_of
from video_helpers import damage, read_video, write_clip

from pipelines.faults import faults_env
from srcore.options import EngineOptions, OutputOptions
from srcore.upscale import upscale_video_file
from srcore.video import video_provenance
from srcore.weights import load_upscaling_model

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("shared_ray"), pytest.mark.xdist_group("ray")]

SPLIT = ["--video-segment-seconds", "0.4", "--video-codec", "ffv1", "--max-actors", "2"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, Path]:
    """(a 30-frame H.264 clip with audio and a keyframe every 10 frames, its unsplit FFV1 upscale by the CLI's
    path)."""
    folder = tmp_path_factory.mktemp("video-clip")
    source = write_clip(folder / "pan.mp4", frames=30, gop=10, metadata={"title": "harbour pan"})
    model, name = load_upscaling_model(None, None)
    unsplit = folder / "unsplit" / "pan.mp4"
    upscale_video_file(EngineOptions().build(model, "cpu"), source, unsplit, name, OutputOptions(video_codec="ffv1"))
    return source, unsplit


def _rows(summary: dict) -> dict[str, dict]:
    location = summary["report"]
    if location.startswith("s3://"):
        fs = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"], skip_instance_cache=True)
        table = pq.read_table(location.removeprefix("s3://") + "/rows", filesystem=fs)
    else:
        table = pq.read_table(location + "/rows")
    return {r["input"].rsplit("/", 1)[-1]: r for r in table.to_pylist()}


def _same_video(made: Path, reference: Path) -> None:
    """Frame for frame (and timestamp for timestamp, audio packet for audio packet) the same video."""
    a, b = read_video(made, pixels=True), read_video(reference, pixels=True)
    assert a.frame_pts == b.frame_pts and a.time_base == b.time_base
    assert a.audio == b.audio and len(a.audio) > 0
    assert len(a.frames) == len(b.frames) == 30
    for i, (x, y) in enumerate(zip(a.frames, b.frames, strict=True)):
        assert (x == y).all(), f"frame {i} differs"


def test_a_video_split_over_two_actors_equals_the_unsplit_output(s3, clip, tmp_path):
    source, unsplit = clip
    make_bucket("films", "in", {"reels/pan.mp4": source.read_bytes()})
    result = run_job("--input", "s3://films/in", "--output", "s3://films/out", *SPLIT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "3 segments to upscale on 2 1-CPU actors" in result.stdout
    summary = summary_of(result)
    assert (summary["ok"], summary["videos"], summary["frames"]) == (1, 1, 30)
    row = _rows(summary)["pan.mp4"]
    assert (row["frames"], row["segments"], row["failed_segments"], row["output_format"]) == (30, 3, 0, "MP4")
    assert row["frames_per_s"] > 0 and row["flicker"] > 0 and (row["output_width"], row["output_height"]) == (256, 192)
    assert set(list_objects("films", "out")) == {"reels/pan.mp4"}  # the parts are gone, nothing else written

    made = tmp_path / "pan.mp4"
    fs = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"], skip_instance_cache=True)
    fs.get_file("films/out/reels/pan.mp4", str(made))
    _same_video(made, unsplit)
    facts = read_video(made)
    assert facts.metadata.get("title") == "harbour pan"  # the archive's own tag kept
    found = video_provenance(made)
    assert found["model"] == summary["model"] and found["run"] == summary["run"]
    assert found["source"] == "s3://films/in/reels/pan.mp4"

    again = run_job("--input", "s3://films/in", "--output", "s3://films/out", *SPLIT)
    assert again.returncode == 0 and summary_of(again)["skipped"] == 1


def test_a_rerun_after_an_actor_died_mid_video_redoes_only_the_missing_segment(shared_ray, clip, tmp_path):
    source, unsplit = clip
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    (inputs / "pan.mp4").write_bytes(source.read_bytes())
    # every actor that takes the second segment dies (as an out-of-memory kill would), every retry
    shared_ray(**faults_env(die={"upscale": "pan.mp4#segment=1"}))
    first = run_job("--input", str(inputs), "--output", str(out), *SPLIT, "--max-failure-rate", "1")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    row = _rows(summary_of(first))["pan.mp4"]
    assert row["status"] == "failed" and "segment 2 of 3" in row["error"] and row["failed_segments"] == 1
    assert not (out / "pan.mp4").exists()  # no output until every part is there
    parts = sorted((out / "_reports" / "video-parts").rglob("part-*.mp4"))
    assert [p.name for p in parts] == ["part-00000.mp4", "part-00002.mp4"]
    made_at = {p.name: p.stat().st_mtime_ns for p in parts}

    shared_ray()  # the run's own workers again: nothing dies
    second = run_job("--input", str(inputs), "--output", str(out), *SPLIT)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "1 segments to upscale on 1 1-CPU actors, 2 made by an earlier run" in second.stdout
    assert "segment 2/3" in second.stdout + second.stderr and "segment 1/3" not in second.stdout + second.stderr
    assert all(made_at[p.name] == p.stat().st_mtime_ns for p in parts if p.exists())  # (reused, not remade)
    _same_video(out / "pan.mp4", unsplit)
    assert not list((out / "_reports" / "video-parts").rglob("*.mp4"))  # joined: the parts are removed


def test_a_damaged_video_fails_alone_with_its_frame_number(shared_ray, clip, tmp_path):
    source, _ = clip
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    (inputs / "good.mp4").write_bytes(source.read_bytes())
    (inputs / "broken.mp4").write_bytes(source.read_bytes())
    damage(inputs / "broken.mp4", 15)
    (inputs / "empty.mp4").write_bytes(b"")
    result = run_job("--input", str(inputs), "--output", str(out), *SPLIT, "--max-failure-rate", "1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = _rows(summary_of(result))
    assert rows["good.mp4"]["status"] == "ok" and (out / "good.mp4").exists()
    assert rows["broken.mp4"]["status"] == "failed" and "broken.mp4: frame " in rows["broken.mp4"]["error"]
    assert "did not decode" in rows["broken.mp4"]["error"]
    assert rows["empty.mp4"]["status"] == "failed" and "empty.mp4" in rows["empty.mp4"]["error"]
    assert sorted(p.name for p in out.iterdir() if p.name != "_reports") == ["good.mp4"]
