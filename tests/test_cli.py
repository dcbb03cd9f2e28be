"""The srcore command line, run as users run it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch
from PIL import Image

import srcore


def srcore_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "srcore.cli", *args], capture_output=True, text=True)


def test_models_lists_the_registry():
    result = srcore_cli("models")
    assert result.returncode == 0
    assert all(name in result.stdout for name in srcore.list_models())


def test_upscale_writes_outputs_and_reports_failures(tmp_path):
    torch.manual_seed(0)
    weights = srcore.save_model(srcore.create_model("realesr-animevideov3", num_feat=8, num_conv=1),
                                tmp_path / "tiny.safetensors")
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 10, 3), np.uint8)).save(inputs / "good.png")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    result = srcore_cli("upscale", str(inputs), "-o", str(out), "--model", str(weights))
    assert result.returncode == 1  # one file failed
    assert "broken.png" in result.stderr
    assert "1 images upscaled x4" in result.stdout and "1 failed" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]  # nothing partial for the broken input
    assert Image.open(out / "good.png").size == (40, 48)


def test_upscale_with_a_missing_model_fails_clearly(tmp_path):
    result = srcore_cli("upscale", str(tmp_path), "-o", str(tmp_path / "o"), "--model", str(tmp_path / "no.pth"))
    assert result.returncode == 2
    assert "no.pth: no such weights file" in result.stderr
