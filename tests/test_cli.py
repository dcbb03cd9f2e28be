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


def test_upscale_folders_formats_failures_and_summary(tmp_path):
    torch.manual_seed(0)
    weights = srcore.save_model(srcore.create_model("realesr-animevideov3", num_feat=8, num_conv=1),
                                tmp_path / "tiny.safetensors")
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), np.uint8)).save(inputs / "good.png")
    Image.fromarray(rng.integers(0, 256, (8, 8), np.uint8)).save(inputs / "sub" / "gray.jpg")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (inputs / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    result = srcore_cli("upscale", str(inputs), "-o", str(out), "--model", str(weights), "--format", "webp",
                        "--outscale", "2")
    assert result.returncode == 1  # some files failed
    assert "broken.png: truncated or corrupt" in result.stderr or "broken.png: not a recognised" in result.stderr
    assert "empty.png: empty file" in result.stderr
    assert "2 of 4 images upscaled" in result.stdout and "2 failed" in result.stdout
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["good.webp", "sub/gray.webp"]  # nothing partial, sub-folders kept
    assert Image.open(out / "good.webp").size == (20, 24)


def test_upscale_errors_before_any_work(tmp_path):
    result = srcore_cli("upscale", str(tmp_path), "-o", str(tmp_path / "o"), "--model", str(tmp_path / "no.pth"))
    assert result.returncode == 2
    assert "no.pth: no such weights file" in result.stderr
    result = srcore_cli("upscale", str(tmp_path), "-o", str(tmp_path / "o"), "--model", "x", "--quality", "0")
    assert result.returncode == 2 and "quality must be in 1..100" in result.stderr
