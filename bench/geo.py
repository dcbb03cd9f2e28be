"""A satellite scene through the bucket job on CPU with the bundled model: output MP/s and peak RSS per process.

For each scene size (default 10980, a Sentinel-2 tile: 10980x10980, 4 bands uint16, UTM, a nodata border),
a synthetic GeoTIFF is written window by window (kept in ``--workdir`` for the next run), then
``jobs/upscale_bucket.py`` upscales it from a local folder into another, as users run it. While it runs, every
process of the job (driver, Ray's workers and the upscaling actor) is sampled for its resident-memory
high-water mark (``VmHWM`` in /proc). Printed per size: seconds, output MP/s (all bands; the RGB bands and the
NIR band each count once), and peak RSS of the driver and of the largest worker. srcore.geo's windows hold at
most ``WINDOW_OUTPUT_BYTES`` of float output, so the worker's figure should not grow with the scene.

    python bench/geo.py --other-bands bicubic    # the 10980^2 scene: 32 min on one CPU actor (2 with network)
    python bench/geo.py --sizes 1024,2048 --other-bands bicubic   # the size-independence check, quicker
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_scene(path: Path, size: int, bands: int = 4, border: int = 60) -> None:
    """A size x size uint16 scene in UTM 33N with a nodata (0) border: smooth fields plus fine texture, 0-10000
    plus the L2A offset of 1000, written a strip at a time (never whole in memory)."""
    import rasterio
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.windows import Window

    profile = {"driver": "GTiff", "width": size, "height": size, "count": bands, "dtype": "uint16", "nodata": 0,
               "crs": CRS.from_epsg(32633), "transform": Affine(10, 0, 600000, 0, -10, 5300000), "tiled": True,
               "blockxsize": 512, "blockysize": 512, "compress": "deflate", "predictor": 2, "BIGTIFF": "IF_SAFER"}
    rng = np.random.default_rng(0)
    texture = rng.normal(0, 400, (bands, 512, 512))
    tmp = path.with_suffix(".part")
    with rasterio.open(tmp, "w", **profile) as dst:
        for row in range(0, size, 512):
            h = min(512, size - row)
            yy, xx = np.mgrid[row:row + h, 0:size].astype(np.float32)
            strip = np.empty((bands, h, size), np.uint16)
            for b in range(bands):
                field = 4000 + 2500 * np.sin(xx / (97 + 13 * b)) * np.cos(yy / (131 + 7 * b))
                field += np.tile(texture[b, :h], (1, size // 512 + 1))[:, :size]
                strip[b] = np.clip(field + 1000, 1, 11000)
            strip[:, :, :border] = 0
            if row < border:
                strip[:, : border - row] = 0
            dst.write(strip, window=Window(0, row, size, h))
        for b, name in enumerate(("B04", "B03", "B02", "B08")[:bands]):
            dst.set_band_description(b + 1, name)
    tmp.rename(path)


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class PeakSampler(threading.Thread):
    """VmHWM (peak resident memory) of a process and all its descendants, sampled every 0.5 s, per pid."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peaks, self.names, self.stop = pid, {}, {}, threading.Event()

    def run(self):
        while not self.stop.is_set():
            for pid in {self.pid} | _descendants(self.pid):
                try:
                    with open(f"/proc/{pid}/status") as f:
                        fields = dict(line.split(":", 1) for line in f if ":" in line)
                    self.peaks[pid] = max(self.peaks.get(pid, 0), int(fields["VmHWM"].split()[0]) / 1024)
                    with open(f"/proc/{pid}/cmdline") as f:
                        self.names[pid] = f.read().replace("\0", " ")[:80]
                except (OSError, KeyError):
                    continue
            self.stop.wait(0.5)


def run_scene(scene: Path, out: Path, other_bands: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, str(ROOT / "jobs" / "upscale_bucket.py"), "--input", str(scene.parent), "--output",
               str(out), "--no-progress", "--other-bands", other_bands, "--max-actors", "1"]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = PeakSampler(process.pid)
    sampler.start()
    stdout, stderr = process.communicate()
    sampler.stop.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"the job failed ({process.returncode}):\n{stdout[-2000:]}\n{stderr[-3000:]}")
    # the job prints its report's location last; summary.json lies beside report.html
    report = next(line for line in reversed(stdout.splitlines()) if line.startswith("[srcore] report")).split()[-1]
    summary = json.loads(Path(report).with_name("summary.json").read_text())
    workers = {pid: mb for pid, mb in sampler.peaks.items() if pid != process.pid}
    actor = max(workers, key=workers.get)
    return {"wall_s": round(time.perf_counter() - start, 1), "job_s": summary["wall_s"], "ok": summary["ok"],
            "output_MP": summary["output_megapixels"], "output_MP_per_s": summary["output_megapixels_per_s"],
            "driver_peak_rss_MB": round(sampler.peaks[process.pid]),
            "largest_worker_peak_rss_MB": round(workers[actor]), "largest_worker": sampler.names.get(actor, "?")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10980", help="scene sizes (pixels a side), comma-separated")
    parser.add_argument("--workdir", default="/tmp/srcore-geo-bench", help="scenes are kept here between runs")
    parser.add_argument("--other-bands", default="network", choices=("network", "bicubic"))
    parser.add_argument("--smoke", action="store_true", help="a 256x256 scene in a temporary folder, the figures "
                        "checked (make test)")
    args = parser.parse_args()
    if args.smoke:
        import tempfile

        args.sizes, args.workdir = "256", tempfile.mkdtemp(prefix="srcore-geo-smoke-")
    sys.path.insert(0, str(ROOT))
    from srcore.geo import GDAL_CACHE_MB, WINDOW_OUTPUT_BYTES

    print(f"srcore.geo: windows of at most {WINDOW_OUTPUT_BYTES >> 20} MB float output, GDAL cache {GDAL_CACHE_MB} MB;"
          f" {os.cpu_count()} CPUs; --other-bands {args.other_bands}")
    for size in (int(s) for s in args.sizes.split(",")):
        folder = Path(args.workdir) / f"scene-{size}"
        scene = folder / f"S2_{size}.tif"
        if not scene.exists():
            folder.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            make_scene(scene, size)
            print(f"made {scene} ({scene.stat().st_size / 2**20:.0f} MB) in {time.perf_counter() - t0:.0f} s")
        result = run_scene(scene, Path(args.workdir) / f"out-{size}", args.other_bands)
        print(json.dumps({"scene": f"{size}x{size}x4 uint16", **result}), flush=True)
        if args.smoke:
            from smoke import check_positive

            check_positive([result], "wall_s", "ok", "output_MP", "output_MP_per_s", "driver_peak_rss_MB",
                           "largest_worker_peak_rss_MB")
    if args.smoke:
        shutil.rmtree(args.workdir)


if __name__ == "__main__":
    main()
