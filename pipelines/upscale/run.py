"""The run on the driver: plan, the Ray Data pipeline, retries of inputs whose workers died, the report."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..lease import Lease, held_elsewhere
from .options import REPORT_FOLDER, UpscaleJob
from .plan import _existing_outputs, _store, plan, remove_temporaries
from .rows import MANIFEST_SCHEMA, OUTPUT_SCHEMA, PREVIEW_FIELDS, _table
from .stages import UpscaleWriter, read_and_decode

WORKER_RETRIES = 2  # retries of a batch whose worker (decode task or actor) died
WORKER_DIED = (f"the worker processing this input died {WORKER_RETRIES + 1} times, with the input alone in its batch "
               "(out of memory, or a crash in native code; the Ray logs say which)")


@dataclass
class RunResult:
    summary: dict
    rows: pa.Table
    report: str  # where report.html and summary.json are


def run(job: UpscaleJob, progress: bool = True, connect=None) -> RunResult:
    """Run the job and write its report.

    ``connect``: called once the model loaded and the inputs are listed (so a bad name or prefix fails before
    any Ray starts) to join or start Ray; None when this process is already connected (``ray.init``). A run
    whose inputs are all finished (known from earlier reports) starts no Ray at all.
    """
    from srcore.weights import load_model, model_id

    from ..report import summarize, write_report

    start = time.time()
    model = load_model(job.model)  # fails fast, before any listing, on a bad name or file
    name = model_id(job.model)
    _store(job.input).check_exists()  # before the lease: a wrong input leaves nothing behind in the output
    target = _store(job.output)
    # one run at a time per output prefix; held from planning to the report (LeaseHeld: another run writes)
    lease_path = f"{target.root}/{REPORT_FOLDER}/lease.json"
    with Lease(target, lease_path, job.run_id, break_lease=job.break_lease):
        manifest = plan(job, name, job.output_options.outscale or model.descriptor.scale)
        removed = _remove_dead_writers_temporaries(target, lease_path, manifest.temporaries, manifest.outputs)
        if removed:
            print(f"[srcore] removed {removed} temporary uploads left by killed writers", flush=True)
        skipped = pc.equal(manifest.rows.column("status"), "skipped")
        todo = manifest.rows.filter(pc.invert(skipped))
        print(f"[srcore] {manifest.listed} images under {job.input}; {manifest.rows.num_rows} in this run, "
              f"{manifest.rows.num_rows - todo.num_rows} finished by earlier runs; model {name}", flush=True)
        rows = [_conform(manifest.rows.filter(skipped), OUTPUT_SCHEMA)]
        listed = manifest.listed
        del manifest, skipped  # todo and the skipped rows are copies: the whole manifest goes
        if todo.num_rows:
            if connect is not None:
                connect()
            rows += _process(job, model, todo, progress)
            existing, temporaries = _existing_outputs(target)  # left by this run's actors that were killed
            _remove_dead_writers_temporaries(target, lease_path, temporaries, existing)
        table = pa.concat_tables([_conform(t, OUTPUT_SCHEMA) for t in rows])
        summary = summarize(table, job, listed, time.time() - start)
        write_report(table, summary, job.report_location)
        return RunResult(summary, table.drop_columns([n for n, _ in PREVIEW_FIELDS]), job.report_location)


def _remove_dead_writers_temporaries(target, lease_path: str, temporaries: list[str], listed: pa.Table) -> int:
    """Under our lease no other writer is at work in the prefix, except runs holding a lease on a nested
    prefix of their own: every other temporary upload was left by a writer that is gone."""
    paths = listed.column("path")
    leases = listed.filter(pc.ends_with(paths, "/_reports/lease.json")).column("path").to_pylist()
    nested = tuple(held_elsewhere(target, leases, lease_path))
    return remove_temporaries(target, [t for t in temporaries if not t.startswith(nested)])


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns: cast where present, nulls where not."""
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def _process(job: UpscaleJob, model, todo: pa.Table, progress: bool) -> list[pa.Table]:
    """Decode on CPU tasks, upscale and write on the actor pool; report rows for every input of ``todo``."""
    import ray
    from ray.data import ActorPoolStrategy

    gpus = job.num_gpus_per_actor
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    max_actors = job.max_actors or _default_max_actors(gpus, job)
    min_actors = min(job.min_actors, max_actors)
    print(f"[srcore] {todo.num_rows} to decode and upscale on {f'{gpus:g}-GPU' if gpus else 'CPU'} actors: "
          f"{min_actors}..{max_actors}", flush=True)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    # A block whose workers keep dying (out of memory, a native crash) is dropped instead of ending the run;
    # its inputs are retried one at a time below, so one poison input costs only its own row.
    ctx.max_errored_blocks = -1
    model_ref = [ray.put(model)]
    rows: list[pa.Table] = []

    def execute(manifest_rows: pa.Table, per_block: int) -> None:
        manifest_rows = manifest_rows.select(MANIFEST_SCHEMA.names)
        # each block its own copy (take), not a slice of the whole: a slice would carry every row's buffers
        blocks = [manifest_rows.take(np.arange(i, min(i + per_block, manifest_rows.num_rows)))
                  for i in range(0, manifest_rows.num_rows, per_block)]
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

    execute(todo, job.images_per_batch)
    lost = _without_rows(todo, rows)
    if lost.num_rows:
        print(f"[srcore] {lost.num_rows} inputs were in batches whose workers died; retrying each alone",
              flush=True)
        execute(lost, 1)
        rows.append(_table([dict(r, status="failed", error=f"{r['input']}: {WORKER_DIED}")
                            for r in _without_rows(lost, rows).to_pylist()], OUTPUT_SCHEMA))
    return rows


def _without_rows(manifest_rows: pa.Table, tables: list[pa.Table]) -> pa.Table:
    """The manifest rows that no report row answers (their blocks were dropped)."""
    answered = [t.column("input") for t in tables if t.num_rows]
    if not answered:
        return manifest_rows
    seen = pa.chunked_array([c for a in answered for c in a.chunks], pa.string()).combine_chunks()
    return manifest_rows.filter(pc.invert(pc.is_in(manifest_rows.column("input"), value_set=seen)))


def _default_max_actors(gpus: float, job: UpscaleJob) -> int:
    import ray

    resources = ray.cluster_resources()
    if gpus > 0:
        return max(1, int(resources.get("GPU", 0) / gpus))
    # CPU actors: leave about half the CPUs to the decode tasks
    return max(1, int(resources.get("CPU", 1) / 2 / job.cpus_per_actor))
