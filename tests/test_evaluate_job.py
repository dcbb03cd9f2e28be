"""``srcore evaluate`` (``jobs/evaluate.py``) with a model file and a folder of HR images, and its errors: called
in this process, but for the errors' first case, run as ``python jobs/evaluate.py``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch
from command_helpers import run_main
from PIL import Image

import srcore
from srcore.evaluate_command import main


def evaluate(*args: str) -> subprocess.CompletedProcess:
    return run_main(main, list(args), [sys.executable, "jobs/evaluate.py"])


def test_model_on_a_folder_with_rgb_and_gray_images(tmp_path):
    hr = tmp_path / "MySet" / "HR"
    hr.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (50, 42, 3), np.uint8)).save(hr / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (33, 41), np.uint8)).save(hr / "gray.png")
    torch.manual_seed(0)
    weights = srcore.save_model(srcore.create_model("realesr-animevideov3", num_feat=4, num_conv=1, upscale=2),
                                tmp_path / "tiny.safetensors")
    result = evaluate("--model", str(weights), "--sets", str(hr), "--out", str(tmp_path / "o"))  # x2: the model's
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "o" / "results.json").read_text())
    assert report["sets"][0]["scale"] == 2
    (entry,) = report["sets"]
    assert entry["set"] == "MySet" and entry["count"] == 2
    assert {i["image"] for i in entry["images"]} == {"rgb.png", "gray.png"}
    assert all(np.isfinite(i["psnr"]) and 0 < i["ssim"] <= 1 for i in entry["images"])
    assert "| MySet |" in result.stdout


def test_errors_name_the_problem(tmp_path):
    result = subprocess.run([sys.executable, "jobs/evaluate.py", "--model", "bicubic", "--scale", "4", "--sets",
                             "NoSuchSet", "--data-root", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "NoSuchSet" in result.stderr and "Traceback" not in result.stderr
    result = evaluate("--model", "bicubic", "--sets", str(tmp_path))
    assert result.returncode == 2 and "--model bicubic needs --scale" in result.stderr
    torch.manual_seed(0)
    weights = srcore.save_model(srcore.create_model("realesr-animevideov3", num_feat=4, num_conv=1),
                                tmp_path / "x4.safetensors")
    (tmp_path / "S" / "HR").mkdir(parents=True)
    result = evaluate("--model", str(weights), "--scale", "2", "--sets", "S", "--data-root", str(tmp_path))
    assert result.returncode == 2 and "x4 model, but --scale is 2" in result.stderr


def test_x2_rrdbnet_on_set14_is_padded_by_the_engine(tmp_path):
    """RRDBNet x2 reads inputs in multiples of 2; Set14's LR images (e.g. 125x180) are not. Evaluation runs
    through the Upscaler, which pads and crops, so every image is scored at its full size."""
    from conftest import shared_path

    set14 = shared_path("datasets/Set14/HR")
    torch.manual_seed(0)
    model = srcore.create_model("realesrgan-x2plus", num_feat=8, num_block=1, num_grow_ch=4)
    assert model.descriptor.size_multiple == 2
    weights = srcore.save_model(model, tmp_path / "rrdb-x2.safetensors")
    result = evaluate("--model", str(weights), "--scale", "2", "--sets", str(set14), "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr[-2000:]
    (entry,) = json.loads((tmp_path / "o" / "results.json").read_text())["sets"]
    assert entry["count"] == len(list(set14.glob("*.png")))
    assert all(np.isfinite(i["psnr"]) and np.isfinite(i["lr_psnr"]) for i in entry["images"])


def test_a_folder_without_ground_truth_gets_niqe_and_lr_consistency(tmp_path):
    """A set with no HR folder (like RealWorld) is real LR inputs: upscaled as they are, scored without a
    reference. NIQE needs two 96x96 blocks of output: a tiny input gets none, and the set still scores."""
    real = tmp_path / "Real"
    real.mkdir()
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (8, 12, 3), np.uint8), np.ones((8, 8, 1), np.uint8))  # 64x96 input
    Image.fromarray(smooth).save(real / "photo.png")
    Image.fromarray(rng.integers(0, 256, (10, 10), np.uint8)).save(real / "tiny.png")
    result = evaluate("--model", "srcore-compact-x4", "--scale", "4", "--sets", "Real", "--data-root", str(tmp_path),
                      "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads((tmp_path / "o" / "results.json").read_text())["sets"]
    assert entry["reference"] is False and entry["count"] == 2 and entry["psnr"] is None
    images = {i["image"]: i for i in entry["images"]}
    assert images["photo.png"]["psnr"] is None and 0 < images["photo.png"]["niqe"] < 30
    assert images["tiny.png"]["niqe"] is None and np.isfinite(images["tiny.png"]["lr_psnr"])
    assert entry["niqe"] == images["photo.png"]["niqe"] and images["photo.png"]["seconds"] > 0
    assert "| srcore-compact-x4 | x4 | Real | 2 | - | - |" in result.stdout
    # --realism names the blend in the table; a model without a GAN / PSNR pair is refused
    blend = evaluate("--model", "srcore-compact-x4-gan", "--realism", "0.5", "--scale", "4", "--sets", "Real",
                     "--data-root", str(tmp_path), "--out", str(tmp_path / "o2"))
    assert blend.returncode == 0 and "| srcore-compact-x4-gan@realism=0.5 | x4 | Real |" in blend.stdout
    bad = evaluate("--model", "realesr-animevideov3", "--realism", "0.5", "--scale", "4", "--sets", "Real",
                   "--data-root", str(tmp_path))
    assert bad.returncode == 2 and "no GAN / PSNR pair" in bad.stderr


def test_16bit_gray_and_an_exif_rotated_jpeg_score_as_srcore_upscale_sees_them(tmp_path):
    """Evaluation reads through the upscaler's decoder: a 16-bit gray scan stays 16-bit gray (not 13 levels of
    8-bit RGB), an EXIF-rotated photo is upright. Its scores equal those of `srcore upscale`'s own outputs."""
    from command_helpers import srcore_cli

    from srcore.evaluation import niqe_or_none, read_image, scoring_pixels
    from srcore.imageio import decode
    from srcore.metrics import lr_consistency

    real = tmp_path / "Real"
    real.mkdir()
    rng = np.random.default_rng(1)
    base = np.kron(rng.integers(0, 60000, (8, 13)), np.ones((8, 8)))
    scan = (base + rng.integers(0, 3000, base.shape)).astype(np.uint16)  # 64x104, thousands of levels
    Image.fromarray(scan).save(real / "scan16.png")
    photo = np.kron(rng.integers(0, 256, (8, 12, 3), np.uint8), np.ones((8, 8, 1), np.uint8))  # 64 high, 96 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: 96 high, 64 wide
    Image.fromarray(photo).save(real / "turned.jpg", quality=95, exif=exif.tobytes())
    assert read_image(real / "scan16.png").dtype == np.uint16 and read_image(real / "scan16.png").shape[2] == 1
    assert read_image(real / "turned.jpg").shape == (96, 64, 3)

    result = evaluate("--model", "srcore-compact-x4", "--sets", "Real", "--data-root", str(tmp_path),
                      "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads((tmp_path / "o" / "results.json").read_text())["sets"]
    scores = {i["image"]: i for i in entry["images"]}
    upscaled = srcore_cli("upscale", str(real), "-o", str(tmp_path / "up"), "--model", "srcore-compact-x4",
                          "--precision", "fp32", "--format", "png")
    assert upscaled.returncode == 0, upscaled.stderr
    for name in ("scan16.png", "turned.jpg"):
        output = decode((tmp_path / "up" / (name.split(".")[0] + ".png")).read_bytes())
        lr, sr = scoring_pixels(read_image(real / name)), scoring_pixels(output.pixels)
        assert sr.shape[:2] == (lr.shape[0] * 4, lr.shape[1] * 4)
        assert scores[name]["lr_psnr"] == lr_consistency(lr, sr, 4), name
        assert scores[name]["niqe"] == niqe_or_none(sr, 4), name
    assert decode((tmp_path / "up" / "scan16.png").read_bytes()).pixels.dtype == np.uint16
