"""The bucket job's report: a Parquet dataset (one row per input), summary.json and a self-contained report.html.

All three are written atomically beside the outputs, so a reader never sees a half-written report.
"""

from __future__ import annotations

import base64
import html
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .storage import Store, join
from .upscale.rows import REPORT_SCHEMA, conform

ROWS_PER_PART = 1 << 16
MAX_FAILURES_SHOWN = 500


class ReportWriter:
    """A run's report, written as its rows come: Parquet parts of ROWS_PER_PART rows as each fills, then
    summary.json and report.html from what was kept on the way (counts, sums, the few numbers per upscaled
    image its histograms need, the first failures, the previews). The driver never holds every row.

    Parts are written atomically as they fill, so a run that is killed leaves the rows it finished for the
    next run to trust.
    """

    def __init__(self, location: str):
        self.location = location
        self.store = Store(location)
        self.pending: list[pa.Table] = []
        self.pending_rows = self.parts = 0
        self.counts = {"ok": 0, "skipped": 0, "failed": 0}
        self.model = self.scale = None
        self.in_mp = self.out_mp = 0.0
        self.histograms: dict[str, list[np.ndarray]] = {title: [] for title in HISTOGRAMS}
        self.failures: list[dict] = []
        self.previews: list[dict] = []
        self.devices: set[str] = set()
        self.nodes: set[str] = set()

    def add(self, rows: pa.Table) -> None:
        """Take report rows (REPORT_SCHEMA, with or without the preview columns)."""
        if not rows.num_rows:
            return
        if "preview_before" in rows.column_names:
            with_preview = rows.filter(pc.is_valid(rows.column("preview_before")))
            self.previews += with_preview.select(["input", "preview_before", "preview_after", "lr_psnr"]).to_pylist()
        rows = conform(rows, REPORT_SCHEMA)
        self._tally(rows)
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
        failed = rows.filter(pc.equal(status, "failed"))
        if failed.num_rows and len(self.failures) < MAX_FAILURES_SHOWN:
            room = MAX_FAILURES_SHOWN - len(self.failures)
            self.failures += failed.select(["input", "error"]).slice(0, room).to_pylist()
        ok = rows.filter(pc.equal(status, "ok"))
        if not ok.num_rows:
            return
        number = {c: ok.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                  for c in ("input_width", "input_height", "output_width", "output_height", "upscale_s", "lr_psnr")}
        in_mp = number["input_width"] * number["input_height"] / 1e6
        out_mp = number["output_width"] * number["output_height"] / 1e6
        self.in_mp += float(np.nansum(in_mp))
        self.out_mp += float(np.nansum(out_mp))
        with np.errstate(divide="ignore", invalid="ignore"):
            values = {"LR-consistency PSNR (dB)": number["lr_psnr"], "input megapixels": in_mp,
                      "upscale seconds per output megapixel": number["upscale_s"] / out_mp}
        for title, v in values.items():
            self.histograms[title].append(v[np.isfinite(v)].astype(np.float32))
        self.devices.update(d for d in pc.unique(ok.column("device")).to_pylist() if d)
        self.nodes.update(n for n in pc.unique(ok.column("node")).to_pylist() if n)

    def _write_part(self, limit: int) -> None:
        table = pa.concat_tables(self.pending)
        part, rest = table.slice(0, limit), table.slice(limit)
        buf = io.BytesIO()
        pq.write_table(part, buf)
        self.store.write_atomic(f"{self.store.root}/rows/part-{self.parts:05d}.parquet", buf.getvalue())
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
        root = self.store.root
        self.store.write_atomic(f"{root}/summary.json", json.dumps(summary, indent=2).encode())
        hists = {t: np.concatenate(v) if v else np.empty(0) for t, v in self.histograms.items()}
        self.store.write_atomic(f"{root}/report.html",
                                render_html(summary, self.failures, hists, self.previews).encode())
        return summary

    def summary(self, job, listed: int, wall_s: float) -> dict:
        """Counts, megapixels, throughput and failure rate of the run (``job``: the UpscaleJob)."""
        counts, total = self.counts, sum(self.counts.values())
        psnr = np.concatenate(self.histograms["LR-consistency PSNR (dB)"] or [np.empty(0)])
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
            "devices": sorted(self.devices), "nodes": sorted(self.nodes),
        }


def read_report_rows(location: str, columns: list[str] | None = None) -> pa.Table:
    """The rows of a written report (every part), for small runs and benches."""
    store = Store(location)
    parts = sorted(store.fs.glob(f"{store.root}/rows/part-*.parquet"))
    tables = []
    for part in parts:
        with store.fs.open(part, "rb") as f:
            tables.append(pq.read_table(f, columns=columns))
    return pa.concat_tables(tables) if tables else REPORT_SCHEMA.empty_table()


def report_files(location: str) -> dict[str, str]:
    return {"rows": join(location, "rows"), "summary": join(location, "summary.json"),
            "html": join(location, "report.html")}


# --------------------------------------------------------------------------- report.html

_STYLE = """
body{font:14px system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}.err{font-family:monospace;white-space:pre-wrap;max-width:700px}
.hist{display:inline-block;margin-right:2em;vertical-align:top}figure{display:inline-block;margin:0 1em 1em 0}
img{image-rendering:pixelated;border:1px solid #ccc}figcaption{font-size:12px;max-width:400px;word-break:break-all}
"""
HISTOGRAMS = ("LR-consistency PSNR (dB)", "input megapixels", "upscale seconds per output megapixel")


def render_html(summary: dict, failures: list[dict], histograms: dict[str, np.ndarray], previews: list[dict]) -> str:
    """The report page: the summary, the first failures (input, error), histograms and before/after previews."""
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>srcore report {esc(summary['run'])}</title>"
             f"<style>{_STYLE}</style></head><body><h1>srcore upscale report</h1>"]
    parts.append("<h2>Summary</h2><table>")
    for key, value in summary.items():
        parts.append(f"<tr><th>{esc(key)}</th><td>{esc(_fmt(value))}</td></tr>")
    parts.append("</table>")

    failed = summary.get("failed", len(failures))
    parts.append(f"<h2>Failures ({failed})</h2>")
    if failures:
        parts.append("<table><tr><th>input</th><th>error</th></tr>")
        for r in failures[:MAX_FAILURES_SHOWN]:
            parts.append(f"<tr><td>{esc(r['input'])}</td><td class='err'>{esc(r['error'] or '')}</td></tr>")
        parts.append("</table>")
        if failed > len(failures[:MAX_FAILURES_SHOWN]):
            parts.append(f"<p>... and {failed - len(failures[:MAX_FAILURES_SHOWN])} more: see rows/*.parquet.</p>")
    else:
        parts.append("<p>None.</p>")

    parts.append("<h2>Quality and speed</h2>")
    for title in HISTOGRAMS:
        parts.append(f"<div class='hist'><h3>{esc(title)}</h3>{histogram_svg(histograms.get(title, []))}</div>")

    if previews:
        parts.append("<h2>Before / after</h2><p>Input (nearest-neighbour enlarged) and output, the same region.</p>")
        for p in previews:
            psnr = f" ({p['lr_psnr']:.1f} dB)" if p["lr_psnr"] is not None else ""
            parts.append(f"<figure><img src='data:image/png;base64,{base64.b64encode(p['preview_before']).decode()}'>"
                         f"<img src='data:image/png;base64,{base64.b64encode(p['preview_after']).decode()}'>"
                         f"<figcaption>{esc(p['input'])}{esc(psnr)}</figcaption></figure>")
    parts.append("</body></html>")
    return "".join(parts)


def histogram_svg(values: list, bins: int = 20, width: int = 320, height: int = 120) -> str:
    """An inline SVG bar chart of ``values`` (None and non-finite values left out)."""
    data = np.array([np.nan if v is None else v for v in values] if isinstance(values, list) else values, np.float64)
    data = data[np.isfinite(data)]
    if not len(data):
        return "<p>no data</p>"
    counts, edges = np.histogram(data, bins=bins)
    top = counts.max() or 1
    bar_w = width / bins
    bars = "".join(
        f"<rect x='{i * bar_w:.1f}' y='{height - c / top * height:.1f}' width='{bar_w - 1:.1f}' "
        f"height='{c / top * height:.1f}' fill='#4a7ab5'><title>{edges[i]:.3g}-{edges[i + 1]:.3g}: {c}</title></rect>"
        for i, c in enumerate(counts))
    return (f"<svg width='{width}' height='{height + 18}' xmlns='http://www.w3.org/2000/svg'>{bars}"
            f"<text x='0' y='{height + 14}' font-size='11'>{edges[0]:.3g}</text>"
            f"<text x='{width}' y='{height + 14}' font-size='11' text-anchor='end'>{edges[-1]:.3g}</text></svg>"
            f"<div>n = {len(data)}, median {np.median(data):.3g}</div>")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)
