"""Upscale every image under a prefix with Ray Data: list, read and decode on CPU tasks, upscale, encode and
write on an actor pool (GPUs when the cluster has them), and report on every input.

    manifest (driver) -> read_and_decode (CPU tasks) -> UpscaleWriter (actor pool) -> report rows (driver)

Only the decoded inputs travel through the object store: outputs are encoded and written inside the actor,
on a thread pool that overlaps the next forward passes, and a small report row comes back per input.

Reruns resume: each output carries its input's etag (or mtime), the model id and scale in its XMP, and is
written atomically, so an output that exists with matching provenance is finished and skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import time
import traceback
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa

from srcore.archs.registry import DEFAULT_MODEL, VARIANTS
from srcore.imageio import (
    DEFAULT_MAX_PIXELS,
    FORMATS,
    IMAGE_SUFFIXES,
    ImageDecodeError,
    Picture,
    Provenance,
    decode,
    encode,
    read_provenance,
    to_8bit,
)

from .keys import output_format, plan_outputs
from .storage import Store, is_uri, join

REPORT_FOLDER = "_reports"  # beside the outputs; never listed as output or input images
PROVENANCE_PROBE_BYTES = 1 << 16


@dataclass(frozen=True)
class UpscaleJob:
    """Everything one run of the bucket job needs; every field has a command-line flag of the same name.

    Attributes:
        input, output: URIs (``s3://bucket/prefix``, ``gs://...``) or local folders.
        model: registered name (``srcore models``) or weights file; default: the bundled model.
        outscale: final scale (default: the model's).
        format: ``png``, ``jpg``, ``webp``, ``tiff``; default: the input's (PNG for formats srcore cannot write).
        quality: JPEG/WebP quality; png_compression: zlib level (1, as OpenCV and Real-ESRGAN write, is about
            twice as fast as 6 for files about 15% larger: encoding 16x outputs is often the pipeline's limit).
        tile, tile_overlap, batch_size, precision: the engine's (``srcore.Upscaler``).
        images_per_batch: images per actor call; similar sizes share forward passes.
        num_gpus_per_actor: GPUs per upscaling actor; None: 1 when the cluster has GPUs, else CPU actors.
        cpus_per_actor: CPUs per actor (CPU actors use them as torch threads).
        min_actors, max_actors: the actor pool's autoscaling bounds (max default: one per GPU, or half the CPUs).
        overwrite: redo inputs whose outputs are finished.
        max_input_pixels: refuse larger inputs before decoding (decompression bombs).
        extensions: input file suffixes.
        limit: the first N inputs (sorted by key); sample: N inputs drawn at random (``seed``).
        report: where the report goes (default ``<output>/_reports/<run id>``).
        previews: before/after crops in report.html.
        io_threads: encode-and-write threads per actor.
        actor_concurrency: batches an actor works on at once (default: 2 on GPUs, so that writing one batch
            overlaps upscaling the next; 1 on CPUs).
    """

    input: str
    output: str
    model: str = DEFAULT_MODEL
    outscale: float | None = None
    format: str | None = None
    quality: int = 95
    png_compression: int = 1
    alpha: str = "bicubic"
    tile: int | str | None = "auto"
    tile_overlap: int | None = None
    batch_size: int = 4
    precision: str = "auto"
    images_per_batch: int = 8
    num_gpus_per_actor: float | None = None
    cpus_per_actor: float = 1
    min_actors: int = 1
    max_actors: int | None = None
    overwrite: bool = False
    max_input_pixels: int | None = DEFAULT_MAX_PIXELS
    extensions: tuple[str, ...] = IMAGE_SUFFIXES
    limit: int | None = None
    sample: int | None = None
    seed: int = 0
    report: str | None = None
    previews: int = 6
    io_threads: int = 4
    actor_concurrency: int | None = None
    run_id: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
                        + "-" + uuid.uuid4().hex[:6])

    def __post_init__(self):
        checks = [
            (self.outscale is None or self.outscale > 0, "outscale", "must be > 0"),
            (self.format is None or self.format.lower() in FORMATS, "format", f"must be one of {sorted(FORMATS)}"),
            (1 <= self.quality <= 100, "quality", "must be in 1..100"),
            (0 <= self.png_compression <= 9, "png-compression", "must be in 0..9"),
            (self.alpha in ("bicubic", "network"), "alpha", "must be 'bicubic' or 'network'"),
            (self.batch_size >= 1, "batch-size", "must be >= 1"),
            (self.images_per_batch >= 1, "images-per-batch", "must be >= 1"),
            (self.precision in ("auto", "fp32", "fp16", "bf16"), "precision", "must be auto, fp32, fp16 or bf16"),
            (self.num_gpus_per_actor is None or self.num_gpus_per_actor >= 0, "num-gpus-per-actor", "must be >= 0"),
            (self.cpus_per_actor > 0, "cpus-per-actor", "must be > 0"),
            (self.min_actors >= 1, "min-actors", "must be >= 1"),
            (self.max_actors is None or self.max_actors >= self.min_actors, "max-actors", "must be >= min-actors"),
            (self.max_input_pixels is None or self.max_input_pixels > 0, "max-input-pixels", "must be > 0"),
            (self.limit is None or self.limit >= 0, "limit", "must be >= 0"),
            (self.sample is None or self.sample >= 0, "sample", "must be >= 0"),
            (self.io_threads >= 1, "io-threads", "must be >= 1"),
            (self.actor_concurrency is None or self.actor_concurrency >= 1, "actor-concurrency", "must be >= 1"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise ValueError(f"--{name} {rule}, got {getattr(self, name.replace('-', '_'))!r}")
        if _inside(self.input, self.output) and _inside(self.output, self.input):
            raise ValueError("--output must differ from --input (outputs would replace the originals)")

    @property
    def report_location(self) -> str:
        return self.report or join(self.output, REPORT_FOLDER, self.run_id)


def _inside(parent: str, child: str) -> bool:
    p = parent.rstrip("/") if is_uri(parent) else str(Path(parent).resolve())
    c = child.rstrip("/") if is_uri(child) else str(Path(child).resolve())
    return c == p or c.startswith(p + "/")


def model_id(model: str) -> str:
    """A stable name for the model in outputs and reports: the registered name, or file name @ content hash."""
    if model in VARIANTS and not Path(model).exists():
        return model
    digest = hashlib.sha256(Path(model).read_bytes()).hexdigest()[:12]
    return f"{Path(model).name}@{digest}"


# --------------------------------------------------------------------------- the report rows

REPORT_SCHEMA = pa.schema([
    ("input", pa.string()), ("output", pa.string()), ("status", pa.string()), ("error", pa.string()),
    ("input_version", pa.string()), ("input_bytes", pa.int64()), ("input_width", pa.int32()),
    ("input_height", pa.int32()), ("input_mode", pa.string()), ("input_format", pa.string()),
    ("output_bytes", pa.int64()), ("output_width", pa.int32()), ("output_height", pa.int32()),
    ("output_mode", pa.string()), ("output_format", pa.string()), ("model", pa.string()), ("scale", pa.float32()),
    ("lr_psnr", pa.float32()), ("read_s", pa.float32()), ("decode_s", pa.float32()), ("upscale_s", pa.float32()),
    ("encode_s", pa.float32()), ("write_s", pa.float32()),
    ("check_s", pa.float32()), ("node", pa.string()), ("device", pa.string()),
    ("run", pa.string()),
])
# what the driver plans: one row per input of this run
MANIFEST_SCHEMA = pa.schema([
    ("input", pa.string()), ("output", pa.string()), ("input_key", pa.string()), ("output_key", pa.string()),
    ("input_version", pa.string()), ("input_bytes", pa.int64()), ("model", pa.string()), ("scale", pa.float32()),
    ("run", pa.string()), ("output_format", pa.string()), ("status", pa.string()), ("preview", pa.bool_()),
])
PREVIEW_FIELDS = [("preview_before", pa.binary()), ("preview_after", pa.binary())]
# what flows from the decode tasks to the actors: the report columns so far, and the decoded picture
DECODED_SCHEMA = pa.schema(list(REPORT_SCHEMA) + [
    ("output_key", pa.string()), ("preview", pa.bool_()), ("pixels", pa.large_binary()), ("dtype", pa.string()),
    ("shape", pa.list_(pa.int32())), ("source_mode", pa.string()), ("icc_profile", pa.binary()),
    ("exif", pa.binary()), ("text", pa.string()),
])
OUTPUT_SCHEMA = pa.schema(list(REPORT_SCHEMA) + PREVIEW_FIELDS)


def _table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)


# --------------------------------------------------------------------------- planning (driver)


@dataclass
class Manifest:
    rows: list[dict]  # one per input to handle in this run
    listed: int  # inputs found under the prefix


def plan(job: UpscaleJob, model: str, scale: float | None = None) -> Manifest:
    """List inputs and finished-looking outputs, pick the subset (limit/sample), assign output keys."""
    source, target = _store(job.input), _store(job.output)
    exclude = (target.root,) if _inside(job.input, job.output) else ()
    entries = source.list(job.extensions, exclude=exclude)
    listed = len(entries)
    keys = plan_outputs([e.relative for e in entries], job.format)
    if job.sample is not None and job.sample < len(entries):
        entries = sorted(random.Random(job.seed).sample(entries, job.sample), key=lambda e: e.path)
    if job.limit is not None:
        entries = entries[: job.limit]
    existing = _existing_outputs(target)
    rows = []
    for e in entries:
        key = keys[e.relative]
        out_path = f"{target.root}/{key}"
        rows.append({
            "input": source.uri(e.path), "output": target.uri(out_path), "output_key": out_path, "input_key": e.path,
            "input_version": e.version, "input_bytes": e.size, "model": model, "scale": scale, "run": job.run_id,
            "output_format": output_format(e.relative, job.format), "status": "exists" if out_path in existing else "",
        })
    # similar sizes next to each other, so actor batches hold images that share forward passes
    rows.sort(key=lambda r: (r["input_bytes"], r["input"]))
    todo = [i for i, r in enumerate(rows) if not r["status"]]
    if job.previews:  # spread over the size range
        for i in todo[:: max(1, len(todo) // job.previews)][: job.previews]:
            rows[i]["preview"] = True
    return Manifest(rows, listed)


STALE_TEMPORARY_S = 6 * 3600  # a temporary upload this old belongs to a write that died (a killed run)


def _existing_outputs(target: Store) -> set[str]:
    """Paths under the output prefix (one listing), deleting the ``.name.<id>.tmp`` uploads of killed runs.

    Recent temporaries are kept: they may belong to a run in progress.
    """
    try:
        entries = target.list(extensions=None, hidden=None)
    except FileNotFoundError:
        return set()
    cutoff_ns = (time.time() - STALE_TEMPORARY_S) * 1e9
    existing = set()
    for entry in entries:
        if not entry.path.rsplit("/", 1)[-1].startswith("."):
            existing.add(entry.path)
        elif entry.path.endswith(".tmp") and 0 < entry.mtime_ns < cutoff_ns:
            try:
                target.delete(entry.path)
            except OSError:
                pass
    return existing


@lru_cache(maxsize=8)
def _store(location: str) -> Store:
    return Store(location)


# --------------------------------------------------------------------------- read and decode (CPU tasks)


FAULT_ENV = "SRCORE_INJECT_WORKER_DEATH"


def _inject_worker_death(stage: str, key: str) -> None:
    """Test-only fault injection: ``SRCORE_INJECT_WORKER_DEATH=decode:marker,upscale:other`` ends the worker
    process (as an out-of-memory kill would) whenever that stage handles an input whose key holds the marker."""
    for spec in os.environ.get(FAULT_ENV, "").split(","):
        want, _, marker = spec.partition(":")
        if want == stage and marker and marker in key:
            os._exit(137)


def read_and_decode(batch: pa.Table, job: UpscaleJob) -> pa.Table:
    """Manifest rows -> rows with decoded pixels (status "todo"), or finished ones ("skipped", "failed")."""
    source, target = _store(job.input), _store(job.output)
    out = []
    for row in batch.to_pylist():
        _inject_worker_death("decode", row["input"])
        row.update(node=_node(), status=row["status"] or "todo")
        try:
            if row["status"] == "exists":
                if not job.overwrite and output_is_finished(target, row):
                    row["status"] = "skipped"
                    out.append(row)
                    continue
                row["status"] = "todo"
            t0 = time.perf_counter()
            data = source.read(row["input_key"])
            t1 = time.perf_counter()
            picture = decode(data, row["input"], job.max_input_pixels)
            row.update(read_s=t1 - t0, decode_s=time.perf_counter() - t1, input_bytes=len(data),
                       input_width=picture.size[0], input_height=picture.size[1], input_mode=picture.mode,
                       input_format=picture.format, pixels=picture.pixels.tobytes(), dtype=picture.pixels.dtype.str,
                       shape=list(picture.pixels.shape), source_mode=picture.source_mode,
                       icc_profile=picture.icc_profile, exif=picture.exif, text=json.dumps(picture.text))
        except ImageDecodeError as exc:
            row.update(status="failed", error=str(exc))
        except Exception as exc:  # the store refused the read, or an unforeseen error: recorded, the job goes on
            row.update(status="failed", error=f"{row['input']}: cannot read ({type(exc).__name__}: {exc})")
        out.append(row)
    return _table(out, DECODED_SCHEMA)


def output_is_finished(target: Store, row: dict) -> bool:
    """Does the output carry this input's version, this model and scale (written by any earlier run)?

    An output that cannot be read back counts as unfinished: it is made again.
    """
    want = {"sourceVersion": row["input_version"], "model": row["model"], "scale": f"{row['scale']:g}"}
    path, probe = row["output_key"], PROVENANCE_PROBE_BYTES
    try:
        size = target.size(path)
        found = read_provenance(target.read(path, 0, min(size, probe)))
        if not found and size > probe:  # WebP and some TIFFs keep XMP at the end
            found = read_provenance(target.read(path, max(0, size - probe), size))
        if not found and size > 2 * probe:
            found = read_provenance(target.read(path))
    except OSError:
        return False
    if all(found.get(k) == v for k, v in want.items()):
        row["output_bytes"] = size
        return True
    return False


@lru_cache(maxsize=1)
def _node() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:
        return socket.gethostname()


# --------------------------------------------------------------------------- upscale, encode, write (actors)


class UpscaleWriter:
    """Ray Data actor: upscale decoded rows, encode and write each output on a thread pool, return report rows.

    The model arrives through the object store (one copy per node, whatever file or name it came from).
    """

    def __init__(self, job: UpscaleJob, model_ref: list, use_gpu: bool):
        import ray
        import torch

        from srcore.inference import Upscaler

        self.job = job
        model = ray.get(model_ref[0])
        if use_gpu and torch.cuda.is_available():
            device = "cuda"
        else:
            device = "cpu"
            torch.set_num_threads(max(1, int(job.cpus_per_actor)))
        self.upscaler = Upscaler(model, device=device, precision=job.precision, tile=job.tile,
                                 tile_overlap=job.tile_overlap, batch_size=job.batch_size)
        self.device = torch.cuda.get_device_name() if device == "cuda" else f"cpu x{torch.get_num_threads()}"
        self.target = _store(job.output)
        self.pool = ThreadPoolExecutor(max_workers=job.io_threads, thread_name_prefix="srcore-write")

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        done: list[dict] = [r for r in rows if r["status"] != "todo"]
        todo = [r for r in rows if r["status"] == "todo"]
        # equal shapes upscale together (forward passes shared); each group's writes overlap the next group
        groups: dict[tuple, list[dict]] = {}
        for r in todo:
            groups.setdefault((tuple(r["shape"]), r["dtype"]), []).append(r)
        futures: list[tuple[dict, Future]] = []
        for group in groups.values():
            for r in group:
                _inject_worker_death("upscale", r["input"])
            pictures = [_picture(r) for r in group]
            t0 = time.perf_counter()
            try:
                upscaled = self.upscaler.upscale_many([p.pixels for p in pictures], self.job.alpha, self.job.outscale)
            except Exception:  # one bad image must not fail the group: retry one by one
                upscaled = [self._upscale_one(r, p) for r, p in zip(group, pictures, strict=True)]
            seconds = (time.perf_counter() - t0) / len(group)
            for r, picture, pixels in zip(group, pictures, upscaled, strict=True):
                r.pop("pixels")
                if pixels is None:
                    done.append(r)
                    continue
                r.update(upscale_s=seconds, device=self.device, node=_node())
                futures.append((r, self.pool.submit(self._finish, r, picture, pixels)))
        for r, fut in futures:
            fut.result()  # _finish records its own errors in the row
            done.append(r)
        return _table(done, OUTPUT_SCHEMA)

    def _upscale_one(self, row: dict, picture: Picture) -> np.ndarray | None:
        try:
            return self.upscaler.upscale_pixels(picture.pixels, self.job.alpha, self.job.outscale)
        except Exception as exc:
            row.update(status="failed", error=f"{row['input']}: upscaling failed ({type(exc).__name__}: {exc})")
            return None

    def _finish(self, row: dict, source: Picture, pixels: np.ndarray) -> None:
        """Encode and write one output, then its quality figures; fills the row's output fields, or its error."""
        stage = "encode"
        try:
            t0 = time.perf_counter()
            output = replace(source, pixels=pixels)
            provenance = Provenance(row["model"], row["scale"], row["input"], row["input_version"], row["run"])
            data = encode(output, row["output_format"], self.job.quality, provenance,
                          png_compression=self.job.png_compression)
            t1 = time.perf_counter()
            stage = "write"
            self.target.write_atomic(row["output_key"], data)
            row.update(status="ok", encode_s=t1 - t0, write_s=time.perf_counter() - t1, output_bytes=len(data),
                       output_width=output.size[0], output_height=output.size[1], output_mode=output.mode)
        except Exception as exc:
            row.update(status="failed", error=f"{row['output']}: cannot {stage} output ({type(exc).__name__}: {exc})")
            if not isinstance(exc, (OSError, ValueError)):
                row["error"] += "\n" + traceback.format_exc(limit=3)
            return
        # the output is written: a failing quality figure leaves it empty, never fails the row
        t2 = time.perf_counter()
        try:
            row["lr_psnr"] = lr_consistency(source.pixels, pixels, row["scale"])
            if row.get("preview"):
                row["preview_before"], row["preview_after"] = preview_pair(source.pixels, pixels)
        except Exception:
            pass
        row["check_s"] = time.perf_counter() - t2


def _picture(row: dict) -> Picture:
    pixels = np.frombuffer(row["pixels"], dtype=np.dtype(row["dtype"])).reshape(row["shape"])
    return Picture(pixels, row["source_mode"], row["icc_profile"], row["exif"], row["input_format"],
                   json.loads(row["text"] or "{}"))


def lr_consistency(lr: np.ndarray, sr: np.ndarray, scale: float) -> float | None:
    """PSNR (dB, Y channel) of the output downscaled by MATLAB bicubic against the input: high means faithful.

    Y is taken before downscaling (both are linear, so this equals downscaling RGB first, up to rounding) to
    resize one plane instead of three. Alpha is ignored; 16-bit pixels are compared on the 8-bit scale.
    None for outputs too small to downscale.
    """
    import torch

    from srcore.metrics import to_y_torch
    from srcore.resize import imresize_torch

    if min(sr.shape[:2]) < 4:
        return None
    top = 65535.0 if sr.dtype == np.uint16 else 255.0

    def y_plane(pixels: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(pixels[..., :3] if pixels.shape[2] >= 3 else pixels[..., :1], np.float32))
        return to_y_torch(x.permute(2, 0, 1)[None] / top)

    with torch.inference_mode():
        down = imresize_torch(y_plane(sr), 1.0 / scale)
        ref = y_plane(lr)
        h, w = min(down.shape[2], ref.shape[2]), min(down.shape[3], ref.shape[3])
        mse = float(((down[..., :h, :w] - ref[..., :h, :w]) ** 2).mean())
    return 10 * float(np.log10(255.0**2 / max(mse, 1e-10)))


def preview_pair(lr: np.ndarray, sr: np.ndarray, size: int = 48) -> tuple[bytes, bytes]:
    """PNG crops for the report: the input's busiest size x size region (nearest-upscaled) and the output's."""
    from PIL import Image

    lr8, sr8 = to_8bit(lr), to_8bit(sr)
    s_y, s_x = sr8.shape[0] / lr8.shape[0], sr8.shape[1] / lr8.shape[1]
    size = min(size, lr8.shape[0], lr8.shape[1])
    gray = lr8[..., :3].mean(axis=2) if lr8.shape[2] >= 3 else lr8[..., 0].astype(np.float32)
    best, y0, x0 = -1.0, 0, 0
    step = max(1, size // 2)
    for y in range(0, lr8.shape[0] - size + 1, step):
        for x in range(0, lr8.shape[1] - size + 1, step):
            busy = float(np.var(np.diff(gray[y : y + size, x : x + size], axis=1)))
            if busy > best:
                best, y0, x0 = busy, y, x
    before = lr8[y0 : y0 + size, x0 : x0 + size]
    after = sr8[round(y0 * s_y) : round((y0 + size) * s_y), round(x0 * s_x) : round((x0 + size) * s_x)]
    show = (after.shape[1], after.shape[0])
    return _png(Image.fromarray(_rgb(before)).resize(show, Image.NEAREST)), _png(Image.fromarray(_rgb(after)))


def _rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., :1], 3, axis=2) if a.shape[2] <= 2 else a[..., :3]


def _png(im) -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- the run (driver)


@dataclass
class RunResult:
    summary: dict
    rows: pa.Table
    report: str  # where report.html and summary.json are


def run(job: UpscaleJob, progress: bool = True, connect=None) -> RunResult:
    """Run the job and write its report.

    ``connect``: called once the model loaded and the inputs are listed (so a bad name or prefix fails before
    any Ray starts) to join or start Ray; None when this process is already connected (``ray.init``).
    """
    import ray
    from ray.data import ActorPoolStrategy

    from srcore.weights import load_model

    from .report import summarize, write_report

    start = time.time()
    model = load_model(job.model)  # fails fast, before any listing, on a bad name or file
    name = model_id(job.model)
    manifest = plan(job, name, job.outscale or model.descriptor.scale)
    if connect is not None:
        connect()
    gpus = job.num_gpus_per_actor
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    max_actors = job.max_actors or _default_max_actors(gpus, job)
    min_actors = min(job.min_actors, max_actors)
    kind = f"{gpus:g}-GPU" if gpus else "CPU"
    print(f"[srcore] {manifest.listed} images under {job.input}; {len(manifest.rows)} in this run; "
          f"{kind} actors: {min_actors}..{max_actors}; model {name}", flush=True)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    # A block whose workers keep dying (out of memory, a native crash) is dropped instead of ending the run;
    # its inputs are retried one at a time below, so one poison input costs only its own row.
    ctx.max_errored_blocks = -1
    rows: list[pa.Table] = []
    if manifest.rows:
        model_ref = [ray.put(model)]

        def execute(manifest_rows: list[dict], per_block: int) -> None:
            blocks = [_table(manifest_rows[i : i + per_block], MANIFEST_SCHEMA)
                      for i in range(0, len(manifest_rows), per_block)]
            ds = ray.data.from_arrow(blocks)
            # Task-only arguments (retries of a decode task whose worker died) also keep Ray from fusing
            # decoding into the actors: it stays on CPU tasks, the actors only upscale and write.
            ds = ds.map_batches(read_and_decode, batch_format="pyarrow", batch_size=None, fn_kwargs={"job": job},
                                num_cpus=1, max_retries=WORKER_RETRIES)
            # Two calls at once per actor: one batch's outputs encode and upload on the thread pool while the
            # next batch is on the GPU (Upscaler is thread-safe). CPU actors run one: their threads are the
            # model's. A dead actor is restarted; its batch is retried WORKER_RETRIES times, then dropped.
            concurrency = job.actor_concurrency or (2 if gpus > 0 else 1)
            ds = ds.map_batches(
                UpscaleWriter, batch_format="pyarrow", batch_size=per_block, num_gpus=gpus,
                num_cpus=job.cpus_per_actor, max_concurrency=concurrency, max_task_retries=WORKER_RETRIES,
                compute=ActorPoolStrategy(min_size=min_actors, max_size=max_actors,
                                          max_tasks_in_flight_per_actor=2 * concurrency,
                                          enable_true_multi_threading=concurrency > 1),
                fn_constructor_kwargs={"job": job, "model_ref": model_ref, "use_gpu": gpus > 0},
            )
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                rows.append(batch)

        execute(manifest.rows, job.images_per_batch)
        lost = _without_rows(manifest.rows, rows)
        if lost:
            print(f"[srcore] {len(lost)} inputs were in batches whose workers died; retrying each alone",
                  flush=True)
            execute(lost, 1)
            rows.append(_table([dict(r, status="failed", error=f"{r['input']}: {WORKER_DIED}")
                                for r in _without_rows(lost, rows)], OUTPUT_SCHEMA))
    table = pa.concat_tables([t.select(OUTPUT_SCHEMA.names).cast(OUTPUT_SCHEMA) for t in rows]) if rows \
        else OUTPUT_SCHEMA.empty_table()
    summary = summarize(table, job, manifest.listed, time.time() - start)
    write_report(table, summary, job.report_location)
    return RunResult(summary, table.drop_columns([n for n, _ in PREVIEW_FIELDS]), job.report_location)


WORKER_RETRIES = 2  # retries of a batch whose worker (decode task or actor) died
WORKER_DIED = (f"the worker processing this input died {WORKER_RETRIES + 1} times, with the input alone in its batch "
               "(out of memory, or a crash in native code; the Ray logs say which)")


def _without_rows(manifest_rows: list[dict], tables: list[pa.Table]) -> list[dict]:
    """The manifest rows that no report row answers (their blocks were dropped)."""
    answered = {i for t in tables for i in t.column("input").to_pylist()}
    return [r for r in manifest_rows if r["input"] not in answered]


def _default_max_actors(gpus: float, job: UpscaleJob) -> int:
    import ray

    resources = ray.cluster_resources()
    if gpus > 0:
        return max(1, int(resources.get("GPU", 0) / gpus))
    # CPU actors: leave about half the CPUs to the decode tasks
    return max(1, int(resources.get("CPU", 1) / 2 / job.cpus_per_actor))

