"""Planning on the driver: list inputs and outputs, assign output keys, and tell finished outputs."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from srcore.imageio import read_provenance
from srcore.upscale import output_format

from ..keys import plan_output_keys
from ..storage import Store
from .options import REPORT_FOLDER, UpscaleJob, _inside

PROVENANCE_PROBE_BYTES = 1 << 16


@dataclass
class Manifest:
    rows: pa.Table  # MANIFEST_SCHEMA and output_bytes: one row per input to handle in this run
    listed: int  # inputs found under the prefix
    temporaries: list[str]  # temporary uploads under the output prefix (writers that died, or ones at work)
    outputs: pa.Table  # every other path under the output prefix (outputs, reports, leases): path, size


def plan(job: UpscaleJob, model: str, scale: float | None = None) -> Manifest:
    """List inputs and finished-looking outputs, pick the subset (limit/sample), assign output keys.

    Columnar from the listing on (Arrow tables, joins by ``pyarrow.compute``): a few hundred bytes of driver
    memory per input, so archives of millions plan on a small driver (``bench/scale.py``).
    """
    source, target = _store(job.input), _store(job.output)
    exclude = (target.root,) if _inside(job.input, job.output) else ()
    entries = source.list_table(job.extensions, exclude)
    listed = entries.num_rows
    fmt = job.output_options.format
    keys = plan_output_keys(entries.column("relative"), fmt)  # over every listed input: no two share one
    entries = entries.append_column("key", keys).append_column("format", _formats(entries.column("relative"), fmt))
    del keys
    if job.sample is not None and job.sample < listed:  # the same draw as sampling the sorted entries
        entries = entries.take(sorted(random.Random(job.seed).sample(range(listed), job.sample)))
    if job.limit is not None:
        entries = entries.slice(0, job.limit)
    outputs, temporaries = _existing_outputs(target)
    n = entries.num_rows
    output_key = pc.binary_join_element_wise(target.root + "/", entries.column("key"), "")
    exists = pc.is_in(output_key, value_set=outputs.column("path"))
    rows = pa.table({
        "input": _uris(source, entries.column("path")), "output": _uris(target, output_key),
        "input_key": entries.column("path"), "output_key": output_key,
        "input_version": entries.column("version"), "input_bytes": entries.column("size"),
        "model": pa.repeat(pa.scalar(model, pa.string()), n),
        "scale": pa.repeat(pa.scalar(scale, pa.float32()), n),
        "run": pa.repeat(pa.scalar(job.run_id, pa.string()), n),
        "output_format": entries.column("format"),
        "status": pc.if_else(exists, "exists", ""),
        "preview": pa.repeat(pa.scalar(None, pa.bool_()), n),
        "output_bytes": pa.repeat(pa.scalar(None, pa.int64()), n),
    })
    del entries, output_key, exists
    if not job.overwrite:
        rows = _skip_what_reports_vouch_for(target, rows, outputs)
    # similar sizes next to each other, so actor batches hold images that share forward passes
    rows = rows.sort_by([("input_bytes", "ascending"), ("input", "ascending")])
    if job.previews:  # spread over the size range, among inputs with no output yet
        todo = np.flatnonzero(pc.equal(rows.column("status"), "").to_numpy(zero_copy_only=False))
        chosen = todo[:: max(1, len(todo) // job.previews)][: job.previews]
        preview = np.zeros(rows.num_rows, bool)
        preview[chosen] = True
        rows = rows.set_column(rows.schema.get_field_index("preview"), "preview",
                               pa.array(np.where(preview, True, None), pa.bool_()))
    return Manifest(rows, listed, temporaries, outputs)


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


def _existing_outputs(target: Store) -> tuple[pa.Table, list[str]]:
    """Paths under the output prefix with their sizes (path, size), and the ``.name.<id>.tmp`` uploads."""
    try:
        listing = target.list_table(extensions=None, hidden=None)
    except FileNotFoundError:
        return pa.table({"path": pa.array([], pa.string()), "size": pa.array([], pa.int64())}), []
    paths = listing.column("path")
    hidden = pc.match_substring_regex(paths, r"(^|/)\.[^/]*$")  # names starting with a dot
    temporaries = listing.filter(pc.and_(hidden, pc.ends_with(paths, ".tmp"))).column("path").to_pylist()
    if pc.any(hidden).as_py():
        listing = listing.filter(pc.invert(hidden))
    return listing.select(["path", "size"]), temporaries


REPORTED_FINISHED = ("ok", "skipped")


def _skip_what_reports_vouch_for(target: Store, rows: pa.Table, outputs: pa.Table) -> pa.Table:
    """Mark ``skipped`` the rows whose output the latest report to mention it says was written (or found
    finished) from this input version with this model and scale, and which is still there at that size.

    One read of the earlier reports' rows replaces a provenance read per output: a rerun over a finished archive
    starts no task for them. Outputs no report vouches for are checked by their provenance, as before. Only the
    latest word on each output counts (reports are named by their run's start time), so an output that a later
    run replaced with another model's is not taken for this one's. Joins run in Arrow: no Python object per row.
    """
    prefix = f"{target.root}/{REPORT_FOLDER}/"
    paths = outputs.column("path")
    is_part = pc.and_(pc.and_(pc.starts_with(paths, prefix), pc.match_substring(paths, "/rows/")),
                      pc.ends_with(paths, ".parquet"))
    parts = sorted(outputs.filter(is_part).column("path").to_pylist())
    if not parts or not pc.any(pc.equal(rows.column("status"), "exists")).as_py():
        return rows
    columns = ["input", "input_version", "model", "scale", "output", "status", "output_bytes"]
    try:  # the latest report first: a report names each output once, so an output's first row is its latest
        said = pa.concat_tables([pq.read_table(part, filesystem=target.fs, columns=columns)
                                 for part in reversed(parts)])
    except Exception as exc:  # an unreadable report: every output is checked by its provenance instead
        print(f"[srcore] warning: earlier reports unreadable ({type(exc).__name__}: {exc}); checking each "
              "output's provenance instead", flush=True)
        return rows
    word = pc.index_in(rows.column("output"), value_set=said.column("output"))  # each row's latest word
    found = pc.index_in(rows.column("output_key"), value_set=outputs.column("path"))
    found_bytes = outputs.column("size").take(found)
    said_bytes = said.column("output_bytes").take(word)
    # a latest word that is not "finished" (a later run failed on it) vouches for nothing: provenance decides
    vouched = pc.and_(pc.equal(rows.column("status"), "exists"),
                      pc.is_in(said.column("status").take(word), value_set=pa.array(REPORTED_FINISHED)))
    for column in ("input", "input_version", "model"):
        vouched = pc.and_(vouched, pc.equal(rows.column(column), said.column(column).take(word)))
    said_scale = pc.cast(said.column("scale"), pa.float32()).take(word)
    vouched = pc.and_(vouched, pc.and_(pc.equal(rows.column("scale"), said_scale),
                                       pc.equal(found_bytes, said_bytes)))
    vouched = pc.fill_null(vouched, False)
    status = pc.if_else(vouched, "skipped", rows.column("status"))
    rows = rows.set_column(rows.schema.get_field_index("status"), "status", status)
    return rows.set_column(rows.schema.get_field_index("output_bytes"), "output_bytes",
                           pc.if_else(vouched, found_bytes, pa.scalar(None, pa.int64())))


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
