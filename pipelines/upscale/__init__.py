"""Upscale every image under a prefix with Ray Data: list, read and decode on CPU tasks, upscale, encode and
write on an actor pool (GPUs when the cluster has them), and report on every input.

    plan (driver: pages on local disk) -> read tasks -> read_and_decode (CPU tasks) -> UpscaleWriter (actors)
        -> report parts (driver, written as rows come)

Only the decoded inputs travel through the object store: outputs are encoded and written inside the actor,
on a thread pool that overlaps the next forward passes, and a small report row comes back per input. The
driver holds no table of every input: listings and plans stream a page at a time (``pages``), inputs can
come from a listing or a file of keys (``pipelines.inventory``: S3 Inventory, Parquet, CSV), and report
rows go to Parquet parts as they arrive.

Reruns resume: each output carries its input's etag (or mtime), the model id and scale in its XMP, and is
written atomically, so an output that exists with matching provenance is finished and skipped.

Modules, in the order a run uses them: ``options`` (UpscaleJob), ``plan`` (listing, output keys, the
manifest's pages), ``finished`` (the output prefix's index, earlier reports, provenance), ``pages`` (the
plan's pages on disk and the Ray Data source that reads them), ``stages`` (decode tasks, the upscaling
actor), ``quality`` (preview crops), ``rows`` (Arrow schemas), ``run`` (the driver).
"""

from .finished import output_is_finished
from .options import REPORT_FOLDER, UpscaleJob
from .plan import Manifest, plan
from .quality import preview_pair
from .rows import OUTPUT_SCHEMA, REPORT_SCHEMA
from .run import RunResult, run
from .stages import UpscaleWriter, read_and_decode

__all__ = ["OUTPUT_SCHEMA", "REPORT_FOLDER", "REPORT_SCHEMA", "Manifest", "RunResult", "UpscaleJob", "UpscaleWriter",
           "output_is_finished", "plan", "preview_pair", "read_and_decode", "run"]
