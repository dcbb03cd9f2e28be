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


def test_the_distilled_student_is_small_carded_and_copies_its_teacher():
    """srcore-distill-x4: at most 5 MB and 1.3M parameters, a card naming its teacher, data and licence, and on
    real inputs its outputs are closer to x4plus's than the bundled PSNR model's or bicubic's are."""
    import numpy as np
    from PIL import Image

    from srcore.inference import Upscaler
    from srcore.resize import imresize_np

    path = Path(srcore.__file__).parent / "pretrained" / VARIANTS["srcore-distill-x4"].bundled
    assert path.stat().st_size <= 5 << 20
    student = srcore.load_model("srcore-distill-x4")
    assert sum(p.numel() for p in student.parameters()) <= 1_300_000 and student.descriptor.scale == 4
    card = path.with_suffix(".md").read_text()
    for needed in ("RealESRGAN_x4plus", "BSD-3-Clause", "T91", "BSD200", "held out", "distill-x4plus"):
        assert needed in card, needed
    teacher = Upscaler(srcore.load_model(shared_path("weights/RealESRGAN_x4plus.pth")), tile=None)
    engines = {"student": Upscaler(student, tile=None), "psnr": Upscaler(srcore.load_model(DEFAULT_MODEL), tile=None)}
    folder = shared_path("datasets/RealWorld")
    for name in sorted(p.name for p in folder.iterdir() if p.suffix in (".png", ".jpg"))[:2]:
        crop = np.asarray(Image.open(folder / name).convert("RGB"))[:40, :40]
        target = teacher.upscale_image(crop)
        made = {k: _psnr(e.upscale_image(crop), target) for k, e in engines.items()}
        made["bicubic"] = _psnr(np.clip(imresize_np(crop, 4), 0, 255).round(), target)
        assert made["student"] > made["psnr"] and made["student"] > made["bicubic"], (name, made)


def _psnr(out, target) -> float:
    import numpy as np

    return float(10 * np.log10(255**2 / np.mean((out.astype(np.float64) - target.astype(np.float64)) ** 2)))
