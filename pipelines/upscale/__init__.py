"""Upscale every image under a prefix with Ray Data: read, decode, upscale, encode, score and write every input,
on CPU or GPU actors, and report on every input.

    fused (CPU nodes):  plan (driver: pages on local disk) -> read tasks -> UpscaleWriter (actors: the whole
                        work of each image) -> report parts (driver, written as rows come)
    split (GPU nodes):  plan -> read tasks -> read_and_decode (CPU tasks) -> UpscaleWriter (GPU actors)
                        -> encode_and_write (CPU tasks) -> report parts

``run.plan_layout`` picks the layout and sizes the pools from the cluster's resources; ``stages`` says what
crosses the object store in each. The driver holds no table of every input: listings and plans stream a page
at a time (``pipelines.pages``), inputs can come from a listing or a file of keys (``pipelines.inventory``: S3
Inventory, Parquet, CSV), and report rows go to Parquet parts as they arrive.

Reruns resume: each output carries its input's etag (or mtime), the model id and scale in its XMP, and is
written atomically, so an output that exists with matching provenance is finished and skipped.

Modules, in the order a run uses them: ``options`` (UpscaleJob), ``plan`` (listing, output keys, the
manifest's pages), ``finished`` (the output prefix's index, earlier reports, provenance), ``stages`` (the
decode and encode tasks, the upscaling actor), ``quality`` (preview crops), ``rows`` (Arrow schemas), ``report`` and
``report_html`` (the report's rows, summary and page), ``run`` (the layout and the driver).
"""

from .finished import output_is_finished
from .options import REPORT_FOLDER, UpscaleJob
from .plan import Manifest, plan
from .quality import preview_pair
from .rows import REPORT_SCHEMA
from .run import RunResult, run
from .stages import UpscaleWriter, read_and_decode

__all__ = ["REPORT_FOLDER", "REPORT_SCHEMA", "Manifest", "RunResult", "UpscaleJob", "UpscaleWriter",
           "output_is_finished", "plan", "preview_pair", "read_and_decode", "run"]
