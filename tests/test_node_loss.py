"""A node lost mid-run costs only its work in flight: three Ray nodes on loopback (ray.cluster_utils.Cluster),
one removed while the bucket job runs, first the node that holds the upscaling actor, then one that only
decodes and encodes. Every input is answered exactly once, no output is partial or rewritten, the counts are
right. Then the last node that can run the actors is lost: the run says so, ends and writes its report.
(Training's lost worker: test_train_ray.)"""

from __future__ import annotations

import threading
import time

import pytest
import ray
from bucket_helpers import get_object, good_images, list_objects, make_bucket, run_job, summary_of, upscaler_nodes
from ray.cluster_utils import Cluster

from srcore.imageio import decode
from srcore.provenance import read_provenance

pytestmark = pytest.mark.slow


@pytest.fixture()
def cluster(s3, private_ray):
    """A head that schedules nothing (the driver's node) and two 2-CPU workers, in this process's environment
    (the loopback S3 server's variables)."""
    # a lost node is noticed in ~1.5 s, not Ray's default ~30 s (health checks every 0.5 s, 3 missed)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False,
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}})
    for _ in range(2):
        cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def _run_losing_a_node(cluster: Cluster, bucket: str, files: dict[str, bytes], which: str, *flags: str) -> dict:
    """The job over ``files`` (split layout, one actor, one image per call), and the ``which`` node ("actor":
    the one running the upscaler; "decoder": a worker node without it) removed once 3 outputs exist. Returns
    the outputs listed at the removal, after the run, the summary and the job's result."""
    make_bucket(bucket, "in", files)
    seen: dict = {}

    def lose_a_node() -> None:
        try:
            deadline = time.time() + 300
            while len(list_objects(bucket, "out")) < 3 and time.time() < deadline:
                time.sleep(0.05)
            actors = upscaler_nodes(cluster)
            assert actors, "no upscaling actor runs on this cluster's nodes"
            workers = [n for n in cluster.worker_nodes if n.node_id != cluster.head_node.node_id]
            node = next(n for n in workers if (n.node_id in actors) == (which == "actor"))
            seen["before"] = list_objects(bucket, "out")
            cluster.remove_node(node)
            seen["removed"], seen["removed_at"] = node.node_id, time.monotonic()
        except BaseException as exc:  # said by the test, not lost with the thread
            seen["error"] = exc

    remover = threading.Thread(target=lose_a_node, daemon=True)
    remover.start()
    result = run_job("--input", f"s3://{bucket}/in", "--output", f"s3://{bucket}/out", "--stage-layout", "split",
                     "--max-actors", "1", "--images-per-batch", "1", *flags)
    ended_at = time.monotonic()
    remover.join(60)
    assert "removed" in seen, seen.get("error", "the run ended before a node could be removed")
    return {**seen, "after": list_objects(bucket, "out"), "summary": summary_of(result), "result": result,
            "after_loss_s": ended_at - seen["removed_at"]}


def _report_rows(summary: dict) -> list[dict]:
    import pyarrow.parquet as pq
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    return pq.read_table(summary["report"].removeprefix("s3://") + "/rows", filesystem=fs).to_pylist()


def _assert_each_input_answered_once(bucket: str, files: dict[str, bytes], run: dict) -> None:
    result, summary = run["result"], run["summary"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (summary["images"], summary["ok"], summary["failed"]) == (len(files), len(files), 0)
    rows = _report_rows(summary)
    assert sorted(r["input"] for r in rows) == sorted(f"s3://{bucket}/in/{k}" for k in files)  # one row each
    assert set(run["after"]) == set(files)  # an output for every ok row
    assert {k: run["after"][k] for k in run["before"]} == run["before"]  # finished before the loss: untouched
    for key in run["after"]:  # none partial
        assert decode(get_object(bucket, f"out/{key}")).size[0] == 4 * decode(files[key]).size[0]


def test_losing_the_actors_node_or_a_decoding_node_costs_only_the_work_in_flight(cluster):
    pngs = [data for data, _, _ in good_images(24, seed=6).values() if data[:4] == b"\x89PNG"]
    files = {f"scan_{i:02d}.png": pngs[i % len(pngs)] for i in range(36)}  # a run long enough to lose a node in
    run = _run_losing_a_node(cluster, "lose-actor", files, "actor")
    _assert_each_input_answered_once("lose-actor", files, run)

    cluster.add_node(num_cpus=2)  # two worker nodes again
    cluster.wait_for_nodes()
    run = _run_losing_a_node(cluster, "lose-decoder", files, "decoder")
    _assert_each_input_answered_once("lose-decoder", files, run)

    # the last node that can run the actors (or decode) lost: the run says so and ends, its report written
    lost_all = _run_losing_a_node(cluster, "lose-all", files, "actor", "--wait-for-nodes", "3")
    assert len(cluster.worker_nodes) == 0  # (the head runs nothing)
    result, summary = lost_all["result"], lost_all["summary"]
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no node in the cluster can run the upscaling actors" in result.stdout
    assert lost_all["after_loss_s"] < 60  # --wait-for-nodes 3, then the report: no hang
    rows = _report_rows(summary)
    assert sorted(r["input"] for r in rows) == sorted(f"s3://lose-all/in/{k}" for k in files)  # one row each
    done = {r["input"].rsplit("/", 1)[1] for r in rows if r["status"] == "ok"}
    assert summary["ok"] == len(done) and summary["failed"] == len(files) - len(done) > 0
    assert all("not processed: no node in the cluster can run" in r["error"] for r in rows if r["status"] != "ok")
    assert done <= set(lost_all["after"]) and len(lost_all["after"]) >= 3  # an output for every ok row
    for key in lost_all["after"]:  # none partial; one whose row was lost in flight is whole, and a rerun skips it
        output = get_object("lose-all", f"out/{key}")
        assert decode(output).size[0] == 4 * decode(files[key]).size[0]
        assert read_provenance(output)["run"] == summary["run"]


def test_a_stage_that_no_alive_node_can_hold_is_named():
    from pipelines.cluster import unplaceable
    from pipelines.upscale.run import Layout

    gpu_split = Layout(fused=False, gpus_per_actor=1, cpus_per_actor=2, min_actors=1, max_actors=2,
                       images_per_call=32, calls_per_actor=2, jpeg_bytes=True)
    requests = gpu_split.requests()
    assert requests == {"the upscaling actors": {"CPU": 2, "GPU": 1}, "the decode and encode tasks": {"CPU": 1}}
    cpu_only = {"Alive": True, "Resources": {"CPU": 16.0}}
    gpu_node = {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}}
    assert unplaceable(requests, [cpu_only, gpu_node]) == []
    assert unplaceable(requests, [cpu_only, {**gpu_node, "Alive": False}]) == ["the upscaling actors"]
    assert unplaceable(requests, [{"Alive": True, "Resources": {"CPU": 1.0, "GPU": 1.0}}]) == ["the upscaling actors"]
    assert unplaceable(requests, [{"Alive": True, "Resources": {}}]) == list(requests)  # a head that runs nothing
