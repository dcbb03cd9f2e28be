"""Archive scale on the driver: planning time and memory, and a rerun that only skips, against the input count.

For each count N, in a fresh process (peak RSS is a per-process high-water mark):
- a local folder of N tiny PNGs (in sub-folders of 1,000) and, for the skip path, N finished outputs that
  carry matching provenance, as an earlier run leaves them;
- ``plan``: listing inputs and outputs, output keys, manifest rows, on the driver: seconds, inputs/s and the
  growth of the driver's resident memory (sampled every 20 ms);
- ``skip`` runs (counts up to ``--skip-max``): the whole job on a local Ray over those inputs, every one
  already finished, so it measures what a rerun of a finished archive costs per input: first with no earlier
  report (each output's provenance is read, in decode tasks), then again, when the first run's report vouches
  for the outputs (no task at all). Seconds, inputs/s, the driver's peak RSS growth.
- ``queue`` (counts up to ``--queue-max``): what handing every input to Ray Data costs the driver when none
  is finished (``--overwrite``): the read tasks of the plan's pages are made and put (one a block of 8
  inputs), and the first block read. Seconds and the driver's RSS growth.

``driver_baseline_MB`` is the process before planning (Python, torch, the model); ``driver_peak_rss_MB`` the
process's high-water mark over everything it measured. A linear fit of the plan figures is extrapolated to
10 million inputs.

    python bench/scale.py --counts 10000,100000,1000000 --skip-max 1000000 --provenance-max 10000 \
        --archives /tmp/archives   # keeps the made archives for the next run
    python bench/scale.py --smoke  # 200 inputs, every measurement, its figures checked (make test)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from inference import peak_rss_mb  # noqa: E402


def rss_mb() -> float:
    """Resident memory now (Linux); the peak high-water mark elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


class RssPeak:
    """The highest resident memory seen while inside (sampled every 20 ms), above what it was on entry."""

    def __enter__(self):
        self.start = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())
        self.growth = round(self.peak - self.start, 1)


def tiny_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), 90, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def job_model(job):
    """The model a run of ``job`` loads, and its id (``srcore.weights.load_upscaling_model``, as the job does)."""
    from srcore.weights import load_upscaling_model

    return load_upscaling_model(job.model, job.realism)


def make_archive(root: Path, n: int, finished: bool, report: bool = False) -> tuple[Path, Path]:
    """N inputs and, if ``finished``, N outputs with the provenance a completed run writes (and, if ``report``,
    the rows of that run's report)."""
    from pipelines.storage import Store
    from pipelines.upscale import UpscaleJob
    from srcore.imageio import Picture, decode, encode
    from srcore.provenance import Provenance

    source, target = root / "in", root / "out"
    data = tiny_png()
    for i in range(n):
        folder = source / f"d{i // 1000:05d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"img_{i:08d}.png").write_bytes(data)
    if finished:
        job = UpscaleJob(input=str(source), output=str(target))
        model = job_model(job)[1]  # the id the job writes and checks: finished outputs must carry it
        big = decode(data).pixels.repeat(4, axis=0).repeat(4, axis=1)
        rows = []
        for entry in Store(str(source)).list():
            out = target / entry.relative
            out.parent.mkdir(parents=True, exist_ok=True)
            provenance = Provenance(model, 4, str(entry.path), entry.version, "earlier-run")
            data = encode(Picture(big, "RGB"), "png", provenance=provenance)
            out.write_bytes(data)
            rows.append({"input": entry.path, "input_version": entry.version, "model": model, "scale": 4.0,
                         "output": str(out), "status": "ok", "output_bytes": len(data)})
        if report:  # as the run's ReportWriter leaves it: parts of ROWS_PER_PART rows
            from pipelines.upscale import REPORT_SCHEMA
            from pipelines.upscale.report import ReportWriter

            writer = ReportWriter(str(target / "_reports" / "20000101T000000Z-earlier"))
            for start in range(0, len(rows), 1 << 14):
                writer.add(pa.Table.from_pylist([{k: r.get(k) for k in REPORT_SCHEMA.names}
                                                 for r in rows[start:start + (1 << 14)]], schema=REPORT_SCHEMA))
            writer.finish(job, len(rows), 1.0)
        del job
    return source, target


def measure(n: int, skip: bool, provenance_pass: bool, queue: bool, tmp: str) -> dict:
    """In a fresh process, over the archive the parent made in ``tmp``: only the driver's own memory counts."""
    from pipelines.upscale import UpscaleJob, plan

    source, target = Path(tmp, "in"), Path(tmp, "out")
    job = UpscaleJob(input=str(source), output=str(target), previews=0)
    _, model = job_model(job)  # as the job does before planning: part of the baseline
    row = {"inputs": n, "model": model, "driver_baseline_MB": round(rss_mb(), 1)}
    with RssPeak() as memory:
        t0 = time.perf_counter()
        manifest = plan(job, model, 4.0)
        plan_s = time.perf_counter() - t0
    row.update({"plan_s": round(plan_s, 2), "plan_inputs_per_s": round(n / plan_s),
                "plan_rss_growth_MB": memory.growth})
    assert manifest.rows == n
    manifest.close()
    del manifest
    if queue or skip:  # one local Ray for both measurements (a start is seconds of the smoke run)
        import ray

        ray.init(address="local", num_cpus=max(2, os.cpu_count() or 1), include_dashboard=False,
                 log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
    if queue:
        from pipelines.pages import read_pages

        with plan(UpscaleJob(input=str(source), output=str(target), previews=0, overwrite=True),
                  model, 4.0) as manifest:
            with RssPeak() as memory:
                t0 = time.perf_counter()
                first = read_pages(manifest.todo, 8).take_batch(8, batch_format="pyarrow")
                queue_s = time.perf_counter() - t0
            assert first.num_rows == 8
        row.update({"queue_s": round(queue_s, 2), "queue_rss_growth_MB": memory.growth})
    if skip:
        from pipelines.upscale import run

        # first with no earlier report (each output's provenance is read), then with the report it wrote
        for label in ("provenance", "report") if provenance_pass else ("report",):
            with RssPeak() as memory:
                t0 = time.perf_counter()
                result = run(UpscaleJob(input=str(source), output=str(target), previews=0), progress=False)
                seconds = time.perf_counter() - t0
            assert result.summary["skipped"] == n, f"a rerun of a finished archive redid inputs: {result.summary}"
            row.update({f"skip_{label}_s": round(seconds, 2), f"skip_{label}_inputs_per_s": round(n / seconds),
                        f"skip_{label}_rss_growth_MB": memory.growth})
            del result
    if queue or skip:
        ray.shutdown()
    row["driver_peak_rss_MB"] = round(peak_rss_mb(), 1)
    return row


def check(row: dict) -> None:
    """The figures are measurements: positive rates and times, memory that was measured."""
    from smoke import check_positive

    check_positive([row], "inputs", "driver_baseline_MB", *[k for k in row if k.endswith("_per_s")])
    assert all(row[k] >= 0 for k in row if k.endswith(("_s", "_MB"))), row
    assert row["driver_peak_rss_MB"] >= row["driver_baseline_MB"], row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", default="10000,100000", help="comma-separated input counts")
    p.add_argument("--skip-max", type=int, default=100000, help="largest count for the skip-only reruns")
    p.add_argument("--provenance-max", type=int, default=10000,
                   help="largest count for the rerun with no earlier report (larger ones get the report made "
                        "up front, as an earlier run leaves it)")
    p.add_argument("--queue-max", type=int, default=100000,
                   help="largest count for handing every input to Ray Data (nothing finished)")
    p.add_argument("--archives", help="keep the made archives in this folder (one per count) and reuse them")
    p.add_argument("--json-out")
    p.add_argument("--smoke", action="store_true",
                   help="a toy run (200 inputs, every measurement) that checks its own figures: make test runs it")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.smoke:
        args.counts, args.skip_max, args.provenance_max, args.queue_max = "200", 200, 200, 200
    if args.child:
        print(json.dumps(measure(*json.loads(args.child))))
        return
    from pipelines.upscale import UpscaleJob

    default_model = job_model(UpscaleJob(input="in", output="out"))[1]
    rows = []
    for n in (int(c) for c in args.counts.split(",")):
        skip, provenance_pass = n <= args.skip_max, n <= args.provenance_max
        with tempfile.TemporaryDirectory() as scratch:
            # the finished outputs carry the default model's id: an archive made for another model is not reused
            kept = f"{n}-{int(skip)}{int(provenance_pass)}-{re.sub(r'[^A-Za-z0-9.=-]', '_', default_model)}"
            tmp = Path(args.archives, kept) if args.archives else Path(scratch)
            if not (tmp / "made").exists():
                make_archive(tmp, n, finished=skip, report=skip and not provenance_pass)
                (tmp / "made").touch()
            else:  # the reports of earlier measurements go (the made one stays, as an earlier run leaves it)
                for report in (tmp / "out" / "_reports").glob("*"):
                    if provenance_pass or report.name != "20000101T000000Z-earlier":
                        shutil.rmtree(report)
            child = json.dumps([n, skip, provenance_pass, n <= args.queue_max, str(tmp)])
            out = subprocess.run([sys.executable, __file__, "--child", child],
                                 capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            raise SystemExit(out.stderr[-3000:])
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
        check(rows[-1])
    if len(rows) >= 2:  # linear fit of plan time and memory, extrapolated to 10^7 inputs
        n = np.array([r["inputs"] for r in rows], float)
        for key in ("plan_s", "plan_rss_growth_MB"):
            slope, intercept = np.polyfit(n, [r[key] for r in rows], 1)
            print(json.dumps({"extrapolated_to": 10_000_000, key: round(slope * 1e7 + intercept, 1)}))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
