"""The bundled default model: small, loads by name, and beats bicubic on Set5 x4 by at least 1.5 dB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import SHARED, shared_path

import srcore
from srcore.archs.registry import DEFAULT_MODEL, VARIANTS

BUNDLED = Path(srcore.__file__).parent / "pretrained" / VARIANTS[DEFAULT_MODEL].bundled
BICUBIC_SET5_X4 = 28.42  # published


def test_bundled_default_is_small_and_loads_by_name():
    assert BUNDLED.is_file() and BUNDLED.stat().st_size < 5 * 1024 * 1024
    model = srcore.load_model(DEFAULT_MODEL)
    assert model.descriptor.scale == 4 and model.hparams["skip"] == "bicubic"


def test_default_beats_bicubic_on_set5_by_1_5_db(tmp_path):
    shared_path("datasets/Set5/HR")
    result = subprocess.run(
        [sys.executable, "jobs/evaluate.py", "--model", DEFAULT_MODEL, "--scale", "4", "--sets", "Set5",
         "--data-root", str(SHARED / "datasets"), "--out", str(tmp_path)],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads((tmp_path / "results.json").read_text())["sets"]
    assert entry["psnr"] >= BICUBIC_SET5_X4 + 1.5, entry
