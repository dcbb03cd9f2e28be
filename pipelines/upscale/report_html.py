"""report.html: one self-contained page an archive operator reads (no network, no external files).

The summary in words and percentages, throughput per device and node, stage timings, failures grouped by cause,
histograms with axes, before/after previews with a slider and full-resolution zoom (alpha on a checkerboard), a
sortable, filterable per-image table paginated in the browser (fast at 100,000 rows), and every run on the same
output prefix.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import json

import numpy as np

esc = html.escape
INVENTED = "invented detail (% of the output's area)"
HISTOGRAMS = ("LR-consistency PSNR (dB)", INVENTED, "input megapixels", "upscale seconds per output megapixel")
TABLE_COLUMNS = ("input", "status", "lr_psnr", "invented_share", "input_size", "output_size", "upscale_s", "device",
                 "frames", "segments", "frames_per_s", "flicker", "error")  # the four after device: videos only

_STYLE = """
body{font:14px system-ui,sans-serif;margin:2em auto;color:#222;max-width:1200px;padding:0 1em}
h1{margin-bottom:.2em}.sub{color:#666;margin-top:0;word-break:break-all}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:1em}
.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:150px}
.card b{display:block;font-size:22px}.card span{color:#666;font-size:12px}
.bad b{color:#b3261e}.hist{display:inline-block;margin-right:2em;vertical-align:top}
.err{font-family:monospace;white-space:pre-wrap;max-width:640px;font-size:12px}
.pair{display:inline-block;margin:0 1.5em 1.5em 0;vertical-align:top}
.slider{position:relative;display:inline-block;cursor:zoom-in;line-height:0}
.slider img{display:block;width:384px;max-width:none;image-rendering:pixelated}
.checker{background:repeating-conic-gradient(#ccc 0 25%,#fff 0 50%) 0 0/16px 16px}
.slider .after{position:absolute;top:0;left:0;overflow:hidden;height:100%;border-right:2px solid #e33}
.slider .after img.invented{position:absolute;top:0;left:0;background:none}
.pair label{font-size:12px;display:block}
.pair input{width:384px;display:block}.pair figcaption{font-size:12px;max-width:384px;word-break:break-all}
#zoom{display:none;position:fixed;inset:0;background:rgba(0,0,0,.85);overflow:auto;z-index:9;cursor:zoom-out;
padding:1em}
#zoom img{image-rendering:pixelated;margin:.5em}#zoom p{color:#fff}
#rows th{cursor:pointer;user-select:none}
#rows td{max-width:420px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.controls{margin:.5em 0}.controls input,.controls select,.controls button{font:inherit;margin-right:.5em}
"""

_SCRIPT = r"""
(function(){
  // before/after sliders: the range input sets how much of the 'after' image shows
  document.querySelectorAll('.pair').forEach(function(pair){
    var range = pair.querySelector('input[type=range]'), after = pair.querySelector('.after');
    var set = function(){ after.style.width = range.value + '%'; };
    range.addEventListener('input', set); set();
    var toggle = pair.querySelector('.show-invented');
    if (toggle) {
      var layer = pair.querySelector('.invented');
      var show = function(){ layer.style.display = toggle.checked ? 'block' : 'none'; };
      toggle.addEventListener('change', show); show();
    }
    pair.querySelector('.slider').addEventListener('click', function(){
      var zoom = document.getElementById('zoom');
      // the name is the archive's: text, never markup
      var caption = document.createElement('p');
      caption.textContent = pair.dataset.name + ' (click to close): input, nearest-neighbour enlarged; output';
      zoom.replaceChildren(caption);
      pair.querySelectorAll('img:not(.invented)').forEach(function(img){
        var big = new Image(); big.src = img.src; big.className = 'checker'; zoom.appendChild(big);
      });
      zoom.style.display = 'block';
    });
  });
  document.getElementById('zoom').addEventListener('click', function(){ this.style.display = 'none'; });

  // the per-image table: columns of the embedded JSON, filtered, sorted and paginated here
  var data = JSON.parse(document.getElementById('rows-data').textContent);
  var cols = data.columns, n = data.values[0] ? data.values[0].length : 0, page = 0, per = 50;
  var errorColumn = cols.indexOf('error');
  var order = [], key = null, desc = false;
  var body = document.querySelector('#rows tbody'), info = document.getElementById('rows-info');
  var filterBox = document.getElementById('rows-filter'), statusBox = document.getElementById('rows-status');
  function cell(c, i){ var v = data.values[c][i]; return v === null ? '' : v; }
  function refresh(){
    var text = filterBox.value.toLowerCase(), status = statusBox.value;
    order = [];
    for (var i = 0; i < n; i++) {
      if (status && data.values[1][i] !== status) continue;
      if (text && (String(cell(0, i)) + ' ' + String(cell(errorColumn, i))).toLowerCase().indexOf(text) < 0)
        continue;
      order.push(i);
    }
    if (key !== null) {
      order.sort(function(a, b){
        var x = data.values[key][a], y = data.values[key][b];
        if (x === y) return 0; if (x === null) return 1; if (y === null) return -1;
        return (x < y ? -1 : 1) * (desc ? -1 : 1);
      });
    }
    page = Math.min(page, Math.max(0, Math.ceil(order.length / per) - 1));
    draw();
  }
  function draw(){
    var rows = [];
    for (var r = page * per; r < Math.min(order.length, (page + 1) * per); r++) {
      var i = order[r], tds = [];
      for (var c = 0; c < cols.length; c++) {
        var v = cell(c, i), s = typeof v === 'number' ? (Math.round(v * 1000) / 1000) : v;
        var td = document.createElement('td'); td.textContent = s; td.title = String(v);
        if (typeof v === 'number') td.className = 'n';
        tds.push(td);
      }
      var tr = document.createElement('tr'); tds.forEach(function(td){ tr.appendChild(td); }); rows.push(tr);
    }
    body.replaceChildren.apply(body, rows);
    info.textContent = order.length + ' of ' + n + ' rows; page ' + (order.length ? page + 1 : 0) + ' of ' +
      Math.ceil(order.length / per);
  }
  document.querySelectorAll('#rows th').forEach(function(th, c){
    th.addEventListener('click', function(){
      desc = key === c ? !desc : false; key = c;
      document.querySelectorAll('#rows th').forEach(function(h){ h.dataset.sort = ''; });
      th.dataset.sort = desc ? 'desc' : 'asc';
      refresh();
    });
  });
  filterBox.addEventListener('input', function(){ page = 0; refresh(); });
  statusBox.addEventListener('change', function(){ page = 0; refresh(); });
  document.getElementById('rows-prev').addEventListener('click', function(){ page = Math.max(0, page - 1); draw(); });
  document.getElementById('rows-next').addEventListener('click', function(){
    if ((page + 1) * per < order.length) { page++; draw(); }
  });
  refresh();
})();
"""


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


# Everything on the page that comes from the archive (names, metadata, error text) is escaped or set as text;
# the policy is the second line of defence: only the page's own style and script run (by hash), no inline
# event handler, no other script, and nothing is fetched from anywhere (the images are data: URIs).
CONTENT_SECURITY_POLICY = (f"default-src 'none'; img-src data:; style-src {_csp_hash(_STYLE)}; "
                           f"script-src {_csp_hash(_SCRIPT)}; base-uri 'none'; form-action 'none'")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return str(dt.timedelta(seconds=round(seconds)))


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def number(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:,}"


def render_html(summary: dict, failure_causes: list[dict], histograms: dict[str, np.ndarray],
                previews: list[dict], table: dict[str, list], runs: list[dict], by_device: list[dict],
                stages: dict[str, float]) -> str:
    """The report page. ``failure_causes``: {cause, count, examples}; ``previews``: {input, lr_psnr, why,
    before, after} PNG bytes; ``table``: column lists of the per-image rows (TABLE_COLUMNS); ``runs``: the
    summaries of every run on this output prefix; ``by_device``: {device, node, images, output_megapixels,
    upscale_s}; ``stages``: summed seconds per stage."""
    s = summary
    total = s["images"]
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta http-equiv='Content-Security-Policy' content=\"{CONTENT_SECURITY_POLICY}\">"
             f"<title>srcore report {esc(s['run'])}</title><style>{_STYLE}</style></head>"
             "<body><h1>srcore upscale report</h1>"
             f"<p class='sub'>run {esc(s['run'])} &middot; model {esc(str(s['model']))} x{number(s['scale'])} &middot; "
             f"{esc(s['input'])} &rarr; {esc(s['output'])}</p>"]
    cards = [(number(s["images_listed"]), "images listed", ""),
             (number(s["ok"]), f"upscaled ({percent(s['ok'], total)})", ""),
             (number(s["skipped"]), f"already done, skipped ({percent(s['skipped'], total)})", ""),
             (number(s["failed"]), f"failed ({percent(s['failed'], total)})", "bad" if s["failed"] else ""),
             (duration(s["wall_s"]), "wall time", ""),
             (number(s["images_per_s"]), "images per second", ""),
             (number(s["output_megapixels_per_s"]), "output megapixels per second", ""),
             (number(s["lr_psnr_median"]), "median LR-consistency (dB)", ""),
             (number(s.get("store_retries", 0)), "store requests retried (5xx, throttling)", "")]
    parts.append("<div class='cards'>" + "".join(f"<div class='card {cls}'><b>{esc(v)}</b><span>{esc(label)}</span>"
                                                  "</div>" for v, label, cls in cards) + "</div>")
    if not s["ok"]:
        parts.append(f"<p>No image was upscaled in this run: {s['skipped']} already done by earlier runs "
                     f"(skipped), {s['failed']} failed.</p>")

    parts.append("<h2>Throughput per device and node</h2>")
    if by_device:
        parts.append("<table><tr><th>device</th><th>node</th><th>images</th><th>output MP</th>"
                     "<th>upscale seconds</th><th>output MP/s while upscaling</th></tr>")
        for d in by_device:
            rate = d["output_megapixels"] / d["upscale_s"] if d["upscale_s"] else None
            parts.append(f"<tr><td>{esc(d['device'] or '-')}</td><td>{esc(d['node'] or '-')}</td>"
                         f"<td class='n'>{number(d['images'])}</td><td class='n'>{number(d['output_megapixels'])}</td>"
                         f"<td class='n'>{number(d['upscale_s'])}</td><td class='n'>{number(rate)}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>No image was upscaled in this run.</p>")
    busy = sum(stages.values())
    if busy:
        parts.append("<h2>Where the time went</h2><p>Seconds summed over images (stages of different images "
                     "overlap, so the sum exceeds the wall time).</p><table><tr><th>stage</th><th>seconds</th>"
                     "<th>share</th></tr>")
        for stage, seconds in stages.items():
            parts.append(f"<tr><td>{esc(stage)}</td><td class='n'>{number(seconds)}</td>"
                         f"<td class='n'>{100 * seconds / busy:.1f}%</td></tr>")
        parts.append("</table>")

    parts.append(f"<h2>Failures ({number(s['failed'])})</h2>")
    if failure_causes:
        parts.append("<table><tr><th>cause</th><th>images</th><th>for example</th></tr>")
        for c in failure_causes:
            parts.append(f"<tr><td class='err'>{esc(c['cause'])}</td><td class='n'>{number(c['count'])}</td>"
                         f"<td class='err'>{esc(chr(10).join(c['examples']))}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>None.</p>")

    parts.append("<h2>Quality and speed</h2>")
    for title in HISTOGRAMS:
        parts.append(f"<div class='hist'><h3>{esc(title)}</h3>{histogram_svg(histograms.get(title, []), title)}</div>")

    if previews:
        parts.append("<h2>Before / after</h2><p>The outputs least consistent with their inputs (lowest "
                     "LR-consistency) and a random sample. Drag the slider; click to see both at full resolution. "
                     "The input is enlarged by nearest neighbour; transparency shows as a checkerboard.</p>")
        for p in previews:
            before = base64.b64encode(p["before"]).decode()
            after = base64.b64encode(p["after"]).decode()
            psnr = f", LR-consistency {p['lr_psnr']:.1f} dB" if p.get("lr_psnr") is not None else ""
            invented, toggle = "", ""
            if p.get("invented"):
                layer = base64.b64encode(p["invented"]).decode()
                invented = (f"<img class='invented' alt='invented detail' "
                            f"src='data:image/png;base64,{layer}'>")
                toggle = ("<label><input type='checkbox' class='show-invented'> show invented detail (red: what "
                          "the input cannot attest)</label>")
            parts.append(f"<figure class='pair' data-name='{esc(p['input'])}'><div class='slider'>"
                         f"<img class='checker' alt='input' src='data:image/png;base64,{before}'>"
                         f"<div class='after'><img class='checker' alt='output' src='data:image/png;base64,{after}'>"
                         f"{invented}</div></div>"
                         f"<input type='range' min='0' max='100' value='50' aria-label='before/after'>{toggle}"
                         f"<figcaption>{esc(p['input'])} ({esc(p['why'])}{esc(psnr)})</figcaption></figure>")

    parts.append("<h2>Every image</h2>")
    shown = len(table["input"]) if table else 0
    if total > shown:
        parts.append(f"<p>The first {number(shown)} of {number(total)} rows; all are in rows/*.parquet.</p>")
    parts.append("<div class='controls'><input id='rows-filter' placeholder='filter: name or error'>"
                 "<select id='rows-status'><option value=''>any status</option><option>ok</option>"
                 "<option>failed</option><option>skipped</option></select>"
                 "<button id='rows-prev'>&larr; previous</button><button id='rows-next'>next &rarr;</button>"
                 "<span id='rows-info'></span></div><table id='rows'><thead><tr>"
                 + "".join(f"<th>{esc(c)}</th>" for c in TABLE_COLUMNS) + "</tr></thead><tbody></tbody></table>")
    payload = {"columns": list(TABLE_COLUMNS), "values": [table.get(c, []) for c in TABLE_COLUMNS]}
    # JSON inside <script>: '</' is escaped so no value can close the element
    parts.append("<script type='application/json' id='rows-data'>"
                 + json.dumps(payload, separators=(",", ":")).replace("</", "<\\/") + "</script>")

    if runs:
        parts.append("<h2>All runs on this output</h2><table><tr><th>run</th><th>upscaled</th><th>skipped</th>"
                     "<th>failed</th><th>wall time</th><th>model</th></tr>")
        for r in runs:
            parts.append(f"<tr><td>{esc(str(r.get('run')))}</td><td class='n'>{number(r.get('ok'))}</td>"
                         f"<td class='n'>{number(r.get('skipped'))}</td><td class='n'>{number(r.get('failed'))}</td>"
                         f"<td>{duration(r.get('wall_s'))}</td><td>{esc(str(r.get('model')))}</td></tr>")
        parts.append(f"<tr><th>all runs</th><th class='n'>{number(sum(r.get('ok') or 0 for r in runs))}</th><th></th>"
                     f"<th></th><th>{duration(sum(r.get('wall_s') or 0 for r in runs))}</th><th></th></tr></table>")
    parts.append(f"<div id='zoom'></div><script>{_SCRIPT}</script></body></html>")
    return "".join(parts)


def histogram_svg(values, title: str = "", bins: int = 20, width: int = 360, height: int = 120) -> str:
    """An inline SVG histogram of ``values`` (None and non-finite values left out), with both axes labelled."""
    data = np.array([np.nan if v is None else v for v in values] if isinstance(values, list) else values, np.float64)
    data = data[np.isfinite(data)]
    if not len(data):
        return "<p>no data</p>"
    counts, edges = np.histogram(data, bins=bins)
    top = int(counts.max()) or 1
    left, bottom = 40, 34  # room for the y labels and the x labels + title
    plot_w = width - left - 8
    bar_w = plot_w / bins
    bars = "".join(
        f"<rect x='{left + i * bar_w:.1f}' y='{8 + height - c / top * height:.1f}' width='{bar_w - 1:.1f}' "
        f"height='{c / top * height:.1f}' fill='#4a7ab5'><title>{edges[i]:.3g} to {edges[i + 1]:.3g}: {c} images"
        f"</title></rect>" for i, c in enumerate(counts))
    axis_y, mid = 8 + height, left + plot_w / 2
    ticks = "".join(f"<text x='{left + plot_w * f:.1f}' y='{axis_y + 14}' font-size='11' text-anchor='middle'>"
                    f"{edges[0] + (edges[-1] - edges[0]) * f:.3g}</text>" for f in (0, 0.5, 1))
    return (f"<svg width='{width}' height='{height + bottom + 8}' xmlns='http://www.w3.org/2000/svg' role='img'>"
            f"{bars}<line x1='{left}' y1='{axis_y}' x2='{left + plot_w}' y2='{axis_y}' stroke='#333'/>"
            f"<line x1='{left}' y1='8' x2='{left}' y2='{axis_y}' stroke='#333'/>"
            f"<text x='{left - 4}' y='14' font-size='11' text-anchor='end'>{top}</text>"
            f"<text x='{left - 4}' y='{axis_y}' font-size='11' text-anchor='end'>0</text>"
            f"<text x='12' y='{8 + height / 2}' font-size='11' text-anchor='middle' "
            f"transform='rotate(-90 12 {8 + height / 2})'>images</text>{ticks}"
            f"<text x='{mid:.1f}' y='{axis_y + 28}' font-size='11' text-anchor='middle'>{esc(title)}</text></svg>"
            f"<div>n = {len(data)}, median {np.median(data):.3g}</div>")
