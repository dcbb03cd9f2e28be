"""The workers' stages: read and decode on CPU tasks; upscale, encode and write on the actor pool."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import pyarrow as pa

from srcore.geo import gdal_env, open_raster
from srcore.imageio import ImageDecodeError, Picture, Provenance, decode
from srcore.metrics import lr_consistency
from srcore.upscale import encode_output, may_be_raster, opens_as_raster, render_raster, stream_png, streams

from .finished import output_is_finished
from .options import UpscaleJob
from .plan import _store
from .rows import DECODED_SCHEMA, OUTPUT_SCHEMA, _table

FAULT_ENV = "SRCORE_INJECT_WORKER_DEATH"


def _inject_worker_death(stage: str, key: str) -> None:
    """Test-only fault injection: ``SRCORE_INJECT_WORKER_DEATH=decode:marker,upscale:other`` ends the worker
    process (as an out-of-memory kill would) whenever that stage handles an input whose key holds the marker."""
    for spec in os.environ.get(FAULT_ENV, "").split(","):
        want, _, marker = spec.partition(":")
        if want == stage and marker and marker in key:
            os._exit(137)


def read_and_decode(batch: pa.Table, job: UpscaleJob) -> Iterator[pa.Table]:
    """Manifest rows -> rows with decoded pixels (status "todo"), or finished ones ("skipped", "failed").

    Yields a table every ``job.images_per_batch`` rows: a block of many rows never holds all its pictures.
    """
    source, target = _store(job.input), _store(job.output)
    out = []
    for row in batch.to_pylist():
        if len(out) >= job.images_per_batch:
            yield _table(out, DECODED_SCHEMA)
            out = []
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
            if _read_raster_header(row, source):
                row["read_s"] = time.perf_counter() - t0
                out.append(row)
                continue
            if row["output_format"] == "COG":  # --format cog on a TIFF without georeferencing: a plain TIFF
                row["output_format"] = "TIFF"
            data = source.read(row["input_key"])
            t1 = time.perf_counter()
            picture = decode(data, row["input"], job.output_options.max_input_pixels)
            pixels = picture.pixels
            row.update(read_s=t1 - t0, decode_s=time.perf_counter() - t1, input_bytes=len(data),
                       input_width=picture.size[0], input_height=picture.size[1], input_mode=picture.mode,
                       input_format=picture.format, pixels=pixels.tobytes(), pixel_dtype=pixels.dtype.str,
                       shape=list(pixels.shape), source_mode=picture.source_mode, bands=pixels.shape[-1] if
                       pixels.ndim == 3 else 1, dtype=pixels.dtype.name, icc_profile=picture.icc_profile,
                       exif=picture.exif, text=json.dumps(picture.text))
        except ImageDecodeError as exc:
            row.update(status="failed", error=str(exc))
        except Exception as exc:  # the store refused the read, or an unforeseen error: recorded, the job goes on
            row.update(status="failed", error=f"{row['input']}: cannot read ({type(exc).__name__}: {exc})")
        out.append(row)
    if out:
        yield _table(out, DECODED_SCHEMA)


def _read_raster_header(row: dict, source) -> bool:
    """A georeferenced raster (:func:`srcore.upscale.opens_as_raster`): fill the row from its header and mark
    it for the actor, which reads it window by window. False for every other input."""
    if not may_be_raster(row["input_key"]):
        return False
    with gdal_env():
        raster = opens_as_raster(row["input_key"], lambda: open_raster(row["input_key"], opener=source.fs))
        if raster is None:
            return False
        with raster:
            row.update(raster=True, input_width=raster.width, input_height=raster.height, bands=raster.count,
                       dtype=raster.dtypes[0], input_mode=f"{raster.count} bands {raster.dtypes[0]}",
                       input_format=raster.driver, crs=raster.crs.to_string() if raster.crs else None)
    return True


@lru_cache(maxsize=1)
def _node() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:
        return socket.gethostname()


class UpscaleWriter:
    """Ray Data actor: upscale decoded rows, encode and write each output on a thread pool, return report rows.

    The model arrives through the object store (one copy per node, whatever file or name it came from).
    """

    def __init__(self, job: UpscaleJob, model_ref: list, use_gpu: bool):
        import ray
        import torch

        self.job = job
        model = ray.get(model_ref[0])
        if use_gpu and torch.cuda.is_available():
            device = "cuda"
        else:
            device = "cpu"
            torch.set_num_threads(max(1, int(job.cpus_per_actor)))
        self.upscaler = job.engine.build(model, device)
        self.options = job.output_options
        where = torch.cuda.get_device_name() if device == "cuda" else f"cpu x{torch.get_num_threads()}"
        self.device = f"{where} {self.upscaler.precision} {self.upscaler.runtime}"
        self.source, self.target = _store(job.input), _store(job.output)
        self.pool = ThreadPoolExecutor(max_workers=job.io_threads, thread_name_prefix="srcore-write")
        remove_dead_scratch()

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        done: list[dict] = [r for r in rows if r["status"] != "todo"]
        # equal shapes upscale together (forward passes shared); each group's writes overlap the next group
        groups: dict[tuple, list[tuple[dict, Picture]]] = {}
        for r in (r for r in rows if r["status"] == "todo"):
            _inject_worker_death("upscale", r["input"])
            if r["raster"]:
                self._raster(r)  # read, upscaled and written window by window, never whole
                done.append(r)
                continue
            picture = _picture(r)
            if streams(self.upscaler, picture, r["output_format"], self.options):
                self._stream(r, picture)  # a large output goes out a tile row at a time, never whole
                done.append(r)
                continue
            groups.setdefault((tuple(r["shape"]), r["pixel_dtype"]), []).append((r, picture))
        futures: list[tuple[dict, Future]] = []
        for members in groups.values():
            group, pictures = [r for r, _ in members], [p for _, p in members]
            t0 = time.perf_counter()
            try:
                upscaled = self.upscaler.upscale_many([p.pixels for p in pictures], self.options.alpha,
                                                     self.options.outscale)
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

    def _stream(self, row: dict, source: Picture) -> None:
        """Upscale, encode and write one large output band by band (:func:`srcore.upscale.stream_png`), and
        score its LR-consistency on the way; fills the row's output fields, or its error. No preview crops."""
        row.pop("pixels")
        row.update(device=self.device, node=_node())
        t0 = time.perf_counter()
        try:
            provenance = Provenance(row["model"], row["scale"], row["input"], row["input_version"], row["run"])
            with self.target.open_atomic(row["output_key"]) as file:
                out = stream_png(self.upscaler, source, self.options, provenance, file, lr_check=True)
                size = file.tell()
            row.update(status="ok", upscale_s=time.perf_counter() - t0, output_bytes=size, output_width=out.size[0],
                       output_height=out.size[1], output_mode=out.mode, lr_psnr=out.lr_psnr)
        except Exception as exc:
            row.update(status="failed", error=f"{row['output']}: cannot upscale and write output as it streams "
                                              f"({type(exc).__name__}: {exc})")

    def _raster(self, row: dict) -> None:
        """Upscale a georeferenced raster window by window into a local scratch GeoTIFF/COG
        (:func:`srcore.upscale.render_raster`), then upload it in parts; fills the row, or its error."""
        row.pop("pixels")
        row.update(device=self.device, node=_node())
        t0 = time.perf_counter()
        fd, scratch = tempfile.mkstemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", suffix=".tif")  # worker's TMPDIR
        os.close(fd)
        stage = "upscale"
        try:
            provenance = Provenance(row["model"], row["scale"], row["input"], row["input_version"], row["run"])
            with gdal_env(), open_raster(row["input_key"], opener=self.source.fs) as src:
                scene = render_raster(self.upscaler, src, row["input"], scratch, row["output_format"], self.options,
                                      provenance, _window_progress(row["input"], t0))
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
            return self.upscaler.upscale_pixels(picture.pixels, self.options.alpha, self.options.outscale)
        except Exception as exc:
            row.update(status="failed", error=f"{row['input']}: upscaling failed ({type(exc).__name__}: {exc})")
            return None

    def _finish(self, row: dict, source: Picture, pixels: np.ndarray) -> None:
        """Encode and write one output, then its quality figures; fills the row's output fields, or its error."""
        stage = "encode"
        try:
            t0 = time.perf_counter()
            provenance = Provenance(row["model"], row["scale"], row["input"], row["input_version"], row["run"])
            data, output = encode_output(source, pixels, row["output_format"], self.options, provenance)
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
        except Exception:
            pass
        row["check_s"] = time.perf_counter() - t2


SCRATCH_PREFIX = ".srcore-raster-"  # then the writing process's pid


def remove_dead_scratch(folder: str | None = None, idle_s: float = 3600) -> list[str]:
    """Delete scratch rasters (often gigabytes) left in ``folder`` (default TMPDIR) by actors that were killed
    mid-scene: files whose writer's pid is gone and that nothing touched for ``idle_s`` (a TMPDIR shared across
    pid namespaces must not lose a live file). Returns the removed names."""
    folder = folder or tempfile.gettempdir()
    removed = []
    for name in os.listdir(folder):
        if not name.startswith(SCRATCH_PREFIX):
            continue
        try:
            if time.time() - os.stat(os.path.join(folder, name)).st_mtime < idle_s:
                continue
        except OSError:
            continue
        pid = name[len(SCRATCH_PREFIX):].split("-", 1)[0]
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
            os.remove(os.path.join(folder, name))
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
    return Picture(pixels, row["source_mode"], row["icc_profile"], row["exif"], row["input_format"],
                   json.loads(row["text"] or "{}"))
