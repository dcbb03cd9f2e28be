"""Two Ray nodes on loopback (ray.cluster_utils.Cluster): the two workers land on different nodes."""

from __future__ import annotations

import pytest
import ray
from ray.cluster_utils import Cluster
from train_helpers import assert_same_weights, rank_dumps, tiny_config

from pipelines.train import run_training
from srcore.train.config import load_config


@pytest.fixture()
def two_nodes(tmp_path, private_ray):
    dump = tmp_path / "dump"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes = [cluster.add_node(num_cpus=2, resources={"train_slot": 1}) for _ in range(2)]
    ray.init(address=cluster.address, runtime_env={"env_vars": {"SRCORE_TRAIN_DUMP": str(dump)}})
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
