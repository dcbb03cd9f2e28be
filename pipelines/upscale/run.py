"""The run on the driver: plan, the Ray Data pipeline, retries of inputs whose workers died, the report."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from srcore.naming import digests

from ..lease import Lease, held_elsewhere
from ..pages import PageFile, read_pages
from ..progress import ProgressLog
from ..storage import retries_in_process, shared_store
from .finished import remove_temporaries, scan_outputs
from .options import REPORT_FOLDER, UpscaleJob
from .plan import Manifest, plan
from .report import ReportWriter, read_report_rows
from .rows import REPORT_SCHEMA, table_of
from .stages import WORKER_RETRIES, UpscaleWriter, encode_and_write, read_and_decode
from .videos import process_videos, split_videos

WORKER_DIED = (f"the worker processing this input died {WORKER_RETRIES + 1} times, with the input alone in its batch "
               "(out of memory, or a crash in native code; the Ray logs say which)")


@dataclass
class RunResult:
    summary: dict
    report: str  # where rows/, report.html and summary.json are

    def rows(self, columns: list[str] | None = None) -> pa.Table:
        """The report's rows, read back (for small runs and benches)."""
        return read_report_rows(self.report, columns)


def run(job: UpscaleJob, progress: bool = True, connect=None) -> RunResult:
    """Run the job and write its report.

    ``connect``: called once the model loaded and the inputs are listed (so a bad name or prefix fails before
    any Ray starts) to join or start Ray; None when this process is already connected (``ray.init``). A run
    whose inputs are all finished (known from earlier reports) starts no Ray at all. The plan's rows stream
    from local scratch pages into the pipeline, and the report rows stream into report parts as they come.
    """
    from srcore.weights import load_upscaling_model

    start, retries_at_start = time.time(), retries_in_process()
    shared_store(job.input).check_exists()  # before the lease: a wrong input leaves nothing behind in the output
    target = shared_store(job.output)
    target.check_writable()  # a local folder; a bucket: the lease, the first write, says
    model, name = load_upscaling_model(job.model, job.realism)  # fails fast, before any listing, on a bad name
    # one run at a time per output prefix; held from planning to the report (LeaseHeld: another run writes)
    lease_path = f"{target.root}/{REPORT_FOLDER}/lease.json"
    with Lease(target, lease_path, job.run_id, break_lease=job.break_lease), \
            plan(job, name, job.output_options.outscale or model.descriptor.scale) as manifest:
        if not manifest.listed:
            raise ValueError(f"{job.input}: no images ({', '.join(job.extensions)}) there" +
                             (f" or in --input-manifest {job.input_manifest}" if job.input_manifest else ""))
        removed = remove_dead_writers_temporaries(target, lease_path, manifest.temporaries, manifest.leases)
        if removed:
            print(f"[srcore] removed {removed} temporary uploads left by killed writers", flush=True)
        print(f"[srcore] {manifest.listed} images under {job.input}; {manifest.rows} in this run, "
              f"{manifest.finished.rows} finished by earlier runs; model {name}", flush=True)
        report = ReportWriter(job.report_location, previews=job.previews, seed=job.seed,
                              driver_retries_at_start=retries_at_start)
        for page in manifest.finished.pages():
            report.add(page)
        if manifest.todo.rows:
            if connect is not None:
                connect()
            _process(job, model, manifest, progress, report)
            existing = scan_outputs(target)  # temporaries left by this run's actors that were killed
            remove_dead_writers_temporaries(target, lease_path, existing.temporaries, existing.leases)
        summary = report.finish(job, manifest.listed, time.time() - start)
        return RunResult(summary, job.report_location)


def remove_dead_writers_temporaries(target, lease_path: str, temporaries: list[str], leases: list[str]) -> int:
    """Under our lease no other writer is at work in the prefix, except runs holding a lease on a nested
    prefix of their own: every other temporary upload was left by a writer that is gone."""
    nested = tuple(held_elsewhere(target, leases, lease_path))
    return remove_temporaries(target, [t for t in temporaries if not t.startswith(nested)])


@dataclass(frozen=True)
class Layout:
    """Where each stage runs and with what: a function of the job, the cluster's resources and the work.

    ``fused`` (CPU actors): one actor per ``cpus_per_actor`` CPUs does each image's whole work, so the model
    gets every core that decoding and encoding do not need, image by image. ``split`` (GPU actors): decode
    and encode run on CPU tasks, which Ray Data sizes to the node, beside the GPU actors (see ``stages``).
    """

    fused: bool
    gpus_per_actor: float
    cpus_per_actor: float
    min_actors: int
    max_actors: int
    images_per_call: int  # per actor call, and per decode or encode block
    calls_per_actor: int  # actor calls at once: a GPU actor hands one batch on while it upscales the next
    jpeg_bytes: bool  # JPEG inputs travel undecoded, for the GPU to decode

    def requests(self) -> dict[str, dict[str, float]]:
        """The resources one worker of each stage needs (what a node must have for it to run there)."""
        actor = {"CPU": self.cpus_per_actor, **({"GPU": self.gpus_per_actor} if self.gpus_per_actor else {})}
        return {"the upscaling actors": actor, **({} if self.fused else {"the decode and encode tasks": {"CPU": 1}})}

    def describe(self, todo: int) -> str:
        device = f"{self.gpus_per_actor:g}-GPU" if self.gpus_per_actor else f"{self.cpus_per_actor:g}-CPU"
        actors = f"{self.max_actors}" if self.min_actors == self.max_actors else f"{self.min_actors}..{self.max_actors}"
        how = ("each reads, decodes, upscales, encodes and writes its images" if self.fused else
               "decoding and encoding on CPU tasks" + (", JPEG on the GPU" if self.jpeg_bytes else ""))
        return f"{todo} to upscale on {actors} {device} actors ({'fused' if self.fused else 'split'}: {how})"


GPU_IMAGES_PER_CALL = 32  # two of the engine's auto batches of 16 (its peak in bench/inference.py)
CPU_IMAGES_PER_CALL = 8
TASK_CPUS = 2  # CPUs the split layout leaves to its decode and encode tasks at least


def plan_layout(job: UpscaleJob, resources: dict[str, float], todo: int) -> Layout:
    """The :class:`Layout` for ``job`` on a cluster with ``resources`` (``ray.cluster_resources()``) and
    ``todo`` inputs: actors on GPUs when the cluster has them (``--num-gpus-per-actor``), else on CPUs."""
    gpus = job.num_gpus_per_actor
    if gpus is None:
        gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
    fused = job.stage_layout == "fused" or (job.stage_layout == "auto" and gpus == 0)
    per_call = job.images_per_batch or (GPU_IMAGES_PER_CALL if gpus else CPU_IMAGES_PER_CALL)
    if job.max_actors:
        most = job.max_actors
    elif gpus:
        most = max(1, int(resources.get("GPU", 0) / gpus))
    else:  # fused: every CPU; split CPU actors leave about half the CPUs to the decode and encode tasks
        most = max(1, int(resources.get("CPU", 1) / (1 if fused else 2) / job.cpus_per_actor))
    most = max(1, min(most, -(-todo // per_call)))  # no actor without a batch to do
    cpus_per_actor = job.cpus_per_actor
    if not fused:  # the decode and encode tasks need CPUs too: with too few left for them the run would stall
        cpus_per_actor = min(cpus_per_actor, max(0.25, (resources.get("CPU", 1) - TASK_CPUS) / most))
    return Layout(fused=fused, gpus_per_actor=gpus, cpus_per_actor=cpus_per_actor,
                  min_actors=min(job.min_actors, most), max_actors=most, images_per_call=per_call,
                  calls_per_actor=job.actor_concurrency or (2 if gpus and not fused else 1),
                  jpeg_bytes=bool(gpus) and not fused and job.engine.codecs == "auto")


def _process(job: UpscaleJob, model, manifest: Manifest, progress: bool, report) -> None:
    """The Ray Data pipeline of the job's :class:`Layout`; a report row for every input to do."""
    import ray

    from ..cluster import NoNodeForWork, node_watchdog, quiet_ray_data

    images, videos = split_videos(manifest.todo, manifest.folder)
    resources = ray.cluster_resources()
    layout = plan_layout(job, resources, max(1, images.rows))
    if images.rows:
        print(f"[srcore] {layout.describe(images.rows)}", flush=True)
    quiet_ray_data()  # the job prints images, rate, ETA and failures instead
    ctx = ray.data.DataContext.get_current()
    log = ProgressLog(manifest.todo.rows, interval=job.progress_interval or (10.0 if progress else 60.0),
                      print_fn=lambda line: print(line, flush=True))
    # A block whose workers keep dying (out of memory, a native crash) is dropped instead of ending the run;
    # its inputs are retried one at a time below, so one poison input costs only its own row.
    ctx.max_errored_blocks = -1
    # Ray Data ends a run whose blocks make no progress for 30 minutes; one actor call on a satellite scene
    # can legitimately take longer (a 10980^2 scene at x4 on one CPU: ~33 min; with RRDBNet, hours), and the
    # scene's own progress lines show it is alive. Ending the run would throw away every other input's work.
    ctx.execution_no_progress_timeout_s = -1
    model_ref = [ray.put(model)]
    answered: list[np.ndarray] = []  # digests of the inputs that have a report row

    def execute(pages: PageFile, per_block: int) -> None:
        rows = read_pages(pages, per_block)
        for batch in pipeline(job, layout, model_ref, rows, per_block).iter_batches(batch_format="pyarrow",
                                                                                    batch_size=None):
            report.add(batch)
            answered.append(digests(batch.column("input").to_pylist()))
            log.add(batch.num_rows, pc.sum(pc.equal(batch.column("status"), "failed")).as_py() or 0)

    def fail_unanswered(pages: PageFile, name: str, why: str) -> None:
        for page in _unanswered(pages, answered, f"{manifest.folder}/{name}.arrow").pages():
            report.add(table_of([dict(r, status="failed", error=f"{r['input']}: {why}") for r in page.to_pylist()],
                              REPORT_SCHEMA))

    callbacks = ctx.custom_execution_callback_classes
    ctx.custom_execution_callback_classes = [*callbacks, node_watchdog(layout.requests(), job.wait_for_nodes)]
    try:
        with log, warnings.catch_warnings():  # the log's heartbeat prints on time while a batch takes longer
            # Ray Data's advice for a run of fewer blocks than its task limit: a small run, not a problem
            warnings.filterwarnings("ignore", message="The maximum number of concurrent tasks for")
            if images.rows:
                execute(images, layout.images_per_call)
            lost = _unanswered(images, answered, f"{manifest.folder}/lost.arrow")
            if lost.rows:
                print(f"[srcore] {lost.rows} inputs were in batches whose workers died; retrying each alone",
                      flush=True)
                execute(lost, 1)
                fail_unanswered(lost, "failed", WORKER_DIED)
            for rows in process_videos(job, model_ref, videos, resources):
                report.add(rows)
                answered.append(digests(rows.column("input").to_pylist()))
                log.add(rows.num_rows, pc.sum(pc.equal(rows.column("status"), "failed")).as_py() or 0)
            if videos.rows:  # a probe or join task that died on every try dropped its video's rows
                fail_unanswered(videos, "videos_lost", WORKER_DIED)
    except NoNodeForWork as exc:  # the work in flight is lost with the nodes; every input still gets its row
        print(f"[srcore] error: {exc}: ending the run; the inputs not done are failed rows", flush=True)
        fail_unanswered(manifest.todo, "not_done", f"not processed: {exc}")
    finally:
        ctx.custom_execution_callback_classes = callbacks


def pipeline(job: UpscaleJob, layout: Layout, model_ref: list, rows, per_block: int):
    """The Ray Data stages after the manifest's ``rows``: report rows out. A dead actor is restarted and its
    batch retried WORKER_RETRIES times, as is a dead task's; then the batch is dropped (and its inputs retried
    one at a time by the caller). Inputs retried alone (``per_block`` 1) queue no second call on an actor: a
    call queued behind one that kills the actor would die with it, and be charged a retry for it."""
    from ray.data import ActorPoolStrategy

    from ..cluster import no_remote_args_warning

    gpu = layout.gpus_per_actor > 0
    with no_remote_args_warning():
        if not layout.fused:
            # Task-only arguments (retries) also keep Ray from fusing decoding into the reads
            rows = rows.map_batches(read_and_decode, batch_format="pyarrow", batch_size=None, num_cpus=1,
                                    fn_kwargs={"job": job, "per_block": per_block, "jpeg_bytes": layout.jpeg_bytes},
                                    max_retries=WORKER_RETRIES)
        calls = layout.calls_per_actor
        rows = rows.map_batches(
            UpscaleWriter, batch_format="pyarrow", batch_size=per_block, num_gpus=layout.gpus_per_actor,
            num_cpus=layout.cpus_per_actor, max_concurrency=calls, max_task_retries=WORKER_RETRIES,
            compute=ActorPoolStrategy(min_size=layout.min_actors, max_size=layout.max_actors,
                                      initial_size=layout.max_actors,
                                      max_tasks_in_flight_per_actor=2 * calls if per_block > 1 else 1,
                                      enable_true_multi_threading=calls > 1),
            fn_constructor_kwargs={"job": job, "model_ref": model_ref, "use_gpu": gpu, "fused": layout.fused})
        if not layout.fused:
            rows = rows.map_batches(encode_and_write, batch_format="pyarrow", batch_size=None, num_cpus=1,
                                    fn_kwargs={"job": job}, max_retries=WORKER_RETRIES)
    return rows


def _unanswered(pages: PageFile, answered: list[np.ndarray], path: str) -> PageFile:
    """The rows of ``pages`` that no report row answers (their blocks were dropped), as a new PageFile."""
    seen = np.concatenate(answered) if answered else np.empty(0, np.uint64)
    left = PageFile(path, pages.schema)
    for page in pages.pages():
        left.write(page.filter(pa.array(~np.isin(digests(page.column("input").to_pylist()), seen))))
    left.close()
    return left
