"""What is finished under the output prefix: an index of its objects, the latest word of earlier reports on
each output, an output's own provenance; and the temporaries that killed writers left."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from srcore.naming import digests
from srcore.provenance import is_output_of

from ..pages import PAGE_ROWS
from ..storage import Store
from .options import REPORT_FOLDER


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


def what_reports_say(target: Store, parts: list[str]) -> ReportWord | None:
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
            with target.open_read(part) as f:
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


def output_is_finished(target: Store, row: dict, run: str | None = None) -> bool:
    """Does the output carry this input's version, this model and scale (written by any earlier run, or with
    ``run`` only by that run: an earlier attempt of a task retried or re-run after its worker or node was
    lost, which may have finished the write before its result was lost with it)?

    An output that cannot be read back counts as unfinished: it is made again.
    """
    path = row["output_key"]
    try:
        size = target.size(path)
    except OSError:
        return False
    if is_output_of(lambda start, end: target.read(path, start, end), size, row["input_version"], row["model"],
                    row["scale"], run):
        row["output_bytes"] = size
        return True
    return False
