"""Ray Train on a real local Ray (CPU): DDP keeps ranks identical, checkpoints resume, failures recover."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import ray
import torch
import yaml
from bucket_helpers import SECRETS
from command_helpers import load_job, run_main
from train_helpers import assert_same_weights, image_folder, rank_dumps, tiny_config, write_config

from pipelines.faults import faults_env
from pipelines.train import STATE_FILE, run_training
from srcore.train.config import load_config
from srcore.weights import load_upscaling_model

# one worker runs this module (its own cluster, set up once); the wheel's and the shared head's tests go elsewhere
pytestmark = pytest.mark.xdist_group("train")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A Ray of this module's own: 4 logical CPUs (two training workers and the data tasks), and workers that
    dump their ranks' weights. The variable is in this process's environment as the cluster starts, so every
    job's workers see it, a job process's that joins through RAY_ADDRESS included."""
    dump = tmp_path_factory.mktemp("dump")
    if ray.is_initialized():
        ray.shutdown()  # the run's shared head
    with pytest.MonkeyPatch.context() as env:
        env.setenv(*faults_env(train_dump=dump).popitem())
        for name, value in SECRETS.items():  # store credentials no training artefact may carry
            env.setenv(name, value)
        env.delenv("RAY_ADDRESS", raising=False)
        ray.init(address="local", num_cpus=4, include_dashboard=False)
    yield dump
    ray.shutdown()


def test_job_command_trains_two_workers_and_a_second_run_resumes(ray_cluster, tmp_path):
    """The first run is ``python jobs/train.py`` in its own process, joining this module's Ray through
    RAY_ADDRESS as ``ray job submit`` has it do (the wheel test runs ``srcore train`` on a local Ray it starts);
    the upscale and the resumed run call the same mains in this process. Workers dump their ranks' weights."""
    from pipelines.commands.train import main as train_main
    from srcore.cli import main as cli_main

    dump = ray_cluster
    val = image_folder(tmp_path / "val", count=2, size=32)
    cfg = tiny_config("resume", tmp_path, export=str(tmp_path / "g.safetensors"), data={"val": [str(val)]})
    cfg["log_every"] = 2
    config = write_config(tmp_path / "tiny.yaml", cfg)
    cmd = [sys.executable, "jobs/train.py", "--config", str(config)]
    env = {**os.environ, **SECRETS, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "done: resume at iteration 4" in first.stdout
    output = first.stdout + first.stderr
    progress = [line for line in output.splitlines() if "[srcore] it " in line]
    assert len(progress) == 2, output[-3000:]  # log_every 2 of 4 iterations, each line once (not twice)
    assert all(" | lr " in line and "it/s | ETA " in line for line in progress)
    assert "Total Progress" not in output and "Reporting training result" not in output

    # the run folder, BasicSR-style: config as run, TensorBoard logs, validation samples, loadable generators
    run = tmp_path / "runs" / "resume"
    assert yaml.safe_load((run / "config.yaml").read_text())["iterations"] == 4
    assert list((run / "logs").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["0000002", "0000004"]
    assert len(list((run / "samples" / "0000004").glob("*.png"))) == 2
    assert sorted(p.name for p in run.glob("net_g_*.safetensors")) == ["net_g_2.safetensors", "net_g_4.safetensors"]
    upscaled = run_main(cli_main, ["upscale", str(val), "-o", str(tmp_path / "up"), "--model",
                                   str(run / "net_g_4.safetensors")], ["srcore"])
    assert upscaled.returncode == 0, upscaled.stderr
    assert len(list((tmp_path / "up").glob("*.png"))) == 2
    ranks = rank_dumps(dump, "resume", 2)
    assert_same_weights(ranks, "generator")  # DDP: identical after the steps
    assert ranks[0]["segments"] == [0]
    checkpoints = sorted(p for p in (tmp_path / "runs" / "resume").glob("checkpoint_*") if p.is_dir())
    assert checkpoints and torch.load(checkpoints[-1] / STATE_FILE, weights_only=True)["iteration"] == 4
    # more iterations: the command asks whether to go on or start over, and does neither by itself
    asked = run_main(train_main, ["--config", str(config), "iterations=6"], ["srcore", "train"])
    assert asked.returncode == 2 and "pass --resume" in asked.stderr and "--fresh" in asked.stderr
    # with --resume it goes on from iteration 4, and says what changed
    second = run_main(train_main, ["--config", str(config), "iterations=6", "--resume"], ["srcore", "train"])
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "done: resume at iteration 6" in second.stdout
    assert "resuming run resume" in second.stderr and "iterations: 4 -> 6" in second.stderr
    assert rank_dumps(dump, "resume", 2)[0]["segments"] == [0, 4]
    assert (tmp_path / "g.safetensors").is_file()
    # the workers and the job process held store credentials: nothing printed or written carries them
    printed = output + second.stdout + second.stderr
    for name, value in SECRETS.items():
        assert value not in printed, name
        assert not [p for p in tmp_path.rglob("*") if p.is_file() and value.encode() in p.read_bytes()], name


def test_gan_stage_keeps_generator_and_discriminator_in_sync(ray_cluster, tmp_path):
    cfg = load_config(base=tiny_config("gan2", tmp_path, stage="gan", iterations=3, checkpoint_every=3))
    result = run_training(cfg)
    assert result.error is None
    metrics = result.metrics
    assert metrics["iteration"] == 3
    for key in ("loss/pixel", "loss/perceptual", "loss/adversarial", "loss/d"):
        assert key in metrics and torch.isfinite(torch.tensor(metrics[key]))
    ranks = rank_dumps(ray_cluster, "gan2", 2)
    assert_same_weights(ranks, "generator")
    assert_same_weights(ranks, "discriminator")


def test_a_killed_worker_resumes_from_the_last_checkpoint(ray_cluster, tmp_path, capfd):
    """Rank 1's process is killed (SIGKILL) at iteration 3: the run restarts both workers from the checkpoint
    at iteration 2, says so, finishes all 5 iterations and exports its model."""
    marker = tmp_path / "fault.marker"
    cfg = load_config(base=tiny_config("fault", tmp_path, iterations=5, checkpoint_every=2,
                                       fault={"iteration": 3, "rank": 1, "marker": str(marker), "kill": True},
                                       run={"max_failures": 1}))
    result = run_training(cfg)
    assert result.error is None
    assert marker.is_file()  # the fault really happened
    assert result.metrics["iteration"] == 5
    state = rank_dumps(ray_cluster, "fault", 2)[0]
    assert state["iteration"] == 5 and state["segments"] == [0, 2]  # restarted from the checkpoint at 2
    printed, deadline = "", time.time() + 30
    while "[srcore] resumed fault at iteration 2" not in printed and time.time() < deadline:
        time.sleep(0.5)  # the workers' log lines reach this driver a moment later
        printed += "".join(capfd.readouterr())
    assert "[srcore] resumed fault at iteration 2" in printed, printed[-3000:]
    assert load_upscaling_model(cfg.export, None) is not None  # the finished run's model


def test_prepare_dataset_is_resumable_and_trains(ray_cluster, tmp_path):
    import json

    import numpy as np
    from PIL import Image

    from pipelines.prepare import CropSpec, prepare_dataset

    src = tmp_path / "div2k"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(100, 130), (60, 60), (48, 90)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(src / f"{i:04d}.png")
    (src / "0003.png").write_bytes(b"not a png")
    out = tmp_path / "prepared"
    spec = CropSpec(crop=48, step=24)
    first = prepare_dataset(str(src), str(out), spec, limit=2)
    assert first["image_count"] == 2 and first["crop_count"] == 4 * 5 + 2 * 2  # 100x130 and 60x60
    shards = {p.name: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    second = prepare_dataset(str(src), str(out), spec)
    assert second["skipped_existing"] == 2 and second["image_count"] == 3
    assert second["crop_count"] == 24 + 1 * 3  # 48x90: x at 0, 24, 42
    assert list(second["failed"]) == ["0003.png"] and "0003.png" in second["failed"]["0003.png"]
    assert all((out / "shards" / name).stat().st_mtime_ns == mtime for name, mtime in shards.items())
    assert json.loads((out / "manifest.json").read_text())["image_count"] == 3
    assert not list((out / "shards").glob(".*"))  # no temporaries
    with pytest.raises(ValueError, match="was prepared with crop/step/thresh"):
        prepare_dataset(str(src), str(out), CropSpec(crop=32, step=16))
    # the job: one broken file of four fails the run unless --max-failure-rate tolerates it
    job = load_job("prepare_dataset")
    flags = ["--input", str(src), "--output", str(out), "--crop", "48", "--step", "24"]
    assert job.main(flags) == 1
    assert job.main(flags + ["--max-failure-rate", "0.25"]) == 0
    assert job.main(flags + ["--max-failure-rate", "0.2"]) == 1
    assert job.main(flags + ["--max-failure-rate", "2"]) == 2
    cfg = load_config(base=tiny_config("prepared", tmp_path, workers=1, iterations=2, checkpoint_every=2,
                                       data={"train": [str(out)]}))
    result = run_training(cfg)
    assert result.error is None and result.metrics["iteration"] == 2


def test_distillation_labels_each_patch_once_and_resumes_from_its_checkpoint(ray_cluster, tmp_path, capfd):
    """A teacher (the bundled PSNR model, small enough for a test) labels 6 training and 2 held-out patches; the
    student trains 2 iterations, then a --resume to 4 continues from the checkpoint at 2 and computes no target
    again. Another teacher's targets are other keys: none of these is taken for it."""
    import json

    import numpy as np

    from pipelines.commands.train import main as train_main
    from pipelines.distill import TeacherCache, label_with_teacher
    from srcore.distill import teacher_outputs
    from srcore.weights import load_model

    cache = tmp_path / "cache"
    cfg = tiny_config("distill", tmp_path, stage="perceptual", workers=1, iterations=2,
                      data={"patch_size": 64, "degradation": "realesrgan",
                            "teacher": {"model": "srcore-compact-x4", "cache": str(cache), "patches": 6,
                                        "holdout_patches": 2, "holdout_percent": 50, "batch_size": 4,
                                        "actors": 1}},
                      loss={"perceptual": 1.0, "perceptual_layers": {"conv1_2": 1.0}}, vgg={"random_init": True})
    config = write_config(tmp_path / "distill.yaml", cfg)
    first = run_main(train_main, ["--config", str(config)], ["srcore", "train"])
    assert first.returncode == 0, first.stderr[-3000:]
    assert "teacher targets: 8 computed, 0 reused from the cache, 0 failed" in first.stderr
    stored = {p: p.stat().st_mtime_ns for p in cache.glob("*/*.npz")}
    assert len(stored) == 8 and not list(cache.glob("*/.*"))  # every target, no temporaries
    run = tmp_path / "runs" / "distill"
    pairs = json.loads((run / "teacher_pairs.json").read_text())
    assert len(pairs["train"]) == 6 and len(pairs["holdout"]) == 2
    lr, target = TeacherCache(str(cache)).read(pairs["train"][0])
    assert lr.shape == (16, 16, 3) and target.shape == (64, 64, 3)
    assert np.array_equal(target, teacher_outputs(load_model("srcore-compact-x4"), lr[None])[0])
    holdout = json.loads((run / "holdout.json").read_text())
    assert [h["iteration"] for h in holdout["history"]] == [2] and holdout["best_model"] == "net_g_2.safetensors"
    assert holdout["history"][0]["psnr_teacher"] > 10

    capfd.readouterr()
    second = run_main(train_main, ["--config", str(config), "--resume", "iterations=4"], ["srcore", "train"])
    assert second.returncode == 0, second.stderr[-3000:]
    assert "teacher targets: 0 computed, 8 reused from the cache, 0 failed" in second.stderr
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*/*.npz")} == stored  # nothing computed or rewritten
    state = rank_dumps(ray_cluster, "distill", 1)[0]
    assert state["iteration"] == 4 and state["segments"] == [0, 2]  # resumed at the checkpoint's iteration
    holdout = json.loads((run / "holdout.json").read_text())
    assert [h["iteration"] for h in holdout["history"]] == [2, 4]
    assert "done: distill at iteration 4" in second.stdout

    teacher = {**cfg["data"]["teacher"], "model": "srcore-compact-x4-gan"}
    other = load_config(base={**cfg, "name": "distill-other", "data": {**cfg["data"], "teacher": teacher}})
    lines: list[str] = []
    again = label_with_teacher(prepare_run_quietly(other), print_fn=lines.append)
    assert again["computed"] == 8 and again["reused"] == 0, lines
    assert len(list(cache.glob("*/*.npz"))) == 16


def prepare_run_quietly(cfg):
    from pipelines.train import prepare_run

    return prepare_run(cfg, "auto")[0]
