"""Planning on the driver: list the inputs, pick this run's, assign output keys, and set apart the ones
earlier runs finished (``finished``), a page at a time."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import weakref
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from srcore.naming import clashing, digests, renamed_keys, wanted_keys
from srcore.upscale import output_format

from ..inventory import manifest_pages
from ..listing import LISTING_SCHEMA
from ..pages import PageFile
from ..storage import Store, shared_store
from .finished import OutputIndex, ReportWord, scan_outputs, what_reports_say
from .options import UpscaleJob, is_inside
from .rows import MANIFEST_SCHEMA, conform


@dataclass
class Manifest:
    """The plan of one run, its rows spilled to local disk a page at a time (MANIFEST_SCHEMA, output_bytes)."""

    listed: int  # inputs found under the prefix
    todo: PageFile  # rows to decode: new inputs and outputs no report vouches for, by size within each page
    finished: PageFile  # rows the latest reports vouch for ("skipped")
    temporaries: list[str]  # temporary uploads under the output prefix (writers that died, or ones at work)
    leases: list[str]  # lease files under the output prefix (this run's own and nested runs')
    folder: str  # the local scratch folder that holds the pages; close() removes it

    def __post_init__(self):
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.folder, True)  # also when never closed

    @property
    def rows(self) -> int:
        return self.todo.rows + self.finished.rows

    def table(self) -> pa.Table:
        """Every row of the plan, finished ones first: for small plans (tests, dry runs)."""
        return pa.concat_tables([conform(self.finished.table(), PLAN_SCHEMA), conform(self.todo.table(), PLAN_SCHEMA)])

    def close(self) -> None:
        self._cleanup()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


PLAN_SCHEMA = pa.schema(list(MANIFEST_SCHEMA) + [("output_bytes", pa.int64())])
_LISTED_SCHEMA = pa.schema(list(LISTING_SCHEMA) + [("key", pa.string())])


def plan(job: UpscaleJob, model: str, scale: float | None = None) -> Manifest:
    """List inputs and outputs, pick the subset (limit/sample), assign output keys, tell finished outputs.

    In bounded memory for archives of millions (``bench/scale.py``): the listing streams a page at a time to a
    local scratch file, and the driver keeps only 8-byte digests per input (to find output keys that clash)
    and 16 bytes per existing output (its path's digest and size) and per report row (output and what it
    vouches for). A second pass over the pages makes the manifest rows, page by page.
    """
    source, target = shared_store(job.input), shared_store(job.output)
    exclude = (target.root,) if is_inside(job.input, job.output) else ()
    fmt = job.output_options.format
    folder = tempfile.mkdtemp(prefix="srcore-plan-")
    try:
        listed_pages = PageFile(os.path.join(folder, "listed.arrow"), _LISTED_SCHEMA)
        key_digests, path_digests = [], []
        pages = (manifest_pages(job.input_manifest, source, job.extensions, exclude) if job.input_manifest
                 else source.list_pages(job.extensions, exclude))
        for batch in pages:
            keys, found = wanted_keys(batch.column("relative").to_pylist(), fmt)
            key_digests.append(found)
            if job.input_manifest:  # a file of keys may name one twice; a listing never does
                path_digests.append(digests(batch.column("path").to_pylist()))
            listed_pages.write(pa.Table.from_batches([batch]).append_column("key", pa.array(keys, pa.string())))
        repeated = _repeated(np.concatenate(path_digests)) if path_digests else np.empty(0, np.int64)
        listed = listed_pages.rows - len(repeated)
        renamed = _renamed_keys(listed_pages, np.concatenate(key_digests) if key_digests else np.empty(0, np.uint64),
                                repeated)
        del key_digests, path_digests
        chosen = _chosen(job, listed_pages.rows, repeated)
        existing = scan_outputs(target)
        said = what_reports_say(target, existing.report_parts) if not job.overwrite else None
        manifest = Manifest(listed, PageFile(os.path.join(folder, "todo.arrow"), MANIFEST_SCHEMA),
                            PageFile(os.path.join(folder, "finished.arrow"), PLAN_SCHEMA),
                            existing.temporaries, existing.leases, folder)
        scale_value = pa.scalar(scale, pa.float32())
        offset = 0
        for page in listed_pages.pages():
            page_range = np.arange(offset, offset + page.num_rows)
            offset += page.num_rows
            keep = chosen(page_range)
            if keep is not None:
                page, page_range = page.filter(pa.array(keep)), page_range[keep]
            if not page.num_rows:
                continue
            page = _apply_renames(page, page_range, renamed)
            rows = _rows(page, source, target, model, scale_value, job, existing, said)
            manifest.finished.write(rows.filter(pc.equal(rows.column("status"), "skipped")))
            todo = rows.filter(pc.not_equal(rows.column("status"), "skipped"))
            # similar sizes next to each other, so actor batches hold images that share forward passes
            todo = todo.sort_by([("input_bytes", "ascending"), ("input", "ascending")])
            manifest.todo.write(todo)
        listed_pages.remove()
        manifest.todo.close()
        manifest.finished.close()
        return manifest
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _repeated(path_digests: np.ndarray) -> np.ndarray:
    """Indices of the entries whose path an earlier entry already named."""
    order = np.argsort(path_digests, kind="stable")
    ordered = path_digests[order]
    return np.sort(order[1:][ordered[1:] == ordered[:-1]])


def _renamed_keys(listed_pages: PageFile, key_digests: np.ndarray, repeated: np.ndarray) -> dict[int, str]:
    """Output keys of the inputs whose wanted keys clash (by listing index): one more pass over the pages,
    only where digests collide (usually none). Repeated entries are not inputs of their own."""
    candidates = np.setdiff1d(clashing(key_digests), repeated)
    if not len(candidates):
        return {}
    found, offset = [], 0
    for page in listed_pages.pages():
        local = candidates[(candidates >= offset) & (candidates < offset + page.num_rows)] - offset
        if len(local):
            picked = page.take(local)
            found += [(int(i) + offset, k, r) for i, k, r in zip(local, picked.column("key").to_pylist(),
                                                                 picked.column("relative").to_pylist(), strict=True)]
        offset += page.num_rows
    return renamed_keys(found)


def _chosen(job: UpscaleJob, entries: int, repeated: np.ndarray):
    """A function of a page's listing indices: which of them this run takes (None: all), for --sample (the
    same draw as sampling the sorted listing) and --limit (the first ones left), repeated entries left out."""
    picked = None
    if len(repeated):
        picked = np.setdiff1d(np.arange(entries), repeated)
    listed = entries - len(repeated)
    if job.sample is not None and job.sample < listed:
        draw = np.array(sorted(random.Random(job.seed).sample(range(listed), job.sample)), np.int64)
        picked = picked[draw] if picked is not None else draw
    if job.limit is not None:
        picked = (picked if picked is not None else np.arange(min(job.limit, listed)))[: job.limit]
    if picked is None:
        return lambda indices: None
    return lambda indices: np.isin(indices, picked)


def _apply_renames(page: pa.Table, indices: np.ndarray, renamed: dict[int, str]) -> pa.Table:
    if not renamed:
        return page
    hit = [(i, renamed[int(index)]) for i, index in enumerate(indices) if int(index) in renamed]
    if not hit:
        return page
    mask = np.zeros(page.num_rows, bool)
    mask[[i for i, _ in hit]] = True
    keys = pc.replace_with_mask(page.column("key").combine_chunks(), pa.array(mask),
                                pa.array([k for _, k in hit], pa.string()))
    return page.set_column(page.schema.get_field_index("key"), "key", keys)


def _rows(page: pa.Table, source: Store, target: Store, model: str, scale: pa.Scalar, job: UpscaleJob,
          existing: OutputIndex, said: ReportWord | None) -> pa.Table:
    """The manifest rows (PLAN_SCHEMA) of one page of the listing: status "skipped" where the latest report
    vouches for the output, "exists" where an output is there but unvouched, "" for new ones."""
    n = page.num_rows
    output_key = pc.binary_join_element_wise(target.root + "/", page.column("key"), "")
    found, found_bytes = existing.lookup(output_key.to_pylist())
    rows = pa.table({
        "input": _uris(source, page.column("path")), "output": _uris(target, output_key),
        "input_key": page.column("path"), "output_key": output_key,
        "input_version": page.column("version"), "input_bytes": page.column("size"),
        "model": pa.repeat(pa.scalar(model, pa.string()), n), "scale": pa.repeat(scale, n),
        "run": pa.repeat(pa.scalar(job.run_id, pa.string()), n),
        "output_format": output_formats(page.column("relative"), job.output_options.format),
        "status": pa.array(np.where(found, "exists", ""), pa.string()),
        "output_bytes": pa.nulls(n, pa.int64()),
    })
    if said is None or not found.any():
        return rows
    vouched = said.vouches(rows, found, found_bytes)
    status = np.where(vouched, "skipped", np.where(found, "exists", ""))
    rows = rows.set_column(rows.schema.get_field_index("status"), "status", pa.array(status, pa.string()))
    return rows.set_column(rows.schema.get_field_index("output_bytes"), "output_bytes",
                           pa.array(np.where(vouched, found_bytes, 0), pa.int64(), mask=~vouched))


def output_formats(relatives: pa.ChunkedArray, fmt: str | None) -> pa.Array:
    """The output format of each input (:func:`srcore.upscale.output_format`: by extension, or ``fmt``)."""
    # posixpath.splitext's extension: the basename's last dot segment, after at least one other character
    extensions = pc.struct_field(pc.extract_regex(relatives, r"[^/.][^/]*(?P<ext>\.[^./]*)$"), [0])
    distinct = pc.unique(extensions).to_pylist()
    formats = pa.array([output_format(f"x{e or ''}", fmt) for e in distinct], pa.string())
    return formats.take(pc.index_in(extensions, value_set=pa.array(distinct, pa.string())))


def _uris(store: Store, paths: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """:meth:`Store.uri` over a column."""
    prefix = store.uri("")
    return pc.binary_join_element_wise(prefix, paths, "") if prefix else paths


