"""Planning on the driver: list inputs and outputs, assign output keys, and tell finished outputs."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from srcore.imageio import read_provenance
from srcore.upscale import output_format

from ..inventory import manifest_pages
from ..keys import clashing, digests, renamed_keys, wanted_keys
from ..storage import Store
from .options import REPORT_FOLDER, UpscaleJob, _inside
from .pages import PAGE_ROWS, PageFile
from .rows import MANIFEST_SCHEMA, conform

PROVENANCE_PROBE_BYTES = 1 << 16


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
_LISTED_SCHEMA = pa.schema([("path", pa.string()), ("relative", pa.string()), ("size", pa.int64()),
                            ("version", pa.string()), ("key", pa.string())])


def plan(job: UpscaleJob, model: str, scale: float | None = None) -> Manifest:
    """List inputs and outputs, pick the subset (limit/sample), assign output keys, tell finished outputs.

    In bounded memory for archives of millions (``bench/scale.py``): the listing streams a page at a time to a
    local scratch file, and the driver keeps only 8-byte digests per input (to find output keys that clash)
    and 16 bytes per existing output (its path's digest and size) and per report row (output and what it
    vouches for). A second pass over the pages makes the manifest rows, page by page.
    """
    source, target = _store(job.input), _store(job.output)
    exclude = (target.root,) if _inside(job.input, job.output) else ()
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
        said = _what_reports_say(target, existing.report_parts) if not job.overwrite else None
        manifest = Manifest(listed, PageFile(os.path.join(folder, "todo.arrow"), MANIFEST_SCHEMA),
                            PageFile(os.path.join(folder, "finished.arrow"), PLAN_SCHEMA),
                            existing.temporaries, existing.leases, folder)
        scale_value = pa.scalar(scale, pa.float32())
        previews_left, offset = job.previews, 0
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
            if previews_left:
                todo, previews_left = _mark_previews(todo, previews_left)
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
        "output_format": _formats(page.column("relative"), job.output_options.format),
        "status": pa.array(np.where(found, "exists", ""), pa.string()),
        "preview": pa.nulls(n, pa.bool_()),
        "output_bytes": pa.nulls(n, pa.int64()),
    })
    if said is None or not found.any():
        return rows
    vouched = said.vouches(rows, found, found_bytes)
    status = np.where(vouched, "skipped", np.where(found, "exists", ""))
    rows = rows.set_column(rows.schema.get_field_index("status"), "status", pa.array(status, pa.string()))
    return rows.set_column(rows.schema.get_field_index("output_bytes"), "output_bytes",
                           pa.array(np.where(vouched, found_bytes, 0), pa.int64(), mask=~vouched))


def _mark_previews(todo: pa.Table, wanted: int) -> tuple[pa.Table, int]:
    """Mark up to ``wanted`` previews spread over this page's size range, among inputs with no output yet."""
    new = np.flatnonzero(pc.equal(todo.column("status"), "").to_numpy(zero_copy_only=False))
    chosen = new[:: max(1, len(new) // wanted)][:wanted]
    preview = np.zeros(todo.num_rows, bool)
    preview[chosen] = True
    todo = todo.set_column(todo.schema.get_field_index("preview"), "preview",
                           pa.array(np.where(preview, True, None), pa.bool_()))
    return todo, wanted - len(chosen)


def _formats(relatives: pa.ChunkedArray, fmt: str | None) -> pa.Array:
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


@dataclass
class OutputIndex:
    """What is under the output prefix, in 16 bytes an object: sorted digests of the paths, and sizes."""

    path_digests: np.ndarray
    sizes: np.ndarray
    temporaries: list[str]  # ``.name.<id>.tmp`` uploads
    leases: list[str]  # ``_reports/lease.json`` files (this prefix's and nested ones)
    report_parts: list[str]  # ``_reports/<run>/rows/*.parquet``, sorted (oldest run first)

    def lookup(self, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(found, size) for each path."""
        wanted = digests(paths)
        at = np.minimum(np.searchsorted(self.path_digests, wanted), max(0, len(self.path_digests) - 1))
        found = (self.path_digests[at] == wanted) if len(self.path_digests) else np.zeros(len(paths), bool)
        return found, np.where(found, self.sizes[at] if len(self.sizes) else 0, 0)


def scan_outputs(target: Store) -> OutputIndex:
    """One listing of the output prefix, a page at a time, into an :class:`OutputIndex`."""
    path_digests, sizes, temporaries, leases, parts = [], [], [], [], []
    reports = f"{target.root}/{REPORT_FOLDER}/"
    try:
        for batch in target.list_pages(extensions=None, hidden=None):
            paths = batch.column("path")
            hidden = pc.match_substring_regex(paths, r"(^|/)\.[^/]*$")  # names starting with a dot
            temporaries += batch.filter(pc.and_(hidden, pc.ends_with(paths, ".tmp"))).column("path").to_pylist()
            batch = batch.filter(pc.invert(hidden))
            paths = batch.column("path")
            leases += batch.filter(pc.ends_with(paths, "/_reports/lease.json")).column("path").to_pylist()
            parts += batch.filter(pc.and_(pc.and_(pc.starts_with(paths, reports), pc.match_substring(paths, "/rows/")),
                                          pc.ends_with(paths, ".parquet"))).column("path").to_pylist()
            path_digests.append(digests(paths.to_pylist()))
            sizes.append(batch.column("size").to_numpy())
    except FileNotFoundError:
        pass
    path_digests = np.concatenate(path_digests) if path_digests else np.empty(0, np.uint64)
    sizes = np.concatenate(sizes) if sizes else np.empty(0, np.int64)
    order = np.argsort(path_digests)
    return OutputIndex(path_digests[order], sizes[order], temporaries, leases, sorted(parts))


REPORTED_FINISHED = ("ok", "skipped")


@dataclass
class ReportWord:
    """The latest word of earlier reports on each output they mention: the digest of the output's URI and
    the digest of what it vouches for (input, input version, model, scale and output size; 0 where the latest
    word is not "finished": a later run failed on it)."""

    outputs: np.ndarray  # sorted
    vouched: np.ndarray

    def vouches(self, rows: pa.Table, found: np.ndarray, found_bytes: np.ndarray) -> np.ndarray:
        """Which rows' outputs the latest word says were written from this input version with this model and
        scale, and are still there at that size."""
        if not len(self.outputs):
            return np.zeros(rows.num_rows, bool)
        wanted = digests(rows.column("output").to_pylist())
        at = np.minimum(np.searchsorted(self.outputs, wanted), len(self.outputs) - 1)
        mine = _vouch_digests(rows.column("input"), rows.column("input_version"), rows.column("model"),
                              rows.column("scale"), pa.array(found_bytes, pa.int64()))
        return found & (self.outputs[at] == wanted) & (self.vouched[at] == mine) & (mine != 0)


def _vouch_digests(inputs, versions, models, scales, sizes) -> np.ndarray:
    columns = [c.to_pylist() for c in (inputs, versions, models, scales, sizes)]
    return digests(["\0".join(map(repr, values)) for values in zip(*columns, strict=True)])


def _what_reports_say(target: Store, parts: list[str]) -> ReportWord | None:
    """Read earlier reports' rows, the latest report first, a batch at a time, into a :class:`ReportWord`.

    One read of the reports replaces a provenance read per output: a rerun over a finished archive starts no
    task for them. Outputs no report vouches for are checked by their provenance, as before. Only the latest
    word on each output counts (reports are named by their run's start time), so an output that a later run
    replaced with another model's is not taken for this one's.
    """
    if not parts:
        return None
    columns = ["input", "input_version", "model", "scale", "output", "status", "output_bytes"]
    outputs, vouched = [], []
    try:  # the latest report first: a report names each output once, so an output's first row is its latest
        for part in reversed(parts):
            with target.fs.open(part, "rb") as f:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=PAGE_ROWS, columns=columns):
                    word = _vouch_digests(batch.column("input"), batch.column("input_version"),
                                          batch.column("model"), pc.cast(batch.column("scale"), pa.float32()),
                                          batch.column("output_bytes"))
                    finished = pc.is_in(batch.column("status"), value_set=pa.array(REPORTED_FINISHED))
                    vouched.append(np.where(pc.fill_null(finished, False).to_numpy(zero_copy_only=False), word, 0))
                    outputs.append(digests(batch.column("output").to_pylist()))
    except Exception as exc:  # an unreadable report: every output is checked by its provenance instead
        print(f"[srcore] warning: earlier reports unreadable ({type(exc).__name__}: {exc}); checking each "
              "output's provenance instead", flush=True)
        return None
    outputs = np.concatenate(outputs) if outputs else np.empty(0, np.uint64)
    vouched = np.concatenate(vouched).astype(np.uint64) if vouched else np.empty(0, np.uint64)
    latest, first = np.unique(outputs, return_index=True)  # the first row of each output: its latest word
    return ReportWord(latest, vouched[first])


def remove_temporaries(target: Store, paths: list[str]) -> int:
    """Delete temporary uploads; call only while holding the output's lease (their writers are gone then)."""
    removed = 0
    for path in paths:
        try:
            target.delete(path)
            removed += 1
        except OSError:
            pass
    return removed


@lru_cache(maxsize=8)
def _store(location: str) -> Store:
    return Store(location)


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
