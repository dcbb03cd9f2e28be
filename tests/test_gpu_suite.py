"""The GPU suite cannot rot between GPU runs: its CPU dry run checks every step's command, its CPU smoke run
runs every step for real at toy sizes, and the kit builder's slimming is checked on a small wheel."""

from __future__ import annotations

import io
import json
import lzma
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import device_kit  # noqa: E402

SHARED = Path(os.environ.get("SRCORE_SHARED", ROOT.parent / "shared"))
# the bucket job's x4plus step needs the official weights (the kit's, or the shared folder's)
STEPS = ["correctness", "gpu-tests", "engine", "pipeline-x4plus", "pipeline-compact", "engine-inductor", "encoders",
         "train"]
if not (SHARED / "weights" / "RealESRGAN_x4plus.pth").exists():
    STEPS.remove("pipeline-x4plus")


def run_suite(tmp_path: Path, *flags: str, timeout: int) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, SRCORE_KIT=str(tmp_path / "no-kit"))
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), *flags, "--out", str(out),
                           "--work", str(tmp_path / "work")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)
    return proc, out


def test_dry_run_checks_every_step_of_the_gpu_suite(tmp_path):
    proc, out = run_suite(tmp_path, "--cpu-dry-run", timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["summary.md", "results.json", "logs.txt", next(out.glob("20??-??-??-cpu.md")).name])  # <= 8 files back
    summary = json.loads((out / "results.json").read_text())
    assert [s["step"] for s in summary["steps"]] == STEPS
    assert all(s["status"] == "ok" for s in summary["steps"]), summary["steps"]
    # the dry run passes the GPU run's exact arguments, plus --dry-run
    commands = {s["step"]: s["command"] for s in summary["steps"]}
    assert "--device cuda" in commands["engine"] and "--sizes 256,512,1024" in commands["engine"]
    assert "fresh:realesrgan-x4plus" in commands["engine"] and commands["engine"].endswith("--dry-run")
    assert "--gpu" in commands["train"] and "--stages psnr,gan" in commands["train"]
    engine_log = (tmp_path / "work" / "engine.log").read_text()
    assert '"configs": 72' in engine_log  # 4 models x 3 sizes x (plain loop + 3 precisions + 2 with CUDA graphs)
    assert "--count 60000" in commands["pipeline-compact"] and "--format jpg" in commands["pipeline-compact"]
    assert "--compile inductor,auto" in commands["engine-inductor"]
    assert "realesrgan-x4plus\": 35.8" in engine_log  # counted FLOPs: 35.2 MFLOP/px published, 35.85 counted
    md = (out / "summary.md").read_text()
    assert "cpu-dry-run" in md and "| train | ok |" in md


def test_a_step_whose_flags_rot_fails_the_dry_run(tmp_path):
    """The dry run must be able to fail: an unknown model in a step's command is caught."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "train.py"), "--generators", "no-such-net",
                           "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "unknown model 'no-such-net'" in proc.stderr
    proc, out = run_suite(tmp_path, "--cpu-dry-run", "--only", "engine,nonsense", timeout=120)
    assert proc.returncode != 0 and "unknown steps ['nonsense']" in proc.stderr


@pytest.mark.slow
@pytest.mark.gpu_suite  # `make test-gpu-suite` (3 min here), run by CI when bench/ or scripts/ change
def test_smoke_run_measures_every_step_on_cpu_and_writes_the_summary(tmp_path):
    proc, out = run_suite(tmp_path, "--cpu-smoke", timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    figures = json.loads((out / "results.json").read_text())["figures"]
    engine = figures["engine"]
    assert {r["kind"] for r in engine["rows"]} == {"plain", "upscaler"}
    assert all(r["output_MP_per_s"] > 0 and r["tflops"] > 0 for r in engine["rows"])
    encoders = {r["encoder"].split(" (")[0]: r for r in figures["encoders"]["rows"]}
    assert {"png  Pillow", "png  OpenCV", "jpeg Pillow", "jpeg OpenCV"} <= set(encoders)
    assert all(r["MP_per_s"] > 0 and r["MB"] > 0 for r in encoders.values())
    pipeline = figures["pipeline-compact"]
    job, ceiling = pipeline["runs"]["job"], pipeline["ceiling"]
    assert job["images"] == 24 and job["steady_images_per_s"] > 0 and job["first_output_s"] > 0
    assert ceiling["ceiling_images_per_s"] > 0 and "fused" in job["layout"]
    assert set(job["stage_ms_per_image"]) == {"read", "decode", "upscale", "encode", "write", "check"}
    assert {c["outcome"] for c in figures["gpu-tests"]["cases"]} <= {"passed", "skipped"}
    train = figures["train"]
    assert train[0]["it_per_s"] > 0 and train[0]["generator"] == "srcore-compact-x4"
    md = next(out.glob("20??-??-??-cpu.md")).read_text()
    for heading in ("## Machine", "## Engine", "## Encoders", "## pipeline-compact", "## GPU tests", "## Training",
                    "## Steps"):
        assert heading in md
    assert "===== train: ok" in (out / "logs.txt").read_text()
    if (SHARED / "weights").is_dir():
        rows = figures["correctness"]
        official = [r for r in rows if "max_abs" in r]
        assert official and all(r["max_abs"] < 1e-4 for r in official)  # fp32 CPU reproduces the official output
        assert all(r["max_levels"] <= 16 for r in rows if r.get("image", "").startswith("fixture")
                   and r["weights"] == "realesr-animevideov3.pth")


def fake_wheel(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in [("ray/__init__.py", b"x = 1\n", 0o644), ("ray/jars/big.jar", b"j" * 1000, 0o644),
                                 ("ray/rllib/algo.py", b"pass\n", 0o644),
                                 ("ray/core/src/ray/raylet/raylet", b"#!/bin/sh\n", 0o755),
                                 ("ray/dashboard/client/build/index.html", b"<html>", 0o644),
                                 ("ray/dashboard/agent.py", b"pass\n", 0o644),
                                 ("ray-2.60.0.data/scripts/ray", b"#!python\n", 0o755),
                                 ("ray-2.60.0.dist-info/METADATA", b"Name: ray\n", 0o644)]:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def test_slim_ray_drops_what_ray_data_and_train_never_load_and_is_reproducible(tmp_path):
    wheel = fake_wheel(tmp_path / "ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl")
    first, second = tmp_path / "a.tar.xz", tmp_path / "b.tar.xz"
    info = device_kit.slim_ray(wheel, first)
    device_kit.slim_ray(wheel, second)
    assert first.read_bytes() == second.read_bytes()  # same inputs, same bytes
    with tarfile.open(fileobj=io.BytesIO(lzma.decompress(first.read_bytes()))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"ray/__init__.py", "ray/core/src/ray/raylet/raylet", "ray/dashboard/agent.py",
                            "ray-2.60.0.dist-info/METADATA"}
    assert members["ray/core/src/ray/raylet/raylet"].mode == 0o755 and members["ray/__init__.py"].mode == 0o644
    assert info["dropped_bytes"] == 1000 + 5 + 6 + 9


def test_kit_pins_every_package_it_carries():
    pins = device_kit.read_pins()
    assert pins["ray"] == "2.60.0"
    missing = [name for name in device_kit.KIT_PACKAGES if device_kit.normalise(name) not in pins]
    assert not missing, f"add pins to constraints.txt for {missing}"


def test_one_failing_engine_configuration_is_reported_and_the_rest_measured(tmp_path):
    """A GPU run is rare: an out-of-memory or unsupported configuration must not cost the others."""
    out = tmp_path / "engine.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "inference.py"), "--sizes", "32", "--images", "1",
                           "--tiles", "8,auto", "--min-seconds", "0", "--no-isolate", "--json-out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["path"] for r in rows] == ["plain loop (fp32, whole image, one at a time)",
                                         "srcore Upscaler (fp32, tile 8, batch auto)",
                                         "srcore Upscaler (fp32, tile auto, batch auto)"]
    assert "tile (8) must be larger than tile_overlap" in rows[1]["error"]
    assert rows[2]["output_MP_per_s"] > 0 and rows[2]["speedup_vs_plain"] > 0
