"""The bucket job's report: a Parquet dataset (one row per input), summary.json and a self-contained report.html.

All three are written atomically beside the outputs, so a reader never sees a half-written report.
"""

from __future__ import annotations

import heapq
import io
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from srcore.imageio import decode
from srcore.redact import redact
from srcore.video import is_video, middle_frame

from ..storage import Store, join, retries_in_process, store_of
from .quality import preview_pair
from .report_html import HISTOGRAMS, INVENTED, TABLE_COLUMNS, render_html
from .rows import REPORT_SCHEMA, conform

ROWS_PER_PART = 1 << 16
TABLE_ROWS = 100_000  # rows embedded in report.html's table (all of them are in rows/*.parquet)
MAX_CAUSES = 50
STAGES = ("read", "decode", "upscale", "encode", "write", "check")
PREVIEW_INPUT_PIXELS = 96  # the input crop's side; the output crop is this times the scale
PREVIEW_MAX_BYTES = 256 << 20


class ReportWriter:
    """A run's report, written as its rows come: Parquet parts of ROWS_PER_PART rows as each fills, then
    summary.json and report.html from what was kept on the way (counts, sums per device and stage, failure
    causes, the few numbers per upscaled image its histograms need, up to TABLE_ROWS rows for the page's
    table, the preview candidates). The driver never holds every row.

    Parts are written atomically as they fill, so a run that is killed leaves the rows it finished for the
    next run to trust. Previews are chosen after processing: the ``previews`` // 2 outputs least consistent
    with their inputs and a random sample; :meth:`finish` reads those few back to crop them.
    """

    def __init__(self, location: str, previews: int = 6, seed: int = 0, driver_retries_at_start: int | None = None):
        """``driver_retries_at_start``: this process's S3 retry count when the run began (its listing's
        retries count too); default now."""
        self.location = location
        self.store_retries = 0
        self.driver_retries_at_start = retries_in_process() if driver_retries_at_start is None \
            else driver_retries_at_start
        self.store = Store(location)
        self.pending: list[pa.Table] = []
        self.pending_rows = self.parts = 0
        self.counts = {"ok": 0, "skipped": 0, "failed": 0}
        self.model = self.scale = None
        self.in_mp = self.out_mp = 0.0
        self.histograms: dict[str, list[np.ndarray]] = {title: [] for title in HISTOGRAMS}
        self.causes: dict[str, dict] = {}
        self.by_device: dict[tuple, dict] = {}
        self.stages = dict.fromkeys(STAGES, 0.0)
        self.table: dict[str, list] = {c: [] for c in TABLE_COLUMNS}
        self.worst: list[tuple[float, str, str]] = []  # (lr_psnr, input, output), lowest first
        self.sample: list[tuple[float, str, str]] = []
        self.seen_ok = 0
        self.wanted_previews = previews
        self.rng = np.random.default_rng(seed)
        self.devices: set[str] = set()
        self.nodes: set[str] = set()
        self.videos = self.frames = 0  # videos upscaled, and their frames
        self.flicker: list[float] = []  # each video's temporal stability (srcore.video.Flicker)

    def add(self, rows: pa.Table) -> None:
        """Take report rows (REPORT_SCHEMA; other columns are ignored)."""
        if not rows.num_rows:
            return
        rows = conform(rows, REPORT_SCHEMA)
        errors = rows.column("error")
        if errors.null_count < rows.num_rows:  # a store's error may quote a signed URL or an endpoint's password
            rows = rows.set_column(rows.schema.get_field_index("error"), "error",
                                   pa.array([None if e is None else redact(e) for e in errors.to_pylist()],
                                            errors.type))
        self._tally(rows)
        self.store_retries += pc.sum(rows.column("store_retries")).as_py() or 0
        self.pending.append(rows)
        self.pending_rows += rows.num_rows
        while self.pending_rows >= ROWS_PER_PART:
            self._write_part(ROWS_PER_PART)

    def _tally(self, rows: pa.Table) -> None:
        status = rows.column("status")
        for key in self.counts:
            self.counts[key] += pc.sum(pc.equal(status, key)).as_py() or 0
        if self.model is None:
            self.model, self.scale = rows.column("model")[0].as_py(), rows.column("scale")[0].as_py()
        self._table_rows(rows)
        for row in rows.filter(pc.equal(status, "failed")).select(["input", "error"]).to_pylist():
            cause = failure_cause(row["input"], row["error"])
            entry = self.causes.get(cause)
            if entry is None and len(self.causes) >= MAX_CAUSES:
                cause, entry = "other causes", self.causes.get("other causes")
            entry = entry or self.causes.setdefault(cause, {"cause": cause, "count": 0, "examples": []})
            entry["count"] += 1
            if len(entry["examples"]) < 3:
                entry["examples"].append(row["input"])
        ok = rows.filter(pc.equal(status, "ok"))
        if not ok.num_rows:
            return
        number = {c: ok.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                  for c in ("input_width", "input_height", "output_width", "output_height", "upscale_s", "lr_psnr",
                            "invented_share")}
        frames = ok.column("frames").fill_null(1).to_numpy(zero_copy_only=False).astype(np.float64)  # an image: 1
        in_mp = number["input_width"] * number["input_height"] * frames / 1e6
        out_mp = number["output_width"] * number["output_height"] * frames / 1e6
        videos = ok.filter(pc.is_valid(ok.column("frames")))
        self.videos += videos.num_rows
        self.frames += int(pc.sum(videos.column("frames")).as_py() or 0)
        self.flicker += [f for f in videos.column("flicker").to_pylist() if f is not None]
        self.in_mp += float(np.nansum(in_mp))
        self.out_mp += float(np.nansum(out_mp))
        with np.errstate(divide="ignore", invalid="ignore"):
            values = {"LR-consistency PSNR (dB)": number["lr_psnr"],
                      INVENTED: 100 * number["invented_share"],
                      "input megapixels": in_mp,
                      "upscale seconds per output megapixel": number["upscale_s"] / out_mp}
        for title, v in values.items():
            self.histograms[title].append(v[np.isfinite(v)].astype(np.float32))
        for stage in STAGES:
            self.stages[stage] += float(pc.sum(ok.column(f"{stage}_s")).as_py() or 0)
        devices, nodes = ok.column("device").to_pylist(), ok.column("node").to_pylist()
        for i, (device, node) in enumerate(zip(devices, nodes, strict=True)):
            d = self.by_device.setdefault((device, node), {"device": device, "node": node, "images": 0,
                                                           "output_megapixels": 0.0, "upscale_s": 0.0})
            d["images"] += 1
            d["output_megapixels"] += float(np.nan_to_num(out_mp[i]))
            d["upscale_s"] += float(np.nan_to_num(number["upscale_s"][i]))
        self.devices.update(d for d in devices if d)
        self.nodes.update(n for n in nodes if n)
        self._preview_candidates(ok, number["lr_psnr"])

    def _table_rows(self, rows: pa.Table) -> None:
        room = TABLE_ROWS - len(self.table["input"])
        if room <= 0:
            return
        for r in rows.slice(0, room).to_pylist():
            values = {"input": r["input"], "status": r["status"], "lr_psnr": r["lr_psnr"],
                      "invented_share": r["invented_share"],
                      "input_size": _size(r["input_width"], r["input_height"]),
                      "output_size": _size(r["output_width"], r["output_height"]), "upscale_s": r["upscale_s"],
                      "device": r["device"], "frames": r["frames"], "segments": r["segments"],
                      "frames_per_s": r["frames_per_s"], "flicker": r["flicker"],
                      "error": (r["error"] or "")[:300] or None}
            for c in TABLE_COLUMNS:
                value = values[c]
                self.table[c].append(round(value, 4) if isinstance(value, float) and np.isfinite(value)
                                     else None if isinstance(value, float) else value)

    def _preview_candidates(self, ok: pa.Table, lr_psnr: np.ndarray) -> None:
        """Keep the lowest LR-consistency outputs and a reservoir sample of the rest (few tuples)."""
        worst_n = self.wanted_previews // 2
        sample_n = self.wanted_previews - worst_n
        inputs, outputs = ok.column("input").to_pylist(), ok.column("output").to_pylist()
        items = [(value if np.isfinite(value) else np.inf, src, dst)
                 for value, src, dst in zip(lr_psnr.tolist(), inputs, outputs, strict=True)]
        self.worst = heapq.nsmallest(worst_n, self.worst + items)
        for item in items:
            self.seen_ok += 1
            # the reservoir keeps room for the worst ones it may also hold (they are shown once)
            if len(self.sample) < sample_n + worst_n:
                self.sample.append(item)
            elif sample_n and (j := int(self.rng.integers(self.seen_ok))) < sample_n + worst_n:
                self.sample[j] = item

    def _write_part(self, limit: int) -> None:
        table = pa.concat_tables(self.pending)
        part, rest = table.slice(0, limit), table.slice(limit)
        buf = io.BytesIO()
        pq.write_table(part, buf)
        self.store.write_atomic(self.store.path("rows", f"part-{self.parts:05d}.parquet"), buf.getvalue())
        self.parts += 1
        self.pending = [rest.combine_chunks()] if rest.num_rows else []
        self.pending_rows = rest.num_rows

    def finish(self, job, listed: int, wall_s: float) -> dict:
        """Write the last part, summary.json and report.html; return the summary."""
        if self.pending_rows or not self.parts:
            if not self.pending:
                self.pending = [REPORT_SCHEMA.empty_table()]
            self._write_part(max(1, self.pending_rows))
        summary = self.summary(job, listed, wall_s)
        self.store.write_atomic(self.store.path("summary.json"), json.dumps(summary, indent=2).encode())
        hists = {t: np.concatenate(v) if v else np.empty(0) for t, v in self.histograms.items()}
        causes = sorted(self.causes.values(), key=lambda c: -c["count"])
        by_device = sorted(self.by_device.values(), key=lambda d: (str(d["device"]), str(d["node"])))
        page = render_html(summary, causes, hists, self.previews(), self.table, earlier_runs(self.location, summary),
                           by_device, {s: round(v, 2) for s, v in self.stages.items()})
        self.store.write_atomic(self.store.path("report.html"), page.encode())
        return summary

    def previews(self) -> list[dict]:
        """Crops of the chosen outputs and their inputs, read back now; one that cannot be read is left out."""
        chosen = [(item, "lowest LR-consistency") for item in self.worst]
        others = [item for item in self.sample if item not in self.worst]
        chosen += [(item, "random sample") for item in others[: self.wanted_previews - len(self.worst)]]
        made = []
        for (lr_psnr, src, dst), why in chosen:
            try:
                before, after, invented = preview_pair(read_picture(src), read_picture(dst),
                                                       size=PREVIEW_INPUT_PIXELS)
            except Exception:  # a preview is a courtesy: a vanished or huge file must not fail the report
                continue
            made.append({"input": src, "lr_psnr": None if lr_psnr == np.inf else lr_psnr, "why": why,
                         "before": before, "after": after, "invented": invented})
        return made

    def summary(self, job, listed: int, wall_s: float) -> dict:
        """Counts, megapixels, throughput and failure rate of the run (``job``: the UpscaleJob)."""
        counts, total = self.counts, sum(self.counts.values())
        psnr = np.concatenate(self.histograms["LR-consistency PSNR (dB)"] or [np.empty(0)])
        invented = np.concatenate(self.histograms[INVENTED] or [np.empty(0)])
        return {
            "run": job.run_id, "input": job.input, "output": job.output, "report": job.report_location,
            "model": self.model, "scale": self.scale if total else job.output_options.outscale,
            "images_listed": listed, "images": total, **counts,
            "failure_rate": counts["failed"] / total if total else 0.0,
            "input_megapixels": round(self.in_mp, 3), "output_megapixels": round(self.out_mp, 3),
            "wall_s": round(wall_s, 2),
            "images_per_s": round(counts["ok"] / wall_s, 3) if wall_s else None,
            "input_megapixels_per_s": round(self.in_mp / wall_s, 3) if wall_s else None,
            "output_megapixels_per_s": round(self.out_mp / wall_s, 3) if wall_s else None,
            "lr_psnr_median": round(float(np.median(psnr)), 2) if len(psnr) else None,
            # the share of the output's area with detail its input cannot attest (srcore.invention)
            "invented_share_median": round(float(np.median(invented)) / 100, 4) if len(invented) else None,
            "stage_seconds": {s: round(v, 2) for s, v in self.stages.items()},
            # S3 answers retried (5xx, throttling, dropped connections): the inputs' and the driver's own
            "store_retries": self.store_retries + retries_in_process() - self.driver_retries_at_start,
            "devices": sorted(self.devices), "nodes": sorted(self.nodes),
            # videos (each one row above): their frames, the rate over the run, and the median flicker
            "videos": self.videos, "frames": self.frames,
            "frames_per_s": round(self.frames / wall_s, 3) if wall_s and self.frames else None,
            "flicker_median": round(float(np.median(self.flicker)), 3) if self.flicker else None,
        }


def _size(width: int | None, height: int | None) -> str | None:
    return f"{width}x{height}" if width else None


def failure_cause(name: str, error: str | None) -> str:
    """An error message with its file's name and numbers taken out: errors of one cause read the same."""
    text = (error or "unknown error").replace(name, "").lstrip(": ")
    text = re.sub(r"\d+(\.\d+)?", "N", text.splitlines()[0] if text else "unknown error")
    return text[:200]


def read_picture(location: str) -> np.ndarray:
    """Pixels of an input or output file, for previews (rasters and oversized files raise)."""
    store, path = store_of(location)
    if is_video(path):  # its middle frame (an input and its output share timestamps: the same frame)
        with store.open_read(path) as file:
            return middle_frame(file, location)
    if store.size(path) > PREVIEW_MAX_BYTES:
        raise ValueError(f"{location}: too large to preview")
    return decode(store.read(path), location).pixels


def earlier_runs(location: str, current: dict) -> list[dict]:
    """The summaries of every run reported beside this one (the same output prefix), oldest first."""
    # listed, not globbed: an output prefix may hold '[', '*' or '?', which a glob would read as a pattern
    store = Store(location.rstrip("/").rsplit("/", 1)[0])
    summaries = [e.path for e in store.list(extensions=(".json",))
                 if e.relative.count("/") == 1 and e.relative.endswith("/summary.json")]
    runs = []
    for path in summaries:
        try:
            runs.append(json.loads(store.read(path)))
        except (OSError, ValueError):
            continue
    runs = [r for r in runs if r.get("run") != current["run"]] + [current]
    return sorted(runs, key=lambda r: str(r.get("run")))


def read_report_rows(location: str, columns: list[str] | None = None) -> pa.Table:
    """The rows of a written report (every part), for small runs and benches."""
    store = Store(location)
    parts = [e.path for e in store.list(extensions=(".parquet",)) if e.relative.startswith("rows/part-")]
    tables = []
    for part in parts:
        tables.append(pq.read_table(io.BytesIO(store.read(part)), columns=columns))
    return pa.concat_tables(tables) if tables else REPORT_SCHEMA.empty_table()


def report_files(location: str) -> dict[str, str]:
    return {"rows": join(location, "rows"), "summary": join(location, "summary.json"),
            "html": join(location, "report.html")}


