"""The bucket job's options: one frozen dataclass, every field a command-line flag, checked on creation."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from srcore.imageio import IMAGE_SUFFIXES
from srcore.options import EngineOptions, OutputOptions, check_flags
from srcore.redact import credentials_in
from srcore.upscale import new_run_id
from srcore.video import SEGMENT_SECONDS, VIDEO_SUFFIXES

from ..storage import is_uri, join

REPORT_FOLDER = "_reports"
STAGE_LAYOUTS = ("auto", "fused", "split")
_NO_CREDENTIALS = ("must not carry credentials (user:secret@): the store takes them from its own variables "
                   "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, a profile)")
_RUN_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")  # beside the outputs; never listed as output or input images


@dataclass(frozen=True)
class UpscaleJob:
    """Everything one run of the bucket job needs; every field has a command-line flag of the same name.

    Attributes:
        input, output: URIs (``s3://bucket/prefix``, ``gs://...``) or local folders.
        model: registered name (``srcore models``) or weights file; default (None): the bundled GAN / PSNR pair
            at realism 0.5 (``srcore.weights.load_upscaling_model``).
        realism: 0..1 blend of a GAN model and its PSNR partner (``srcore.weights.load_upscaling_model``).
        engine: how the network runs, and output_options: how outputs are made: the same dataclasses (and
            flags) as ``srcore upscale``'s, so a folder upscaled by either gives the same bytes.
        images_per_batch: images per actor call (and per decode or encode block); similar sizes share forward
            passes. None: 32 on GPUs, 8 on CPUs (``run.plan_layout``).
        num_gpus_per_actor: GPUs per upscaling actor; None: 1 when the cluster has GPUs, else CPU actors.
        cpus_per_actor: CPUs per actor (CPU actors use them as torch threads).
        min_actors, max_actors: the actor pool's autoscaling bounds (max default: one per GPU; on CPUs one per
            ``cpus_per_actor`` CPUs, fused, or half of them, split); all start at once.
        stage_layout: ``fused``: each actor reads, decodes, upscales, encodes and writes its images (one core's
            whole work); ``split``: decoding and encoding on CPU tasks beside the actors, which only upscale;
            ``auto``: split with GPU actors, fused with CPU actors (``stages``).
        overwrite: redo inputs whose outputs are finished.
        extensions: input file suffixes.
        limit: the first N inputs (sorted by key); sample: N inputs drawn at random (``seed``).
        report: where the report goes (default ``<output>/_reports/<run id>``).
        previews: before/after crops in report.html, chosen after the run: half the outputs least consistent
            with their inputs (LR-consistency), half a random sample.
        actor_concurrency: batches an actor works on at once (default: 2 on GPUs in the split layout, so that
            handing one batch on overlaps upscaling the next; 1 otherwise).
        input_manifest: a file that names the inputs instead of a listing of ``input``: an S3 Inventory
            ``manifest.json``, or a Parquet or CSV file with a ``key`` column (and ``size``, ``etag``).
        break_lease: take the output prefix's lease even from a run that looks alive (one you know is dead).
        wait_for_nodes: seconds the run waits, once no node in the cluster can run the actors (or the decode
            tasks), for one to join (an autoscaler's start) before it ends with the inputs not done failed.
        progress_interval: seconds between progress lines, kept while one batch takes longer (default: 10, or
            60 without progress bars).
        video_segment_seconds: videos are cut at keyframes into segments of about this length, each upscaled by
            any actor (``videos``).
    """

    input: str
    output: str
    input_manifest: str | None = None
    model: str | None = None
    realism: float | None = None
    engine: EngineOptions = field(default_factory=EngineOptions)
    output_options: OutputOptions = field(default_factory=OutputOptions)
    images_per_batch: int | None = None
    num_gpus_per_actor: float | None = None
    cpus_per_actor: float = 1
    min_actors: int = 1
    max_actors: int | None = None
    overwrite: bool = False
    extensions: tuple[str, ...] = IMAGE_SUFFIXES + VIDEO_SUFFIXES
    limit: int | None = None
    sample: int | None = None
    seed: int = 0
    report: str | None = None
    previews: int = 6
    stage_layout: str = "auto"
    actor_concurrency: int | None = None
    break_lease: bool = False
    wait_for_nodes: float = 600
    progress_interval: float | None = None
    video_segment_seconds: float = SEGMENT_SECONDS
    run_id: str = field(default_factory=new_run_id)

    def __post_init__(self):
        checks = [
            (self.images_per_batch is None or self.images_per_batch >= 1, "images-per-batch", "must be >= 1"),
            (self.num_gpus_per_actor is None or self.num_gpus_per_actor >= 0, "num-gpus-per-actor", "must be >= 0"),
            (self.cpus_per_actor > 0, "cpus-per-actor", "must be > 0"),
            (self.min_actors >= 1, "min-actors", "must be >= 1"),
            (self.max_actors is None or self.max_actors >= self.min_actors, "max-actors", "must be >= min-actors"),
            (self.limit is None or self.limit >= 0, "limit", "must be >= 0"),
            (self.sample is None or self.sample >= 0, "sample", "must be >= 0"),
            (self.stage_layout in STAGE_LAYOUTS, "stage-layout", f"must be one of {', '.join(STAGE_LAYOUTS)}"),
            (self.previews >= 0, "previews", "must be >= 0"),
            *((not credentials_in(getattr(self, name) or ""), name.replace("_", "-"), _NO_CREDENTIALS)
              for name in ("input", "output", "input_manifest", "report")),
            (self.wait_for_nodes > 0, "wait-for-nodes", "must be > 0"),
            (self.progress_interval is None or self.progress_interval > 0, "progress-interval", "must be > 0"),
            (self.video_segment_seconds > 0, "video-segment-seconds", "must be > 0"),
            (self.actor_concurrency is None or self.actor_concurrency >= 1, "actor-concurrency", "must be >= 1"),
            # it names the report's folder under <output>/_reports: a path in it could write elsewhere
            (bool(_RUN_ID.fullmatch(self.run_id)) and set(self.run_id) != {"."}, "run-id",
             "must be letters, digits, '.', '_' or '-' (at most 100)"),
        ]
        check_flags(checks, self)
        if is_inside(self.input, self.output) and is_inside(self.output, self.input):
            raise ValueError("--output must differ from --input (outputs would replace the originals)")

    @property
    def report_location(self) -> str:
        return self.report or join(self.output, REPORT_FOLDER, self.run_id)


def is_inside(parent: str, child: str) -> bool:
    p = parent.rstrip("/") if is_uri(parent) else str(Path(parent).resolve())
    c = child.rstrip("/") if is_uri(child) else str(Path(child).resolve())
    return c == p or c.startswith(p + "/")
