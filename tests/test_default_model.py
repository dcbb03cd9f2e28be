"""The bundled default model: small, loads by name, and beats bicubic on Set5 x4 by at least 1.5 dB."""

from __future__ import annotations

import json
from pathlib import Path

from command_helpers import run_main
from conftest import SHARED, shared_path

import srcore
from srcore.archs.registry import DEFAULT_MODEL, VARIANTS
from srcore.evaluate_command import main as evaluate_main

BUNDLED = Path(srcore.__file__).parent / "pretrained" / VARIANTS[DEFAULT_MODEL].bundled
BICUBIC_SET5_X4 = 28.42  # published


def test_bundled_default_is_small_and_loads_by_name():
    assert BUNDLED.is_file() and BUNDLED.stat().st_size < 5 * 1024 * 1024
    model = srcore.load_model(DEFAULT_MODEL)
    assert model.descriptor.scale == 4 and model.hparams["skip"] == "bicubic"


def test_default_beats_bicubic_on_set5_by_1_5_db(tmp_path):
    shared_path("datasets/Set5/HR")
    result = run_main(evaluate_main, ["--model", DEFAULT_MODEL, "--scale", "4", "--sets", "Set5",
         "--data-root", str(SHARED / "datasets"), "--out", str(tmp_path)], ["srcore", "evaluate"])
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads((tmp_path / "results.json").read_text())["sets"]
    assert entry["psnr"] >= BICUBIC_SET5_X4 + 1.5, entry
