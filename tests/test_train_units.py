"""Training pieces without Ray: configs, data sampling, the step, exact resume, export."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import srcore
from srcore.train.config import ConfigError, load_config
from srcore.train.data import crop_positions, extract_subimages, sample_patches
from srcore.train.loop import SRTrainer

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(stage: str = "psnr", **extra) -> dict:
    cfg = {"name": "t", "stage": stage, "iterations": 20, "data": {"train": ["x"], "patch_size": 32, "batch_size": 2},
           "generator": {"name": "realesr-animevideov3", "kwargs": {"num_feat": 8, "num_conv": 2}},
           "optim": {"lr_g": 1e-3}}
    if stage == "gan":
        cfg.update(loss={"perceptual": 1.0, "adversarial": 0.1, "relativistic": True},
                   vgg={"random_init": True},
                   discriminator={"name": "unet-discriminator-sn", "kwargs": {"num_feat": 8}})
    if stage == "perceptual":
        cfg.update(loss={"perceptual": 1.0, "perceptual_layers": {"conv1_2": 1.0}}, vgg={"random_init": True})
    cfg.update(extra)
    return cfg


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.name and cfg.iterations > 0 and srcore.describe(cfg.generator.name)


def test_config_errors_name_the_key(tmp_path):
    cases = [
        ({"name": "x", "data": {"train": ["a"], "patchsize": 3}}, "unknown key 'data.patchsize'"),
        ({"name": "x", "data": {"train": ["a"]}, "optim": {"lr_g": "fast"}}, "optim.lr_g: expected float"),
        ({"name": "x", "data": {"train": ["a"], "patch_size": 30}}, "data.patch_size (30) must be a multiple"),
        ({"name": "x", "data": {"train": []}}, "data.train"),
        ({"name": "x", "data": {"train": ["a"]}, "stage": "warm"}, "stage must be one of"),
        ({"data": {"train": ["a"]}}, "missing key 'name'"),
        ({"name": "x", "data": {"train": ["a"], "teacher": {"model": "m"}}},
         "data.teacher: distillation degrades with data.degradations"),
        ({"name": "x", "data": {"train": ["a"], "degradation": "realesrgan", "teacher": {"model": "m", "patches": 0}}},
         "data.teacher.patches must be a positive number"),
        ({"name": "x", "data": {"train": ["a"], "degradation": "realesrgan",
                                "teacher": {"model": "m", "holdout_percent": 100}}},
         "data.teacher.holdout_percent must be in [0, 100)"),
        ({"name": "x", "data": {"train": ["a"], "degradation": "realesrgan", "usm_sharpen": True,
                                "teacher": {"model": "m"}}}, "data.usm_sharpen and data.pair_pool do not apply"),
    ]
    for data, message in cases:
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(base=data)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: {train: [a]}\nrun: {num_workers: 0}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: run.num_workers must be a positive number"):
        load_config(bad)
    cfg = load_config(base={"name": "x", "data": {"train": ["a"]}}, overrides=["optim.lr_g=1e-4", "run.num_workers=3"])
    assert cfg.optim.lr_g == 1e-4 and cfg.run.num_workers == 3
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(base={"name": "x", "data": {"train": ["a"]}}, overrides=["lr"])


def test_subimages_follow_basicsr():
    assert crop_positions(1000, 480, 240) == [0, 240, 480, 520]
    assert crop_positions(960, 480, 240) == [0, 240, 480]
    assert crop_positions(300, 480, 240) == [0]
    image = np.zeros((1000, 700, 3), np.uint8)
    crops = extract_subimages(image, 480, 240)
    assert len(crops) == 4 * 2 and all(c.shape == (480, 480, 3) for _, _, c in crops)


def test_patches_are_augmented_crops_of_their_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 40, 3), np.uint8)
    patches = sample_patches([image, image[:20, :20]], 24, 3, rng)
    assert patches.shape == (6, 24, 24, 3) and patches.dtype == np.uint8
    variants = [image, image[:, ::-1], image[::-1], image[::-1, ::-1]]
    variants += [v.transpose(1, 0, 2) for v in variants]

    def found(p):
        for v in variants:
            for y in range(v.shape[0] - 23):
                for x in range(v.shape[1] - 23):
                    if np.array_equal(v[y : y + 24, x : x + 24], p):
                        return True
        return False

    assert all(found(p) for p in patches[:3])


@pytest.mark.parametrize("stage", ["psnr", "perceptual", "gan"])
def test_steps_lower_the_loss_and_resume_exactly(stage, tmp_path):
    cfg = load_config(base=tiny_config(stage))
    rng = np.random.default_rng(0)
    hr = np.repeat(np.repeat(rng.integers(0, 256, (2, 8, 8, 3), np.uint8), 4, axis=1), 4, axis=2)
    trainer = SRTrainer(cfg, torch.device("cpu"))
    first = trainer.step(hr)
    for _ in range(8):
        terms = trainer.step(hr)
    assert all(torch.isfinite(v) for v in terms.values())
    assert terms["loss/pixel"] < first["loss/pixel"]
    trainer.save(tmp_path / "state.pt")
    resumed = SRTrainer(cfg, torch.device("cpu"))
    resumed.load(tmp_path / "state.pt")
    assert resumed.iteration == 9 and resumed.segments == [0, 9]
    a, b = trainer.step(hr), resumed.step(hr)  # same RNG, weights, optimizer state: the same next step
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    exported = trainer.export(tmp_path / "g.safetensors")
    model = srcore.load_model(exported)
    assert model.descriptor.scale == 4
    torch.testing.assert_close(model.state_dict()["body.0.weight"], trainer.ema_model.state_dict()["body.0.weight"])


def test_generator_scale_must_match_data_scale():
    with pytest.raises(ValueError, match="is x4, but data.scale is 2"):
        SRTrainer(load_config(base=tiny_config(data={"train": ["x"], "scale": 2, "patch_size": 32})),
                  torch.device("cpu"))


def test_degradation_settings_come_from_the_config_and_reach_the_pairs():
    base = tiny_config(data={"train": ["x"], "patch_size": 32, "batch_size": 2, "degradation": "realesrgan"})
    mild = load_config(base=base, overrides=["data.degradations={noise_range: [1, 2], noise_range2: [1, 2], "
                                             "gaussian_noise_prob: 1, gaussian_noise_prob2: 1, "
                                             "jpeg_range: [94, 95], jpeg_range2: [94, 95], second_blur_prob: 0}"])
    assert mild.data.degradations.jpeg_range == (94.0, 95.0) and mild.data.degradations.second_blur_prob == 0
    strong = load_config(base=base, overrides=["data.degradations={noise_range: [40, 50], noise_range2: [40, 50], "
                                               "gaussian_noise_prob: 1, gaussian_noise_prob2: 1}"])
    hr = np.full((2, 32, 32, 3), 128, np.uint8)
    spread = {}
    for name, cfg in (("mild", mild), ("strong", strong)):
        lr, _ = SRTrainer(cfg, torch.device("cpu")).make_pair(hr)
        spread[name] = lr.std().item()
    assert spread["strong"] > 3 * spread["mild"]  # the noise setting changed the LR images
    with pytest.raises(ConfigError, match="data.degradations.blur1"):
        load_config(base=base, overrides=["data.degradations={blur1: {sigma_range: [3, 1]}}"])
    with pytest.raises(ConfigError, match="data.degradations: unknown key|unknown key 'data.degradations.jpeg'"):
        load_config(base=base, overrides=["data.degradations={jpeg: 3}"])


def test_the_pair_pool_mixes_batches_after_it_fills():
    from srcore.train.pool import PairPool

    pool = PairPool(8, seed=0)
    batches = [torch.full((2, 1, 1, 1), float(i)) for i in range(12)]
    out = [pool.exchange(b, b.clone())[0] for b in batches]
    assert all(torch.equal(o, b) for o, b in zip(out[:4], batches[:4], strict=True))  # filling: passed through
    later = torch.cat(out[4:]).flatten().tolist()
    assert any(len({v for v in o.flatten().tolist()}) > 1 for o in out[4:])  # a batch mixes sources
    assert set(later) <= set(range(12)) and max(later) > 3 and min(later) < 4
    with pytest.raises(ValueError, match="multiple of the batch size"):
        pool.exchange(torch.zeros(3, 1, 1, 1), torch.zeros(3, 1, 1, 1))
    with pytest.raises(ConfigError, match="data.pair_pool"):
        load_config(base=tiny_config(data={"train": ["x"], "patch_size": 32, "batch_size": 4, "pair_pool": 6}))


def test_discriminator_warm_up_leaves_the_generator_alone():
    cfg = load_config(base=tiny_config("gan", d_warmup=3))
    trainer = SRTrainer(cfg, torch.device("cpu"))
    hr = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), np.uint8)
    g0 = {k: v.clone() for k, v in trainer.g_module.state_dict().items()}
    d0 = {k: v.clone() for k, v in trainer.d_module.state_dict().items()}
    for _ in range(3):
        terms = trainer.step(hr)
        assert "loss/g_total" not in terms and "loss/d" in terms
    assert all(torch.equal(v, trainer.g_module.state_dict()[k]) for k, v in g0.items())
    assert any(not torch.equal(v, trainer.d_module.state_dict()[k]) for k, v in d0.items())
    assert "loss/g_total" in trainer.step(hr)
    assert any(not torch.equal(v, trainer.g_module.state_dict()[k]) for k, v in g0.items())
    with pytest.raises(ConfigError, match="d_warmup"):
        load_config(base=tiny_config("gan", d_warmup=20))


def test_distillation_pairs_train_the_student_towards_the_teacher():
    """A distillation batch is taken as it is (no degradation): the student's loss against the targets falls,
    and its held-out PSNR against them rises."""
    cfg = load_config(base=tiny_config("perceptual", data={"train": ["x"], "patch_size": 32, "batch_size": 2,
                                                           "degradation": "realesrgan", "teacher": {"model": "m"}},
                                       ema_decay=0.0))  # the held-out score follows the weights
    rng = np.random.default_rng(0)
    lr = np.repeat(np.repeat(rng.integers(0, 256, (2, 4, 4, 3), np.uint8), 2, axis=1), 2, axis=2)
    target = np.repeat(np.repeat(lr, 4, axis=1), 4, axis=2)  # a teacher that upscales by nearest neighbour
    trainer = SRTrainer(cfg, torch.device("cpu"))
    before = trainer.validate_pairs(lr, target)
    first = trainer.step({"lr": lr, "target": target})
    for _ in range(20):
        terms = trainer.step({"lr": lr, "target": target})
    assert terms["loss/g_total"] < first["loss/g_total"] and "loss/perceptual" in terms
    after = trainer.validate_pairs(lr, target)
    assert after["val/holdout/psnr_teacher"] > before["val/holdout/psnr_teacher"] + 1
    assert after["val/holdout/l1"] < before["val/holdout/l1"]


def test_the_held_out_split_is_by_name_disjoint_and_stable():
    from srcore.distill import holds_out, plan_patches

    names = [f"img{i:03d}.png" for i in range(200)]
    here = [(n, f"/data/T91/{n}") for n in names]
    there = [(n, f"s3://bucket/t91/{n}") for n in reversed(names)]
    plan = plan_patches(here, 300, 40, holdout_percent=10)
    held = {s.location for s in plan if s.split == "holdout"}
    trained = {s.location for s in plan if s.split == "train"}
    assert held and trained and not held & trained
    assert 10 <= len({n for n in names if holds_out(n, 10)}) <= 30
    elsewhere = plan_patches(there, 300, 40, holdout_percent=10)  # another place, another listing order
    assert [(s.location.rsplit("/", 1)[1], s.seed, s.split) for s in elsewhere] == \
        [(s.location.rsplit("/", 1)[1], s.seed, s.split) for s in plan]
    with pytest.raises(ValueError, match="no image of 1 is held out"):
        plan_patches([("a.png", "a.png")], 4, 2, holdout_percent=0.01)


def test_the_gan_stage_takes_distillation_pairs_with_the_teachers_outputs_as_real():
    cfg = load_config(base=tiny_config("gan", data={"train": ["x"], "patch_size": 32, "batch_size": 2,
                                                    "degradation": "realesrgan", "teacher": {"model": "m"}}))
    rng = np.random.default_rng(1)
    lr = rng.integers(0, 256, (2, 8, 8, 3), np.uint8)
    target = np.repeat(np.repeat(lr, 4, axis=1), 4, axis=2)
    trainer = SRTrainer(cfg, torch.device("cpu"))
    terms = trainer.step({"lr": lr, "target": target})
    assert {"loss/adversarial", "loss/d", "loss/perceptual"} <= set(terms)
    assert all(torch.isfinite(v) for v in terms.values()) and trainer.iteration == 1
