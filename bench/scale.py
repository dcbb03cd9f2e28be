"""Archive scale on the driver: planning time and memory, and a rerun that only skips, against the input count.

For each count N, in a fresh process (peak RSS is a per-process high-water mark):
- a local folder of N tiny PNGs (in sub-folders of 1,000) and, for the skip path, N finished outputs that
  carry matching provenance, as an earlier run leaves them;
- ``plan``: listing inputs and outputs, output keys, manifest rows, on the driver: seconds, inputs/s and the
  driver's peak RSS growth;
- ``skip`` runs (counts up to ``--skip-max``): the whole job on a local Ray over those inputs, every one
  already finished, so it measures what a rerun of a finished archive costs per input: first with no earlier
  report (each output's provenance is read, in decode tasks), then again, when the first run's report vouches
  for the outputs (no task at all). Seconds, inputs/s, the driver's peak RSS growth.

A linear fit of the plan figures is extrapolated to 10 million inputs.

    python bench/scale.py --counts 10000,100000 --skip-max 10000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tiny_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), 90, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def make_archive(root: Path, n: int, finished: bool) -> tuple[Path, Path]:
    """N inputs and, if ``finished``, N outputs with the provenance a completed run writes."""
    from pipelines.storage import Store
    from pipelines.upscale import UpscaleJob, model_id
    from srcore.archs.registry import DEFAULT_MODEL
    from srcore.imageio import Picture, Provenance, decode, encode

    source, target = root / "in", root / "out"
    data = tiny_png()
    for i in range(n):
        folder = source / f"d{i // 1000:05d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"img_{i:08d}.png").write_bytes(data)
    if finished:
        job = UpscaleJob(input=str(source), output=str(target))
        model = model_id(DEFAULT_MODEL)
        big = decode(data).pixels.repeat(4, axis=0).repeat(4, axis=1)
        for entry in Store(str(source)).list():
            out = target / entry.relative
            out.parent.mkdir(parents=True, exist_ok=True)
            provenance = Provenance(model, 4, str(entry.path), entry.version, "earlier-run")
            out.write_bytes(encode(Picture(big, "RGB"), "png", provenance=provenance))
        del job
    return source, target


def measure(n: int, skip: bool) -> dict:
    from pipelines.upscale import UpscaleJob, model_id, plan
    from srcore.archs.registry import DEFAULT_MODEL

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        source, target = make_archive(Path(tmp), n, finished=skip)
        made = time.perf_counter() - t0
        job = UpscaleJob(input=str(source), output=str(target), previews=0)
        rss0 = peak_rss_mb()
        t0 = time.perf_counter()
        manifest = plan(job, model_id(DEFAULT_MODEL), 4.0)
        plan_s = time.perf_counter() - t0
        row = {"inputs": n, "make_s": round(made, 1), "plan_s": round(plan_s, 2),
               "plan_inputs_per_s": round(n / plan_s), "plan_rss_growth_MB": round(peak_rss_mb() - rss0, 1)}
        assert len(manifest.rows) == n
        del manifest
        if skip:
            import ray

            from pipelines.upscale import run

            ray.init(address="local", num_cpus=max(2, os.cpu_count() or 1), include_dashboard=False,
                     log_to_driver=False)
            # first with no earlier report (each output's provenance is read), then with the report it wrote
            for label in ("provenance", "report"):
                rss0 = peak_rss_mb()
                t0 = time.perf_counter()
                result = run(UpscaleJob(input=str(source), output=str(target), previews=0), progress=False)
                seconds = time.perf_counter() - t0
                assert result.summary["skipped"] == n, result.summary
                row.update({f"skip_{label}_s": round(seconds, 2), f"skip_{label}_inputs_per_s": round(n / seconds),
                            f"skip_{label}_rss_growth_MB": round(peak_rss_mb() - rss0, 1)})
            ray.shutdown()
        row["driver_peak_rss_MB"] = round(peak_rss_mb(), 1)
        return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", default="10000,100000", help="comma-separated input counts")
    p.add_argument("--skip-max", type=int, default=10000, help="largest count for the skip-only rerun")
    p.add_argument("--json-out")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        n, skip = json.loads(args.child)
        print(json.dumps(measure(n, skip)))
        return
    rows = []
    for n in (int(c) for c in args.counts.split(",")):
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps([n, n <= args.skip_max])],
                             capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            raise SystemExit(out.stderr[-3000:])
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    if len(rows) >= 2:  # linear fit of plan time and memory, extrapolated to 10^7 inputs
        n = np.array([r["inputs"] for r in rows], float)
        for key in ("plan_s", "plan_rss_growth_MB"):
            slope, intercept = np.polyfit(n, [r[key] for r in rows], 1)
            print(json.dumps({"extrapolated_to": 10_000_000, key: round(slope * 1e7 + intercept, 1)}))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
