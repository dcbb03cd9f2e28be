"""The bucket job's report: a Parquet dataset (one row per input), summary.json and a self-contained report.html.

All three are written atomically beside the outputs, so a reader never sees a half-written report.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .storage import Store, join

ROWS_PER_PART = 200_000


def summarize(rows: pa.Table, job, listed: int, wall_s: float) -> dict:
    """Counts, megapixels, throughput and failure rate of one run (``job``: the UpscaleJob)."""
    status = rows.column("status").to_pylist()
    counts = {s: status.count(s) for s in ("ok", "skipped", "failed")}
    ok = [r for r in rows.select(["status", "input_width", "input_height", "output_width", "output_height",
                                  "upscale_s", "lr_psnr", "device", "node"]).to_pylist() if r["status"] == "ok"]
    in_mp = sum(r["input_width"] * r["input_height"] for r in ok) / 1e6
    out_mp = sum(r["output_width"] * r["output_height"] for r in ok) / 1e6
    total = len(status)
    psnr = [r["lr_psnr"] for r in ok if r["lr_psnr"] is not None and math.isfinite(r["lr_psnr"])]
    return {
        "run": job.run_id, "input": job.input, "output": job.output, "report": job.report_location,
        "model": rows.column("model")[0].as_py() if total else None,
        "scale": rows.column("scale")[0].as_py() if total else job.output_options.outscale,
        "images_listed": listed, "images": total, **counts,
        "failure_rate": counts["failed"] / total if total else 0.0,
        "input_megapixels": round(in_mp, 3), "output_megapixels": round(out_mp, 3),
        "wall_s": round(wall_s, 2),
        "images_per_s": round(counts["ok"] / wall_s, 3) if wall_s else None,
        "input_megapixels_per_s": round(in_mp / wall_s, 3) if wall_s else None,
        "output_megapixels_per_s": round(out_mp / wall_s, 3) if wall_s else None,
        "lr_psnr_median": round(float(np.median(psnr)), 2) if psnr else None,
        "devices": sorted({r["device"] for r in ok if r["device"]}),
        "nodes": sorted({r["node"] for r in ok if r["node"]}),
    }


def write_report(rows: pa.Table, summary: dict, location: str) -> None:
    """``location``/rows/part-*.parquet, ``location``/summary.json, ``location``/report.html."""
    store = Store(location)
    root = store.root
    previews = [r for r in rows.select(["input", "preview_before", "preview_after", "lr_psnr"]).to_pylist()
                if r["preview_before"]]
    table = rows.drop_columns(["preview_before", "preview_after"])
    for part, start in enumerate(range(0, max(1, table.num_rows), ROWS_PER_PART)):
        buf = io.BytesIO()
        pq.write_table(table.slice(start, ROWS_PER_PART), buf)
        store.write_atomic(f"{root}/rows/part-{part:05d}.parquet", buf.getvalue())
    store.write_atomic(f"{root}/summary.json", json.dumps(summary, indent=2).encode())
    store.write_atomic(f"{root}/report.html", render_html(table, summary, previews).encode())


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
MAX_FAILURES_SHOWN = 500


def render_html(rows: pa.Table, summary: dict, previews: list[dict]) -> str:
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>srcore report {esc(summary['run'])}</title>"
             f"<style>{_STYLE}</style></head><body><h1>srcore upscale report</h1>"]
    parts.append("<h2>Summary</h2><table>")
    for key, value in summary.items():
        parts.append(f"<tr><th>{esc(key)}</th><td>{esc(_fmt(value))}</td></tr>")
    parts.append("</table>")

    failed = [r for r in rows.select(["input", "error", "status"]).to_pylist() if r["status"] == "failed"]
    parts.append(f"<h2>Failures ({len(failed)})</h2>")
    if failed:
        parts.append("<table><tr><th>input</th><th>error</th></tr>")
        for r in failed[:MAX_FAILURES_SHOWN]:
            parts.append(f"<tr><td>{esc(r['input'])}</td><td class='err'>{esc(r['error'] or '')}</td></tr>")
        parts.append("</table>")
        if len(failed) > MAX_FAILURES_SHOWN:
            parts.append(f"<p>... and {len(failed) - MAX_FAILURES_SHOWN} more: see rows/*.parquet.</p>")
    else:
        parts.append("<p>None.</p>")

    ok = [r for r in rows.to_pylist() if r["status"] == "ok"]
    parts.append("<h2>Quality and speed</h2>")
    hists = [
        ("LR-consistency PSNR (dB)", [r["lr_psnr"] for r in ok]),
        ("input megapixels", [r["input_width"] * r["input_height"] / 1e6 for r in ok]),
        ("upscale seconds per output megapixel",
         [r["upscale_s"] / (r["output_width"] * r["output_height"] / 1e6) for r in ok if r["output_width"]]),
    ]
    for title, values in hists:
        parts.append(f"<div class='hist'><h3>{esc(title)}</h3>{histogram_svg(values)}</div>")

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
    data = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
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
