"""Ray nodes on loopback (ray.cluster_utils.Cluster): the two workers land on different nodes, and training
survives losing the node of one of them."""

from __future__ import annotations

import pytest
import ray
from ray.cluster_utils import Cluster
from train_helpers import assert_same_weights, rank_dumps, tiny_config

from pipelines.faults import faults_env
from pipelines.train import run_training
from srcore.train.config import load_config


@pytest.fixture()
def two_nodes(tmp_path, private_ray):
    dump = tmp_path / "dump"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes = [cluster.add_node(num_cpus=2, resources={"train_slot": 1}) for _ in range(2)]
    ray.init(address=cluster.address, runtime_env={"env_vars": faults_env(train_dump=dump)})
    cluster.wait_for_nodes()
    yield dump, {n.node_id for n in nodes}
    ray.shutdown()
    cluster.shutdown()


def test_workers_on_two_nodes_complete_training(two_nodes, tmp_path):
    dump, worker_nodes = two_nodes
    cfg = load_config(base=tiny_config("twonode", tmp_path, iterations=3, checkpoint_every=3,
                                       run={"resources_per_worker": {"CPU": 1, "train_slot": 1}}))
    result = run_training(cfg)
    assert result.error is None and result.metrics["iteration"] == 3
    ranks = rank_dumps(dump, "twonode", 2)
    nodes = {r["node"] for r in ranks}
    assert len(nodes) == 2 and nodes == worker_nodes
    assert_same_weights(ranks, "generator")


@pytest.fixture()
def three_nodes(tmp_path, private_ray):
    """Three worker nodes with a training slot each (two workers train, one slot is spare), a lost node noticed
    in ~1.5 s."""
    dump = tmp_path / "dump"
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False,
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}})
    for _ in range(3):
        cluster.add_node(num_cpus=2, resources={"train_slot": 1})
    ray.init(address=cluster.address, runtime_env={"env_vars": faults_env(train_dump=dump)})
    cluster.wait_for_nodes()
    yield cluster, dump
    ray.shutdown()
    cluster.shutdown()


def test_training_survives_losing_a_workers_node(three_nodes, tmp_path, capfd):
    """Rank 1 holds at iteration 3 (after the checkpoint at 2) and its node is removed: Ray Train restarts the
    workers on the nodes left, from the checkpoint at 2, says so, finishes and exports the model."""
    import threading
    import time

    from srcore.weights import load_upscaling_model

    cluster, dump = three_nodes
    marker = tmp_path / "fault.marker"
    cfg = load_config(base=tiny_config("nodeloss", tmp_path, iterations=5, checkpoint_every=2,
                                       fault={"iteration": 3, "rank": 1, "marker": str(marker), "hold_s": 120},
                                       run={"max_failures": 1, "resources_per_worker": {"CPU": 1, "train_slot": 1}}))
    removed = {}

    def remove_the_held_workers_node():
        deadline = time.time() + 300
        while not marker.is_file() and time.time() < deadline:
            time.sleep(0.1)
        node_id = marker.read_text().split("node ")[-1].strip()
        node = next(n for n in cluster.worker_nodes if n.node_id == node_id)
        cluster.remove_node(node)
        removed["node"] = node_id

    remover = threading.Thread(target=remove_the_held_workers_node, daemon=True)
    remover.start()
    result = run_training(cfg)
    remover.join(10)
    assert removed, "rank 1's node was not removed"
    assert result.error is None and result.metrics["iteration"] == 5
    ranks = rank_dumps(dump, "nodeloss", 2)
    assert {r["node"] for r in ranks}.isdisjoint({removed["node"]}) and len({r["node"] for r in ranks}) == 2
    assert all(r["iteration"] == 5 and r["segments"] == [0, 2] for r in ranks)  # resumed from the checkpoint at 2
    assert_same_weights(ranks, "generator")
    printed, deadline = "", time.time() + 30
    while "[srcore] resumed nodeloss at iteration 2" not in printed and time.time() < deadline:
        time.sleep(0.5)  # the workers' log lines reach this driver a moment later
        printed += "".join(capfd.readouterr())
    assert "[srcore] resumed nodeloss at iteration 2" in printed, printed[-3000:]
    assert load_upscaling_model(cfg.export, None) is not None
