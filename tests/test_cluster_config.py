"""cluster.yaml is a valid Ray cluster launcher config, checked with Ray's own schema."""

from __future__ import annotations

from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


def test_cluster_yaml_validates_against_ray_schema():
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    validate_config(prepare_config(config))  # as `ray up` does; raises on schema violations
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["min_workers"] == 0 and workers["max_workers"] >= 1
    assert config["head_node_type"] in config["available_node_types"]
    assert any("constraints.txt" in cmd and "-e ~/srcore" in cmd for cmd in config["setup_commands"])


def test_schema_rejects_a_broken_config():
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    config["available_node_types"]["gpu_worker"]["max_workers"] = "many"
    try:
        validate_config(config)
    except Exception as exc:  # jsonschema.ValidationError
        assert "many" in str(exc)
    else:
        raise AssertionError("a string max_workers passed Ray's schema")
