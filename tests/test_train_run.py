"""The training run folder, prepared on the driver before Ray starts: paths, resume/fresh, the package guard."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from train_helpers import tiny_config

import srcore
from pipelines.train import prepare_run
from srcore.train.config import ConfigError, load_config

BUNDLED = Path(srcore.__file__).parent / "pretrained" / "srcore-compact-x4.safetensors"


def test_a_run_never_writes_inside_the_installed_package(tmp_path):
    before = hashlib.sha256(BUNDLED.read_bytes()).hexdigest()
    for override in ({"export": str(BUNDLED)}, {"run": {"storage_path": str(BUNDLED.parent)}},
                     {"log_dir": str(BUNDLED.parent / "logs")}):
        cfg = load_config(base=tiny_config("guard", tmp_path, **override))
        with pytest.raises(ConfigError, match="inside the installed srcore package"):
            prepare_run(cfg)
    # the shipped configs export into their run folder, not over the bundled files
    for config in Path("configs").glob("*.yaml"):
        assert "srcore/pretrained" not in (yaml.safe_load(config.read_text()).get("export") or "")
    assert hashlib.sha256(BUNDLED.read_bytes()).hexdigest() == before


def test_paths_expand_srcore_shared_and_are_checked_before_ray(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SRCORE_SHARED", str(tmp_path / "shared"))
    cfg = load_config(base=tiny_config("paths", tmp_path, data={"val": ["${SRCORE_SHARED}/datasets/Set5/HR"]},
                                       run={"storage_path": "runs"}))
    with pytest.raises(ConfigError, match=r"data.val: .*shared/datasets/Set5/HR does not exist"):
        prepare_run(cfg)
    (tmp_path / "shared" / "datasets" / "Set5" / "HR").mkdir(parents=True)
    cfg, changes = prepare_run(cfg)
    assert changes is None
    run = tmp_path / "runs" / "paths"  # a relative storage path is resolved here, on the driver
    assert cfg.run_dir == str(run) and cfg.log_dir == str(run / "logs")
    assert cfg.export == str(run / "paths.safetensors")
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["val"] == [
        str(tmp_path / "shared" / "datasets" / "Set5" / "HR")]


def test_resume_lists_changed_settings_and_fresh_moves_the_old_run_aside(tmp_path):
    base = tiny_config("again", tmp_path)
    with pytest.raises(ConfigError, match="'srcore-compact-x4' is a registered model's name"):
        load_config(base={**base, "name": "srcore-compact-x4"})
    with pytest.raises(ConfigError, match="no run to resume"):
        prepare_run(load_config(base=base), "resume")
    cfg, _ = prepare_run(load_config(base=base))
    (Path(cfg.run_dir) / "net_g_2.safetensors").write_bytes(b"earlier")
    with pytest.raises(ConfigError, match="iterations=4, and this config says iterations=8: pass --resume"):
        prepare_run(load_config(base={**base, "iterations": 8}))  # neither flag: asked, not guessed
    _, changes = prepare_run(load_config(base={**base, "iterations": 8, "optim": {"lr_g": 5e-4}}), "resume")
    assert changes == ["iterations: 4 -> 8", "optim.lr_g: 0.001 -> 0.0005"]
    cfg, changes = prepare_run(load_config(base=base), "fresh")
    assert changes is None and not (Path(cfg.run_dir) / "net_g_2.safetensors").exists()
    archived = list(Path(cfg.run_dir).parent.glob("again-archived-*"))
    assert len(archived) == 1 and (archived[0] / "net_g_2.safetensors").read_bytes() == b"earlier"
