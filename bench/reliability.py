"""Reliability figures of the bucket job: each fault injected into a run on a 3-node Ray cluster on this machine
(``ray.cluster_utils.Cluster``: a head that runs nothing, two 2-CPU worker nodes) against the loopback S3
server, and for each the inputs, the inputs lost (no report row, or an ok row without its output), duplicated
(more than one row), and the outputs rewritten (a finished output written again), which must all be 0, and
the wall time the fault cost over a clean run of the same inputs on the same cluster.

Faults:
- ``actor node lost``: the node running the upscaling actor removed once a third of the outputs exist;
- ``decode node lost``: the other worker node (decode and encode tasks only) removed likewise;
- ``S3 under load``: a quarter of the requests fail (half of those 503 SlowDown, the rest 500 and connections
  dropped before or after the server acted), a fifth wait 0.2 s first (tests/fault_proxy.py);
- ``driver killed``: the job's process SIGKILLed once a third of the outputs exist, then the same command
  again; its extra time is the killed run's plus the rerun's minus the clean run (not the wait between them).
A removed node is added back before the next fault, so every run has the same cluster.
And for training (a local 4-CPU Ray, two workers, tiny model, 8 iterations, a checkpoint every 2):
- ``training worker killed``: rank 1's process SIGKILLed at iteration 5; Ray Train restarts both workers
  from the checkpoint at iteration 4. Lost: iterations missing from the finished run, or no exported model.

    python bench/reliability.py [--inputs 48 --side 64]   # ~6 min on 2 cores
    python bench/reliability.py --smoke   # 8 inputs, clean, a lost actor node and S3 (10 % faults), checked
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bucket_helpers import upscaler_nodes  # noqa: E402  (the tests' helpers: one way to find the actor)
from fault_proxy import FAULTS, fault_proxy  # noqa: E402  (the tests' proxy: one fault injector)

from pipelines.local_s3 import local_s3_server, s3_client  # noqa: E402


def inputs(count: int, side: int) -> dict[str, bytes]:
    rng, files = np.random.default_rng(0), {}
    for i in range(count):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side * 3 // 4, side, 3), np.uint8)).save(buf, "PNG")
        files[f"scan_{i:03d}.png"] = buf.getvalue()
    return files


def outputs(bucket: str) -> dict[str, str]:
    """The finished outputs (key below out/ -> ETag), straight from the server; no temporaries or report."""
    found, pages = {}, s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="out/")
    for page in pages:
        for obj in page.get("Contents", []):
            key = obj["Key"][len("out/"):]
            if not key.startswith("_reports/") and not key.rsplit("/", 1)[-1].startswith("."):
                found[key] = obj["ETag"]
    return found


def job_args(bucket: str) -> list[str]:
    return ["--input", f"s3://{bucket}/in", "--output", f"s3://{bucket}/out", "--stage-layout", "split",
            "--max-actors", "1", "--images-per-batch", "1", "--no-progress"]


def run_in_process(bucket: str) -> tuple[float, dict]:
    """The job's main on this process's Ray connection: (wall seconds, the report's rows by input)."""
    from pipelines.commands.bucket import main
    from pipelines.upscale.report import read_report_rows

    printed = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        code = main(job_args(bucket))
    wall = time.perf_counter() - start
    assert code == 0, printed.getvalue()[-3000:]
    report = next(line for line in reversed(printed.getvalue().splitlines()) if line.startswith("[srcore] report"))
    location = report.split()[-1].rsplit("/", 1)[0]
    return wall, {r["input"]: r for r in _rows(read_report_rows(location))}


def _rows(table) -> list[dict]:
    return table.select(["input", "status", "store_retries"]).to_pylist()


def tally(bucket: str, files: dict[str, bytes], rows: list[dict], before: dict[str, str], writes: int = 0) -> dict:
    """Lost, duplicated and rewritten for a run whose report ``rows`` answer ``files``; ``before``: the outputs
    finished when the fault struck (their ETags must not change); ``writes``: rewrites the store saw."""
    after, names = outputs(bucket), [r["input"].rsplit("/", 1)[1] for r in rows]
    ok = {r["input"].rsplit("/", 1)[1] for r in rows if r["status"] in ("ok", "skipped")}
    lost = len(set(files) - set(names)) + len(ok - set(after)) + sum(r["status"] == "failed" for r in rows)
    rewritten = sum(after.get(k) != etag for k, etag in before.items()) + writes
    return {"inputs": len(files), "lost": lost, "duplicated": len(names) - len(set(names)), "rewritten": rewritten}


def when_outputs(bucket: str, count: int, act) -> threading.Thread:
    """Run ``act()`` in a thread once ``count`` outputs exist."""
    def wait_then_act():
        deadline = time.time() + 600
        while len(outputs(bucket)) < count and time.time() < deadline:
            time.sleep(0.05)
        act()

    thread = threading.Thread(target=wait_then_act, daemon=True)
    thread.start()
    return thread


def lose_node(cluster, bucket: str, files: dict[str, bytes], which: str) -> dict:
    seen = {}

    def remove():
        actors = upscaler_nodes(cluster)
        node = next(n for n in cluster.worker_nodes if (n.node_id in actors) == (which == "actor"))
        seen["before"] = outputs(bucket)
        cluster.remove_node(node)

    thread = when_outputs(bucket, len(files) // 3, remove)
    wall, rows = run_in_process(bucket)
    thread.join(60)
    assert "before" in seen, f"the run ended before the {which} node could be removed"
    cluster.add_node(num_cpus=2)  # the same cluster for the next fault
    cluster.wait_for_nodes()
    return {"wall_s": wall, **tally(bucket, files, list(rows.values()), seen["before"])}


def s3_under_load(cluster, bucket: str, files: dict[str, bytes], rate: float = 0.25) -> dict:
    import ray

    log: list = []
    with fault_proxy(os.environ["AWS_ENDPOINT_URL"], rate=rate, seed=1, kinds=(*FAULTS, "503", "503", "503"),
                     delay_rate=0.2, delay_s=0.2, log=log) as (url, faults):
        direct = os.environ["AWS_ENDPOINT_URL"]
        ray.shutdown()  # the job's workers reach S3 through the proxy, and so does the driver
        ray.init(address=cluster.address, runtime_env={"env_vars": {"AWS_ENDPOINT_URL": url}})
        os.environ["AWS_ENDPOINT_URL"] = url
        try:
            wall, rows = run_in_process(bucket)
        finally:
            os.environ["AWS_ENDPOINT_URL"] = direct
            ray.shutdown()
            ray.init(address=cluster.address)
    written = {}
    for method, path, status in log:  # finished outputs the server stored more than once
        name = path.rsplit("/", 1)[1]
        if method == "PUT" and path.startswith(f"/{bucket}/out/") and 200 <= status < 300 and \
                "/_reports/" not in path and not name.startswith("."):
            written[path] = written.get(path, 0) + 1
    rewrites = sum(n - 1 for n in written.values())
    injected = sum(n for kind, n in faults.items() if kind not in ("pass", "delayed"))
    return {"wall_s": wall, **tally(bucket, files, list(rows.values()), {}, rewrites),
            "detail": f"{injected} faults in {sum(faults.values()) - faults['delayed']} requests "
                      f"({faults['503']} 503 SlowDown), {faults['delayed']} delayed 0.2 s; the report counts "
                      f"{sum(r['store_retries'] or 0 for r in rows.values())} retries in its rows"}


def kill_driver(cluster, bucket: str, files: dict[str, bytes]) -> dict:
    env = {**os.environ, "RAY_ADDRESS": cluster.address}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "jobs" / "upscale_bucket.py"), *job_args(bucket)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while len(outputs(bucket)) < len(files) // 3:
        assert proc.poll() is None, "the job ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_after = time.perf_counter() - start
    before, settled = outputs(bucket), 0
    while settled < 3:  # until the cluster has ended the dead driver's workers (not counted: no work)
        time.sleep(1)
        now = outputs(bucket)
        settled, before = (settled + 1, before) if now == before else (0, now)
    wall, rows = run_in_process(bucket)
    redone = sum(r["status"] == "ok" for r in rows.values())
    return {"wall_s": killed_after + wall, **tally(bucket, files, list(rows.values()), before),
            "detail": f"killed after {killed_after:.1f} s with {len(before)} outputs; the rerun skipped "
                      f"{len(before)}, upscaled {redone}"}


def training(root: Path, fault: bool) -> dict:
    """A tiny two-worker training run on this process's Ray, with rank 1 killed at iteration 5 if ``fault``."""
    from train_helpers import tiny_config

    from pipelines.train import run_training
    from srcore.train.config import load_config
    from srcore.weights import load_upscaling_model

    name = "fault" if fault else "clean"
    extra = {"fault": {"iteration": 5, "rank": 1, "marker": str(root / f"{name}.marker"), "kill": True},
             "run": {"max_failures": 1}} if fault else {}
    cfg = load_config(base=tiny_config(name, root, iterations=8, checkpoint_every=2, **extra))
    start = time.perf_counter()
    result = run_training(cfg)
    wall = time.perf_counter() - start
    finished = result.error is None and result.metrics["iteration"] == 8 and \
        load_upscaling_model(cfg.export, None) is not None
    assert not fault or (root / f"{name}.marker").is_file(), "the worker was not killed"
    return {"wall_s": wall, "inputs": "8 iterations", "lost": 0 if finished else 1, "duplicated": 0, "rewritten": 0,
            "detail": "resumed from the checkpoint at iteration 4 (iteration 5 run twice); model exported"
            if fault else "model exported"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=48)
    parser.add_argument("--side", type=int, default=64, help="input width (height 3/4 of it)")
    parser.add_argument("--smoke", action="store_true", help="8 inputs of 32x24, three runs, figures checked")
    args = parser.parse_args()
    count, side = (8, 32) if args.smoke else (args.inputs, args.side)
    import ray
    from ray.cluster_utils import Cluster

    files = inputs(count, side)
    with local_s3_server():
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "include_dashboard": False,
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}})
        try:
            for _ in range(2):
                cluster.add_node(num_cpus=2)
            ray.init(address=cluster.address)
            cluster.wait_for_nodes()
            faults = {"actor node lost": lambda b: lose_node(cluster, b, files, "actor"),
                      "S3 under load": lambda b: s3_under_load(cluster, b, files, 0.1 if args.smoke else 0.25)}
            if not args.smoke:
                faults["decode node lost"] = lambda b: lose_node(cluster, b, files, "decoder")
                faults["driver killed"] = lambda b: kill_driver(cluster, b, files)
            results = {}
            runs = {"warm-up (not counted)": None, "none (clean run)": None, **faults}
            if args.smoke:
                del runs["warm-up (not counted)"]
            for i, (name, fault) in enumerate(runs.items()):
                bucket = f"reliability-{i}"
                s3_client().create_bucket(Bucket=bucket)
                for key, data in files.items():
                    s3_client().put_object(Bucket=bucket, Key=f"in/{key}", Body=data)
                if fault is None:
                    wall, rows = run_in_process(bucket)
                    results[name] = {"wall_s": wall, **tally(bucket, files, list(rows.values()), {})}
                else:
                    results[name] = fault(bucket)
                print(f"[bench] {name}: {results[name]}", flush=True)
            results.pop("warm-up (not counted)", None)  # (the first run starts the nodes' worker processes)
        finally:
            ray.shutdown()
            cluster.shutdown()
    if not args.smoke:
        import tempfile

        ray.init(address="local", num_cpus=4, include_dashboard=False)
        try:
            with tempfile.TemporaryDirectory() as root:
                for fault, name in ((False, "training: none (clean run)"), (True, "training worker killed")):
                    results[name] = training(Path(root), fault)
                    print(f"[bench] {name}: {results[name]}", flush=True)
        finally:
            ray.shutdown()
    clean = results["none (clean run)"]["wall_s"]
    print("\n| fault | inputs | lost | duplicated | rewritten | wall s | extra wall s | detail |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, r in results.items():
        base = results["training: none (clean run)"]["wall_s"] if name.startswith("training") else clean
        extra = "-" if "clean run" in name else f"{r['wall_s'] - base:+.1f}"
        print(f"| {name} | {r['inputs']} | {r['lost']} | {r['duplicated']} | {r['rewritten']} | {r['wall_s']:.1f} | "
              f"{extra} | {r.get('detail', '')} |")
    bad = {name: r for name, r in results.items() if r["lost"] or r["duplicated"] or r["rewritten"]}
    if args.smoke:
        assert not bad, bad
        print("smoke: every input answered once, nothing lost, duplicated or rewritten under each fault")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
