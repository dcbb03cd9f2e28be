"""The workers' stages, in two layouts (``run.Layout``):

- **fused** (CPU actors): each actor reads, decodes, upscales, encodes, scores and writes its own batch, one
  core's whole work from file to file. Manifest rows go in and report rows come out; no pixels cross the
  object store, and every core runs the model between its own codec work, so nothing waits on another stage.
- **split** (GPU actors): :func:`read_and_decode` on CPU tasks -> :class:`UpscaleWriter` on the GPU ->
  :func:`encode_and_write` on CPU tasks. The codecs scale with the node's CPUs (Ray Data sizes both task
  pools), not with one actor's threads. Decoded and upscaled pixels cross the object store as uint8 (3 MB a
  1 MP output), JPEG inputs as their bytes: they decode on the GPU, JPEG outputs encode there
  (:mod:`srcore.gpu_codecs`) and the LR-consistency check runs there too, so the CPUs encode PNGs and write.

Both layouts run the same per-image functions (:func:`decode_row`, :func:`write_output`, the engine), so their
outputs are byte-identical to each other and to ``srcore upscale``'s.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
import traceback
from collections.abc import Iterator
from functools import lru_cache

import numpy as np
import pyarrow as pa

from srcore.geo import gdal_env, open_raster
from srcore.gpu_codecs import can_encode
from srcore.imageio import ImageDecodeError, Picture, decode
from srcore.invention import invention_share
from srcore.metrics import lr_consistency, lr_consistency_many
from srcore.provenance import Provenance
from srcore.upscale import (
    encode_jpegs_on_device,
    encode_output,
    image_format,
    raster_input,
    render_raster,
    stream_png,
    streams,
)

from ..faults import die_if_marked
from ..storage import retries_counted, shared_store
from .finished import output_is_finished
from .options import UpscaleJob
from .rows import DECODED_SCHEMA, REPORT_SCHEMA, UPSCALED_SCHEMA, table_of

WORKER_RETRIES = 2  # retries of a batch whose worker (decode task or actor) died
DECODED_PER_BLOCK = 8  # decoded pictures per block out of a decode task (Ray Data bundles them for the actor)


def read_and_decode(batch: pa.Table, job: UpscaleJob, per_block: int = 8, jpeg_bytes: bool = False
                    ) -> Iterator[pa.Table]:
    """The split layout's decode task: manifest rows -> rows with decoded pixels (status "todo"), or finished
    ones ("skipped", "failed"). ``jpeg_bytes``: JPEG inputs travel as their bytes, for the GPU to decode.

    Yields a table every ``per_block`` rows (at most DECODED_PER_BLOCK): a block of many rows never holds all
    its pictures.
    """
    source, target = shared_store(job.input), shared_store(job.output)
    out = []
    for row in batch.to_pylist():
        if len(out) >= min(per_block, DECODED_PER_BLOCK):
            yield table_of(out, DECODED_SCHEMA)
            out = []
        out.append(decode_row(row, job, source, target, jpeg_bytes=jpeg_bytes))
    if out:
        yield table_of(out, DECODED_SCHEMA)


def decode_row(row: dict, job: UpscaleJob, source, target, jpeg_bytes: bool = False, keep: bool = False,
               jpeg_pixels=None) -> dict:
    """Read and decode one manifest row in place (both layouts): its pixels and input fields, or its status
    "skipped" (finished by an earlier run) or "failed" (with the error); a raster gets its header only.
    ``jpeg_bytes``: a JPEG file is read, not decoded; the actor decodes it (on its GPU). ``keep``: the picture
    stays an object in the row (the fused layout's actor uses it at once) instead of bytes for the next stage.
    ``jpeg_pixels``: the engine's JPEG decoder (:attr:`srcore.inference.Upscaler.jpeg_pixels`), as the CLI uses."""
    die_if_marked("decode", row["input"])
    row.update(node=worker_node(), status=row["status"] or "todo")
    with retries_counted(row):
        _decode_row(row, job, source, target, jpeg_bytes, keep, jpeg_pixels)
    return row


def _decode_row(row: dict, job: UpscaleJob, source, target, jpeg_bytes: bool, keep: bool, jpeg_pixels) -> None:
    try:
        if row["status"] == "exists":
            if not job.overwrite and output_is_finished(target, row):
                row["status"] = "skipped"
                return
            row["status"] = "todo"
        t0 = time.perf_counter()
        if _read_raster_header(row, source):
            row["read_s"] = time.perf_counter() - t0
            return
        row["output_format"] = image_format(row["output_format"])
        data = source.read(row["input_key"], size=row["input_bytes"])
        t1 = time.perf_counter()
        row.update(read_s=t1 - t0, input_bytes=len(data))
        if jpeg_bytes and data[:3] == b"\xff\xd8\xff":
            row["data"] = data
            return
        picture = decode(data, row["input"], job.output_options.max_input_pixels, jpeg_pixels)
        _decoded_into(row, picture, keep)
        if keep:
            row["_picture"] = picture  # not a schema column: never leaves the process
        row["decode_s"] = time.perf_counter() - t1
    except ImageDecodeError as exc:
        row.update(status="failed", error=str(exc))
    except Exception as exc:  # the store refused the read, or an unforeseen error: recorded, the job goes on
        row.update(status="failed", error=f"{row['input']}: cannot read ({type(exc).__name__}: {exc})")


def _decoded_into(row: dict, picture: Picture, keep: bool = False) -> None:
    """The decoded picture's report fields into the row, and, unless ``keep`` (the picture is used in this
    process), its pixels and metadata as bytes for the next stage."""
    pixels = picture.pixels
    row.update(input_width=picture.size[0], input_height=picture.size[1], input_mode=picture.mode,
               input_format=picture.format, bands=pixels.shape[-1], dtype=pixels.dtype.name)
    if not keep:
        row.update(pixels=pixels.tobytes(), pixel_dtype=pixels.dtype.str, shape=list(pixels.shape),
                   **_metadata(picture))


def _metadata(picture: Picture) -> dict:
    """A picture's metadata as row columns (rows._METADATA), for the next stage to write into the output."""
    return dict(source_mode=picture.source_mode, icc_profile=picture.icc_profile, exif=picture.exif,
                text=json.dumps(picture.text), xmp=picture.xmp, photoshop=picture.photoshop,
                dpi=list(picture.dpi) if picture.dpi else None)


def _picture_from(row: dict, pixels: np.ndarray) -> Picture:
    """The picture a row's metadata columns (:func:`_metadata`) describe, with ``pixels``."""
    return Picture(pixels, row["source_mode"], row["icc_profile"], row["exif"], row["input_format"],
                   json.loads(row["text"] or "{}"), row["xmp"], row["photoshop"],
                   tuple(row["dpi"]) if row["dpi"] else None)


def _read_raster_header(row: dict, source) -> bool:
    """A georeferenced raster (:func:`srcore.upscale.raster_input`): fill the row from its header and mark
    it for the actor, which reads it window by window. False for every other input."""
    with raster_input(row["input_key"], lambda: open_raster(row["input_key"], opener=source.fs)) as raster:
        if raster is None:
            return False
        row.update(raster=True, input_width=raster.width, input_height=raster.height, bands=raster.count,
                   dtype=raster.dtypes[0], input_mode=f"{raster.count} bands {raster.dtypes[0]}",
                   input_format=raster.driver, crs=raster.crs.to_string() if raster.crs else None)
    return True


@lru_cache(maxsize=1)
def worker_node() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:
        return socket.gethostname()


def actor_upscaler(job: UpscaleJob, model_ref: list, use_gpu: bool):
    """An actor's engine (on its GPU, else on ``--cpus-per-actor`` threads) and its description for the report.
    The model arrives through the object store; ``model_ref`` holds its reference (or, in-process, the model)."""
    import torch

    model = model_ref[0]
    if not isinstance(model, torch.nn.Module):
        import ray

        model = ray.get(model)
    if use_gpu and torch.cuda.is_available():
        device = "cuda"
    else:
        device = "cpu"
        torch.set_num_threads(max(1, int(job.cpus_per_actor)))
    upscaler = job.engine.build(model, device)
    where = torch.cuda.get_device_name() if device == "cuda" else f"cpu x{torch.get_num_threads()}"
    return upscaler, f"{where} {upscaler.precision} {upscaler.runtime}"


class UpscaleWriter:
    """Ray Data actor: upscale a batch; in the fused layout also read and decode it first and encode, score and
    write each output (report rows out), in the split layout hand the outputs on to :func:`encode_and_write`
    (rows with output pixels, or a GPU-encoded JPEG's bytes, out). Large outputs and rasters are written here in
    both layouts, as they are made, a tile row or a window at a time.

    The model arrives through the object store (one copy per node, whatever file or name it came from);
    ``model_ref`` holds its reference (or, in-process, the model itself).
    """

    def __init__(self, job: UpscaleJob, model_ref: list, use_gpu: bool, fused: bool):
        self.job, self.fused = job, fused
        self.upscaler, self.device = actor_upscaler(job, model_ref, use_gpu)
        self.options = job.output_options
        self.source, self.target = shared_store(job.input), shared_store(job.output)
        remove_dead_scratch()

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        if self.fused:
            rows = [decode_row(r, self.job, self.source, self.target, keep=True,
                               jpeg_pixels=self.upscaler.jpeg_pixels) for r in rows]
        done: list[dict] = [r for r in rows if r["status"] != "todo"]
        # equal shapes upscale together (forward passes shared)
        groups: dict[tuple, list[tuple[dict, Picture]]] = {}
        for r in (r for r in rows if r["status"] == "todo"):
            die_if_marked("upscale", r["input"])
            if r.get("raster"):
                self._raster(r)  # read, upscaled and written window by window, never whole
                done.append(r)
                continue
            picture = self._picture(r)
            if picture is None:
                done.append(r)
                continue
            if streams(self.upscaler, picture, r["output_format"], self.options):
                self._stream(r, picture)  # a large output goes out a tile row at a time, never whole
                done.append(r)
                continue
            groups.setdefault((picture.pixels.shape, picture.pixels.dtype.str), []).append((r, picture))
        for members in groups.values():
            group, pictures = [r for r, _ in members], [p for _, p in members]
            t0 = time.perf_counter()
            try:
                upscaled = self.upscaler.upscale_images([p.pixels for p in pictures], self.options.alpha,
                                                     self.options.outscale)
            except Exception:  # one bad image must not fail the group: retry one by one
                upscaled = [self._upscale_one(r, p) for r, p in zip(group, pictures, strict=True)]
            seconds = (time.perf_counter() - t0) / len(group)
            finished = []
            for r, picture, pixels in zip(group, pictures, upscaled, strict=True):
                r.pop("pixels", None)
                r.pop("data", None)
                done.append(r)
                if pixels is not None:
                    r.update(upscale_s=seconds, device=self.device, node=worker_node())
                    finished.append((r, picture, pixels))
            if self.fused:
                for r, picture, pixels in finished:
                    write_output(r, picture, pixels, self.options, self.target, device=self.upscaler.codec_device)
                    score(r, picture.pixels, pixels)
            elif finished:
                self._hand_over(finished)
        return table_of(done, REPORT_SCHEMA if self.fused else UPSCALED_SCHEMA)

    def _picture(self, row: dict) -> Picture | None:
        """The row's decoded picture; a JPEG that came as bytes is decoded here (on the GPU where there is one).
        None when it cannot be decoded (the row says why)."""
        if "_picture" in row:
            return row.pop("_picture")
        if row.get("data") is None:
            return _picture(row)
        t0 = time.perf_counter()
        try:
            try:
                picture = decode(row["data"], row["input"], self.options.max_input_pixels, self.upscaler.jpeg_pixels)
            except torch_oom():  # the GPU is full for now: this one decodes on the CPU
                picture = decode(row["data"], row["input"], self.options.max_input_pixels)
        except ImageDecodeError as exc:
            row.pop("data")
            row.update(status="failed", error=str(exc))
            return None
        _decoded_into(row, picture, keep=True)
        row["decode_s"] = time.perf_counter() - t0
        return picture

    def _hand_over(self, outputs: list[tuple[dict, Picture, np.ndarray]]) -> None:
        """Split layout, one group of equal shapes: score the outputs here, on the model's device, and on a GPU
        encode the 8-bit JPEG outputs there too, each in one batch; every row takes its output's pixels (or
        its encoded file) to :func:`encode_and_write`."""
        device, codec = self.upscaler.device, self.upscaler.codec_device
        on_device = [None] * len(outputs)
        t0 = time.perf_counter()
        scored = False
        if device.type == "cuda" and outputs[0][2].dtype == np.uint8:
            try:
                stacked = torch_stack([pixels for _, _, pixels in outputs], device)
                on_device = list(stacked)
                scores = lr_consistency_many([picture.pixels for _, picture, _ in outputs], stacked,
                                             outputs[0][0]["scale"])
                seconds = (time.perf_counter() - t0) / len(outputs)
                for (r, _, _), value, sr in zip(outputs, scores, stacked, strict=True):
                    r.update(lr_psnr=value, check_s=seconds)
                    score_invention(r, sr)
                scored = True
            except Exception:  # (a full GPU): each is scored alone, and a figure that fails stays empty
                on_device = [None] * len(outputs)
        if not scored:
            for r, picture, pixels in outputs:
                score(r, picture.pixels, pixels, device)
        jpegs = [i for i, (r, picture, pixels) in enumerate(outputs) if codec is not None and r["output_format"] ==
                 "JPEG" and can_encode(pixels.shape, pixels.dtype, picture.source_mode)]
        if jpegs:
            t0 = time.perf_counter()
            files = encode_jpegs_on_device([(outputs[i][1], outputs[i][2], on_device[i], _provenance(outputs[i][0]))
                                            for i in jpegs], self.options, codec)
            seconds = (time.perf_counter() - t0) / len(jpegs)
            for i, (data, output) in zip(jpegs, files, strict=True):
                outputs[i][0].update(encoded=data, encode_s=seconds, output_width=output.size[0],
                                     output_height=output.size[1], output_mode=output.mode)
        for r, source, pixels in outputs:
            if r.get("encoded") is None:
                r.update(output_pixels=pixels.tobytes(), output_dtype=pixels.dtype.str,
                         output_shape=list(pixels.shape))
            r.update(status="upscaled", **_metadata(source))

    def _stream(self, row: dict, source: Picture) -> None:
        """Upscale, encode and write one large output band by band (:func:`srcore.upscale.stream_png`), and
        score its LR-consistency on the way; fills the row's output fields, or its error. No preview crops."""
        row.pop("pixels", None)
        row.pop("data", None)
        row.update(device=self.device, node=worker_node())
        t0 = time.perf_counter()
        try:
            with self.target.open_atomic(row["output_key"]) as file:
                out = stream_png(self.upscaler, source, self.options, _provenance(row), file, lr_check=True)
                size = file.tell()
            row.update(status="ok", upscale_s=time.perf_counter() - t0, output_bytes=size, output_width=out.size[0],
                       output_height=out.size[1], output_mode=out.mode, lr_psnr=out.lr_psnr)
        except Exception as exc:
            row.update(status="failed", error=f"{row['output']}: cannot upscale and write output as it streams "
                                              f"({type(exc).__name__}: {exc})")

    def _raster(self, row: dict) -> None:
        """Upscale a georeferenced raster window by window into a local scratch GeoTIFF/COG
        (:func:`srcore.upscale.render_raster`), then upload it in parts; fills the row, or its error."""
        row.pop("pixels", None)
        row.update(device=self.device, node=worker_node())
        t0 = time.perf_counter()
        fd, scratch = tempfile.mkstemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", suffix=".tif")  # worker's TMPDIR
        os.close(fd)
        stage = "upscale"
        try:
            with gdal_env(), open_raster(row["input_key"], opener=self.source.fs) as src:
                scene = render_raster(self.upscaler, src, row["input"], scratch, row["output_format"], self.options,
                                      _provenance(row), _window_progress(row["input"], t0))
            t1 = time.perf_counter()
            stage = "write"
            with self.target.open_atomic(row["output_key"]) as file, open(scratch, "rb") as made:
                shutil.copyfileobj(made, file, 16 << 20)
                size = file.tell()
            s = self.upscaler.scale
            row.update(status="ok", upscale_s=t1 - t0, write_s=time.perf_counter() - t1, output_bytes=size,
                       output_width=scene.width * s, output_height=scene.height * s, output_mode=row["input_mode"],
                       crs=scene.crs, bands=scene.bands, dtype=scene.dtype, nodata_fraction=scene.nodata_fraction)
        except Exception as exc:
            message = str(exc) if row["input"] in str(exc) else f"{row['input']}: {exc}"
            row.update(status="failed", error=f"cannot {stage} raster: {message} ({type(exc).__name__})")
        finally:
            os.remove(scratch)

    def _upscale_one(self, row: dict, picture: Picture) -> np.ndarray | None:
        try:
            return self.upscaler.upscale_image(picture.pixels, self.options.alpha, self.options.outscale)
        except Exception as exc:
            row.update(status="failed", error=f"{row['input']}: upscaling failed ({type(exc).__name__}: {exc})")
            return None


def encode_and_write(batch: pa.Table, job: UpscaleJob) -> pa.Table:
    """The split layout's CPU task after the actors: encode each upscaled output (unless its GPU did) and write
    it; every row leaves as a report row."""
    target, options = shared_store(job.output), job.output_options
    rows = batch.to_pylist()
    for r in rows:
        if r["status"] != "upscaled":
            continue
        encoded, raw = r.pop("encoded"), r.pop("output_pixels")
        if encoded is not None:
            write_output(r, None, None, options, target, encoded)
            continue
        pixels = np.frombuffer(raw, dtype=np.dtype(r["output_dtype"])).reshape(r["output_shape"])
        source = _picture_from(r, pixels)
        write_output(r, source, pixels, options, target)
    return table_of(rows, REPORT_SCHEMA)


def write_output(row: dict, source: Picture | None, pixels: np.ndarray | None, options, target,
                 encoded: bytes | None = None, device=None) -> None:
    """Encode (unless ``encoded`` already holds the file, its output fields filled) and write one output
    atomically, with the source's metadata and the row's provenance; fills the row's output fields, or its
    error. ``device``: where JPEGs encode (:func:`srcore.upscale.encode_output`)."""
    with retries_counted(row):
        _write_output(row, source, pixels, options, target, encoded, device)


def _write_output(row: dict, source: Picture | None, pixels: np.ndarray | None, options, target,
                  encoded: bytes | None, device) -> None:
    stage = "encode"
    try:
        if encoded is None:
            t0 = time.perf_counter()
            encoded, output = encode_output(source, pixels, row["output_format"], options, _provenance(row), device)
            row.update(encode_s=time.perf_counter() - t0, output_width=output.size[0],
                       output_height=output.size[1], output_mode=output.mode)
        t1 = time.perf_counter()
        stage = "write"
        write_once(target, row, encoded)
        row.update(status="ok", write_s=time.perf_counter() - t1, output_bytes=len(encoded))
    except Exception as exc:
        row.update(status="failed", error=f"{row['output']}: cannot {stage} output ({type(exc).__name__}: {exc})")
        if not isinstance(exc, (OSError, ValueError)):
            row["error"] += "\n" + traceback.format_exc(limit=3)


def write_once(target, row: dict, encoded: bytes) -> None:
    """Write the output where nothing is there yet (one conditional request on S3, a hard link locally). If
    something is: left alone when an earlier attempt of this run wrote it (its task was retried or re-run after
    its worker or node was lost), else replaced (an outdated output, or --overwrite)."""
    try:
        target.create_exclusive(row["output_key"], encoded)
        return
    except FileExistsError:
        if output_is_finished(target, row, run=row["run"]):
            return
    except OSError:
        if not target.local:
            raise  # (a local filesystem without hard links writes by renaming into place, below)
    target.write_atomic(row["output_key"], encoded)


def score(row: dict, lr: np.ndarray, sr, device=None) -> None:
    """The output's LR-consistency into the row (``device``: where it is computed, ``sr`` may be there
    already). A failing figure leaves it empty, never fails the row."""
    t0 = time.perf_counter()
    try:
        row["lr_psnr"] = lr_consistency(lr, sr, row["scale"], device=device)
    except Exception:
        pass
    score_invention(row, sr)
    row["check_s"] = time.perf_counter() - t0


def score_invention(row: dict, sr) -> None:
    """The share of the output's area with invented detail (:func:`srcore.invention.invention_share`) into the
    row, where the output is (a GPU worker's stay there); empty when it cannot be computed."""
    try:
        if row["scale"] > 1:
            row["invented_share"] = invention_share(sr, row["scale"])
    except Exception:
        pass


def torch_oom() -> type[Exception]:
    import torch

    return torch.cuda.OutOfMemoryError


def torch_stack(outputs: list[np.ndarray], device):
    """Equal-shaped host outputs as one (N, H, W, C) tensor on ``device``, copied in as integers (a quarter of
    float32's bytes), without stacking them on the host first."""
    import torch

    stacked = torch.empty((len(outputs), *outputs[0].shape), dtype=torch.from_numpy(outputs[0][:0]).dtype,
                          device=device)
    for slot, pixels in zip(stacked, outputs, strict=True):
        slot.copy_(torch.from_numpy(np.ascontiguousarray(pixels)), non_blocking=True)
    return stacked


def _provenance(row: dict) -> Provenance:
    return Provenance(row["model"], row["scale"], row["input"], row["input_version"], row["run"])


SCRATCH_PREFIX = ".srcore-raster-"  # then the writing process's pid


def remove_dead_scratch(folder: str | None = None, idle_s: float = 3600, prefix: str = SCRATCH_PREFIX) -> list[str]:
    """Delete scratch rasters (often gigabytes) left in ``folder`` (default TMPDIR) by actors that were killed
    mid-scene: files whose writer's pid is gone and that nothing touched for ``idle_s`` (a TMPDIR shared across
    pid namespaces must not lose a live file). Returns the removed names."""
    folder = folder or tempfile.gettempdir()
    removed = []
    for name in os.listdir(folder):
        if not name.startswith(prefix):
            continue
        try:
            if time.time() - os.stat(os.path.join(folder, name)).st_mtime < idle_s:
                continue
        except OSError:
            continue
        pid = name[len(prefix):].split("-", 1)[0]
        try:
            os.kill(int(pid), 0)
            continue  # its writer is alive
        except ValueError:
            continue  # not one of ours
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, another user's
        try:
            path = os.path.join(folder, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
            removed.append(name)
        except OSError:
            pass
    return removed


def _window_progress(name: str, start: float, every_s: float = 30.0):
    """A progress callback for a scene's windows: a line (windows, rate, ETA) at most every ``every_s``
    seconds, which Ray forwards to the driver's log: a scene can take many minutes."""
    last = [start]

    def show(done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - last[0] < every_s:
            return
        last[0] = now
        rate = done / max(now - start, 1e-9)
        print(f"[srcore] {name}: window {done}/{total}, {rate * 60:.1f}/min, ETA {(total - done) / rate:.0f} s",
              flush=True)

    return show


def _picture(row: dict) -> Picture:
    pixels = np.frombuffer(row["pixels"], dtype=np.dtype(row["pixel_dtype"])).reshape(row["shape"])
    return _picture_from(row, pixels)
