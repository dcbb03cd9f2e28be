"""The bucket job's videos: one video, many actors (:mod:`srcore.video` does the work, as for ``srcore upscale``).

1. :func:`plan_segments` (CPU tasks): each video is probed (its packets read, not decoded) and cut at keyframes
   into segments of about ``--video-segment-seconds``. A segment whose part an earlier run left finished (same
   input version, model, scale and video options: the part's own record says) is reused.
2. :class:`SegmentWorker` (the actor pool, on GPUs where the cluster has them): any actor upscales any segment
   into a part, uploaded atomically to ``<output>/_reports/video-parts/<video>/part-NNNNN.mp4``.
3. :func:`join_videos` (CPU tasks): a video whose parts are all there is joined without re-encoding (audio
   and subtitles copied from the input) and written atomically to its output key; its parts are then removed.
   A video with a missing part gets a failed report row naming the segment; a rerun redoes only that part.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from srcore.provenance import Provenance
from srcore.video import (
    VIDEO_SUFFIXES,
    Segment,
    SegmentResult,
    VideoError,
    check_container,
    is_video_output_of,
    join_parts,
    output_suffix,
    probe,
    upscale_segment,
)
from srcore.video import plan_segments as cut_at_keyframes

from ..faults import die_if_marked
from ..pages import PageFile
from ..storage import retries_counted, shared_store
from .options import REPORT_FOLDER, UpscaleJob
from .rows import REPORT_SCHEMA, table_of

PARTS_FOLDER = f"{REPORT_FOLDER}/video-parts"
SCRATCH_PREFIX = ".srcore-video-"  # then the writing process's pid (stages.remove_dead_scratch's rule)
SEGMENT_SCHEMA = pa.schema([
    ("input", pa.string()), ("output", pa.string()), ("input_key", pa.string()), ("output_key", pa.string()),
    ("input_version", pa.string()), ("input_bytes", pa.int64()), ("model", pa.string()), ("scale", pa.float32()),
    ("run", pa.string()), ("status", pa.string()), ("error", pa.string()),
    ("segment", pa.int32()), ("segments", pa.int32()), ("start", pa.int64()), ("end", pa.int64()),
    ("first_frame", pa.int32()), ("frames", pa.int32()), ("video_frames", pa.int32()),
    ("duration_s", pa.float32()), ("input_width", pa.int32()), ("input_height", pa.int32()),
    ("input_format", pa.string()), ("part_key", pa.string()), ("read_s", pa.float32()), ("upscale_s", pa.float32()),
    ("write_s", pa.float32()), ("node", pa.string()), ("device", pa.string()), ("store_retries", pa.int32()),
])


def parts_prefix(job: UpscaleJob, row: dict) -> str:
    """Where a video's parts go: one folder per output, input version, model, scale and video options, so a
    changed input or option never reuses a part made for another."""
    o = job.output_options
    identity = "\0".join(str(v) for v in (row["output_key"], row["input_version"], row["model"], row["scale"],
                                          o.video_codec, o.crf, o.outscale, job.video_segment_seconds))
    digest = hashlib.sha256(identity.encode()).hexdigest()[:24]
    return f"{shared_store(job.output).root}/{PARTS_FOLDER}/{digest}"


def plan_segments(batch: pa.Table, job: UpscaleJob) -> pa.Table:
    """CPU task: manifest rows of videos -> one row per segment to upscale ("todo"), or already made by an
    earlier run ("reused"); a video that is finished ("skipped") or cannot be read ("failed") keeps one row."""
    source, target = shared_store(job.input), shared_store(job.output)
    out = []
    for row in batch.to_pylist():
        row.update(error=None)
        with retries_counted(row):
            out += _segments_of(row, job, source, target)
    return table_of(out, SEGMENT_SCHEMA)


def _segments_of(row: dict, job: UpscaleJob, source, target) -> list[dict]:
    t0 = time.perf_counter()
    try:
        if row["status"] == "exists" and not job.overwrite:
            with target.open_read(row["output_key"]) as file:
                if is_video_output_of(file, row["input_version"], row["model"], row["scale"]):
                    return [dict(row, status="skipped", segment=-1)]
        with source.open_read(row["input_key"]) as file:
            check_container(file, row["input"], output_suffix(row["output_key"]), job.output_options)
            info = probe(file, row["input"])
    except VideoError as exc:
        return [dict(row, status="failed", segment=-1, error=str(exc))]
    except Exception as exc:  # the store refused the read: recorded, the job goes on
        return [dict(row, status="failed", segment=-1, error=f"{row['input']}: cannot read ({type(exc).__name__}: "
                                                             f"{exc})")]
    segments = cut_at_keyframes(info, job.video_segment_seconds)
    prefix = parts_prefix(job, row)
    fields = dict(row, segments=len(segments), video_frames=info.frames, duration_s=info.duration_s,
                  input_width=info.width, input_height=info.height, input_format=info.codec,
                  read_s=time.perf_counter() - t0)
    rows = []
    for s in segments:
        part_key = f"{prefix}/part-{s.index:05d}.mp4"
        rows.append(dict(fields, segment=s.index, start=s.start, end=s.end, first_frame=s.first_frame,
                         frames=s.frames, part_key=part_key, status=_part_status(target, part_key, row, s)))
    return rows


def _part_status(target, part_key: str, row: dict, segment: Segment) -> str:
    """"reused" when an earlier run finished this part (its record matches), else "todo"."""
    if not (target.exists(part_key) and target.exists(part_key + ".json")):
        return "todo"
    record = SegmentResult.from_json(target.read(part_key + ".json"))
    same = (record is not None and record.index == segment.index and record.frames == segment.frames
            and record.source_version == row["input_version"] and record.model == row["model"]
            and f"{record.scale:g}" == f"{row['scale']:g}")
    return "reused" if same else "todo"


def _segment(row: dict) -> Segment:
    return Segment(row["segment"], row["start"], row["end"], row["first_frame"], row["frames"], row["video_frames"])


class SegmentWorker:
    """Ray Data actor: upscale segments (any video's) into their parts, each uploaded atomically."""

    def __init__(self, job: UpscaleJob, model_ref: list, use_gpu: bool):
        from .stages import actor_upscaler, remove_dead_scratch

        self.job = job
        self.upscaler, self.device = actor_upscaler(job, model_ref, use_gpu)
        self.source, self.target = shared_store(job.input), shared_store(job.output)
        remove_dead_scratch(prefix=SCRATCH_PREFIX)

    def __call__(self, batch: pa.Table) -> pa.Table:
        from .stages import worker_node

        rows = batch.to_pylist()
        for row in rows:
            if row["status"] != "todo":
                continue
            die_if_marked("upscale", f"{row['input']}#segment={row['segment']}")
            row.update(node=worker_node(), device=self.device)
            with retries_counted(row):
                self._upscale(row)
        return table_of(rows, SEGMENT_SCHEMA)

    def _upscale(self, row: dict) -> None:
        fd, scratch = tempfile.mkstemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", suffix=".mp4")
        os.close(fd)
        stage = "upscale"
        try:
            t0 = time.perf_counter()
            provenance = Provenance(row["model"], row["scale"], row["input"], row["input_version"], row["run"])
            with self.source.open_read(row["input_key"]) as file:
                result = upscale_segment(self.upscaler, file, row["input"], _segment(row), scratch,
                                         self.job.output_options, provenance)
            t1 = time.perf_counter()
            stage = "write"
            with self.target.open_atomic(row["part_key"]) as out, open(scratch, "rb") as made:
                shutil.copyfileobj(made, out, 16 << 20)
            self.target.write_atomic(row["part_key"] + ".json", result.to_json())  # the part is finished
            row.update(status="ok", upscale_s=t1 - t0, write_s=time.perf_counter() - t1, frames=result.frames)
            print(f"[srcore] {row['input']}: segment {row['segment'] + 1}/{row['segments']} ({result.frames} frames, "
                  f"{result.frames / max(t1 - t0, 1e-9):.2f} frames/s)", flush=True)
        except VideoError as exc:
            row.update(status="failed", error=str(exc))
        except Exception as exc:
            row.update(status="failed", error=f"{row['input']}: segment {row['segment'] + 1}: cannot {stage} "
                                              f"({type(exc).__name__}: {exc})")
        finally:
            os.remove(scratch)


def join_videos(batch: pa.Table, job: UpscaleJob) -> pa.Table:
    """CPU task: the segment rows of whole videos (every row of a video in one batch) -> one report row each."""
    source, target = shared_store(job.input), shared_store(job.output)
    by_video: dict[str, list[dict]] = {}
    for row in batch.to_pylist():
        by_video.setdefault(row["input"], []).append(row)
    return table_of([_join(rows, job, source, target) for rows in by_video.values()], REPORT_SCHEMA)


def _join(rows: list[dict], job: UpscaleJob, source, target) -> dict:
    rows.sort(key=lambda r: r["segment"])
    first = rows[0]
    report = {k: first.get(k) for k in REPORT_SCHEMA.names if k in first}
    report.update(output_format=output_suffix(first["output_key"])[1:].upper(), error=None,
                  segments=first["segments"], frames=first["video_frames"])
    if first["status"] in ("skipped", "failed") and first["segment"] == -1:
        return dict(report, status=first["status"], error=first["error"])
    failed = [r for r in rows if r["status"] == "failed"]
    missing = sorted(set(range(first["segments"])) - {r["segment"] for r in rows if r["status"] in ("ok", "reused")})
    if failed or missing:
        errors = [r["error"] for r in failed] or [f"{first['input']}: segment {missing[0] + 1} of {first['segments']}"
                                                  " was not upscaled (its worker died)"]
        return dict(report, status="failed", error="; ".join(errors)[:2000],
                    failed_segments=len(missing))
    t0 = time.perf_counter()
    scratch = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")
    try:
        parts, results = [], []
        for r in rows:
            local = os.path.join(scratch, f"part-{r['segment']:05d}.mp4")
            with target.open_read(r["part_key"]) as part, open(local, "wb") as copy:
                shutil.copyfileobj(part, copy, 16 << 20)
            record = SegmentResult.from_json(target.read(r["part_key"] + ".json"))
            if record is None:
                raise VideoError(f"{first['input']}: segment {r['segment'] + 1}: its part is not readable")
            parts.append(local)
            results.append(record)
        provenance = Provenance(first["model"], first["scale"], first["input"], first["input_version"], first["run"])
        joined = os.path.join(scratch, "joined" + output_suffix(first["output_key"]))
        with source.open_read(first["input_key"]) as file:
            video = join_parts(parts, results, file, first["input"], joined, output_suffix(first["output_key"]),
                               provenance)
        with target.open_atomic(first["output_key"]) as out, open(joined, "rb") as made:
            shutil.copyfileobj(made, out, 16 << 20)
            size = out.tell()
        for r in rows:  # the output is whole: its parts are not needed again (one left is only litter)
            with contextlib.suppress(Exception):
                target.delete(r["part_key"] + ".json")
                target.delete(r["part_key"])
        if target.local:  # (object stores have no folders to leave behind)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(first["part_key"]))
    except Exception as exc:
        message = str(exc) if first["input"] in str(exc) else f"{first['input']}: {exc}"
        return dict(report, status="failed", error=f"cannot join its parts: {message} ({type(exc).__name__})")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    upscale_s = sum(r.seconds for r in results)
    return dict(report, status="ok", output_bytes=size, output_width=video.size[0], output_height=video.size[1],
                output_mode="RGB", frames=video.frames, duration_s=video.duration_s, segments=video.segments,
                frames_per_s=video.frames_per_second, flicker=video.flicker, upscale_s=upscale_s,
                write_s=time.perf_counter() - t0, failed_segments=0,
                device=next((r["device"] for r in rows if r.get("device")), None))


def video_actors(job: UpscaleJob, resources: dict[str, float], segments: int) -> tuple[float, float, int]:
    """(GPUs, CPUs, actors) of the segment pool: one actor per GPU where the cluster has GPUs, else one per
    ``--cpus-per-actor`` CPUs (each decodes, upscales and encodes its segment), never more than segments."""
    gpus = job.num_gpus_per_actor
    if gpus is None:
        gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
    most = job.max_actors or (int(resources.get("GPU", 0) / gpus) if gpus else
                              int(resources.get("CPU", 1) / job.cpus_per_actor))
    return gpus, job.cpus_per_actor, max(1, min(most, segments))


_VIDEO_KEY = "(?i)(" + "|".join(re.escape(s) for s in VIDEO_SUFFIXES) + ")$"


def split_videos(todo: PageFile, folder: str) -> tuple[PageFile, PageFile]:
    """The plan's rows to do, as (images, videos), a page at a time."""
    images = PageFile(os.path.join(folder, "images.arrow"), todo.schema)
    videos = PageFile(os.path.join(folder, "videos.arrow"), todo.schema)
    for page in todo.pages():
        video = pc.match_substring_regex(page.column("input_key"), _VIDEO_KEY)
        images.write(page.filter(pc.invert(video)))
        videos.write(page.filter(video))
    images.close()
    videos.close()
    return images, videos


def process_videos(job: UpscaleJob, model_ref: list, videos: PageFile, resources: dict[str, float]
                   ) -> Iterator[pa.Table]:
    """The videos of the run, a page at a time: segments planned on CPU tasks, upscaled on the actor pool,
    joined on CPU tasks; report rows out (one per video)."""
    import ray
    from ray.data import ActorPoolStrategy

    from ..cluster import no_remote_args_warning
    from .stages import WORKER_RETRIES

    for page in videos.pages():
        blocks = [page.slice(i, 1) for i in range(page.num_rows)]  # one video a task: probing reads it whole
        with no_remote_args_warning():
            planned = ray.data.from_arrow(blocks).map_batches(
                plan_segments, batch_format="pyarrow", batch_size=None, num_cpus=1, fn_kwargs={"job": job},
                max_retries=WORKER_RETRIES)
            planned = pa.concat_tables([b for b in planned.iter_batches(batch_format="pyarrow", batch_size=None)]
                                       or [SEGMENT_SCHEMA.empty_table()])
        todo = planned.filter(pc.equal(planned.column("status"), "todo"))
        reused = pc.sum(pc.equal(planned.column("status"), "reused")).as_py() or 0
        gpus, cpus, actors = video_actors(job, resources, todo.num_rows)
        print(f"[srcore] {page.num_rows} videos: {todo.num_rows} segments to upscale on {actors} "
              f"{f'{gpus:g}-GPU' if gpus else f'{cpus:g}-CPU'} actors, {reused} made by an earlier run", flush=True)
        done = [planned.filter(pc.not_equal(planned.column("status"), "todo"))]
        if todo.num_rows:
            # longest first, one segment a block, so the pool drains evenly and any actor takes any segment
            todo = todo.sort_by([("frames", "descending")])
            with no_remote_args_warning():
                upscaled = ray.data.from_arrow([todo.slice(i, 1) for i in range(todo.num_rows)]).map_batches(
                    SegmentWorker, batch_format="pyarrow", batch_size=1, num_gpus=gpus, num_cpus=cpus,
                    max_task_retries=WORKER_RETRIES,
                    compute=ActorPoolStrategy(min_size=min(job.min_actors, actors), max_size=actors,
                                              initial_size=actors, max_tasks_in_flight_per_actor=1),
                    fn_constructor_kwargs={"job": job, "model_ref": model_ref, "use_gpu": gpus > 0})
                done += list(upscaled.iter_batches(batch_format="pyarrow", batch_size=None))
            answered = {(r["input"], r["segment"]) for t in done[1:]
                        for r in t.select(["input", "segment"]).to_pylist()}
            lost = [dict(r, status="lost") for r in todo.to_pylist() if (r["input"], r["segment"]) not in answered]
            done.append(table_of(lost, SEGMENT_SCHEMA))  # their actors died on every try: the video fails
        segments = pa.concat_tables(done).sort_by([("input", "ascending"), ("segment", "ascending")])
        names = segments.column("input")
        groups = [segments.filter(pc.equal(names, name)) for name in pc.unique(names).to_pylist()]
        with no_remote_args_warning():
            joined = ray.data.from_arrow(groups).map_batches(
                join_videos, batch_format="pyarrow", batch_size=None, num_cpus=1, fn_kwargs={"job": job},
                max_retries=WORKER_RETRIES)
            yield from joined.iter_batches(batch_format="pyarrow", batch_size=None)
