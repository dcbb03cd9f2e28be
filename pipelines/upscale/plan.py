"""Planning on the driver: list inputs and outputs, assign output keys, and tell finished outputs."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

import pyarrow.parquet as pq

from srcore.imageio import read_provenance
from srcore.upscale import output_format

from ..keys import plan_outputs
from ..storage import Store
from .options import REPORT_FOLDER, UpscaleJob, _inside

PROVENANCE_PROBE_BYTES = 1 << 16


@dataclass
class Manifest:
    rows: list[dict]  # one per input to handle in this run
    listed: int  # inputs found under the prefix
    temporaries: list[str]  # temporary uploads under the output prefix (writers that died, or ones at work)
    outputs: dict[str, int]  # every other path under the output prefix (outputs, reports, leases): its size


def plan(job: UpscaleJob, model: str, scale: float | None = None) -> Manifest:
    """List inputs and finished-looking outputs, pick the subset (limit/sample), assign output keys."""
    source, target = _store(job.input), _store(job.output)
    exclude = (target.root,) if _inside(job.input, job.output) else ()
    entries = source.list(job.extensions, exclude=exclude)
    listed = len(entries)
    keys = plan_outputs([e.relative for e in entries], job.output_options.format)
    if job.sample is not None and job.sample < len(entries):
        entries = sorted(random.Random(job.seed).sample(entries, job.sample), key=lambda e: e.path)
    if job.limit is not None:
        entries = entries[: job.limit]
    existing, temporaries = _existing_outputs(target)
    rows = []
    for e in entries:
        key = keys[e.relative]
        out_path = f"{target.root}/{key}"
        rows.append({
            "input": source.uri(e.path), "output": target.uri(out_path), "output_key": out_path, "input_key": e.path,
            "input_version": e.version, "input_bytes": e.size, "model": model, "scale": scale, "run": job.run_id,
            "output_format": output_format(e.relative, job.output_options.format),
            "status": "exists" if out_path in existing else "",
        })
    if not job.overwrite:
        _skip_what_reports_vouch_for(target, rows, existing)
    # similar sizes next to each other, so actor batches hold images that share forward passes
    rows.sort(key=lambda r: (r["input_bytes"], r["input"]))
    todo = [i for i, r in enumerate(rows) if not r["status"]]
    if job.previews:  # spread over the size range
        for i in todo[:: max(1, len(todo) // job.previews)][: job.previews]:
            rows[i]["preview"] = True
    return Manifest(rows, listed, temporaries, existing)


def _existing_outputs(target: Store) -> tuple[dict[str, int], list[str]]:
    """Paths under the output prefix with their sizes, and the ``.name.<id>.tmp`` uploads (one listing)."""
    try:
        entries = target.list(extensions=None, hidden=None)
    except FileNotFoundError:
        return {}, []
    existing, temporaries = {}, []
    for entry in entries:
        if not entry.path.rsplit("/", 1)[-1].startswith("."):
            existing[entry.path] = entry.size
        elif entry.path.endswith(".tmp"):
            temporaries.append(entry.path)
    return existing, temporaries


REPORTED_FINISHED = ("ok", "skipped")


def _skip_what_reports_vouch_for(target: Store, rows: list[dict], existing: dict[str, int]) -> int:
    """Mark ``skipped`` the rows whose output the latest report to mention it says was written (or found
    finished) from this input version with this model and scale, and which is still there at that size.

    One read of the earlier reports' rows replaces a provenance read per output: a rerun over a finished archive
    starts no task for them. Outputs no report vouches for are checked by their provenance, as before. Only the
    latest word on each output counts (reports are named by their run's start time), so an output that a later
    run replaced with another model's is not taken for this one's.
    """
    prefix = f"{target.root}/{REPORT_FOLDER}/"
    parts = sorted(p for p in existing if p.startswith(prefix) and "/rows/" in p and p.endswith(".parquet"))
    candidates = [r for r in rows if r["status"] == "exists"]
    if not parts or not candidates:
        return 0
    latest: dict[str, tuple] = {}
    columns = ["input", "input_version", "model", "scale", "output", "status", "output_bytes"]
    try:
        for part in parts:
            for r in pq.read_table(part, filesystem=target.fs, columns=columns).to_pylist():
                if r["status"] in REPORTED_FINISHED and r["output_bytes"] is not None:
                    latest[r["output"]] = (r["input"], r["input_version"], r["model"], f"{r['scale']:g}",
                                           r["output_bytes"])
    except Exception as exc:  # an unreadable report: every output is checked by its provenance instead
        print(f"[srcore] warning: earlier reports unreadable ({type(exc).__name__}: {exc}); checking each "
              "output's provenance instead", flush=True)
        return 0
    skipped = 0
    for row in candidates:
        word = latest.get(row["output"])
        want = (row["input"], row["input_version"], row["model"], f"{row['scale']:g}")
        if word and word[:4] == want and existing.get(row["output_key"]) == word[4]:
            row.update(status="skipped", output_bytes=word[4])
            skipped += 1
    return skipped


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
