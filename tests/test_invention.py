"""The invention map (srcore.invention): near zero for bicubic, zero on flat images, and larger for the GAN
model than for the PSNR model on the same real inputs; and `srcore upscale --invention-map` writes it."""

from __future__ import annotations

import numpy as np
import pytest
from command_helpers import srcore_cli
from conftest import shared_path
from PIL import Image

from srcore.inference import Upscaler
from srcore.invention import INVENTION_THRESHOLD, invention_map
from srcore.resize import imresize_np
from srcore.weights import load_upscaling_model


def real_crops(count: int = 3, size: int = 80) -> list[np.ndarray]:
    """Crops of RealWorld's real low-quality inputs (evaluation data: scored here, never trained on)."""
    folder = shared_path("datasets/RealWorld")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg"))[:count]
    return [np.asarray(Image.open(p).convert("RGB"))[:size, :size] for p in paths]


def test_flat_and_bicubic_outputs_invent_nothing():
    flat = invention_map(np.full((64, 48, 3), 137, np.uint8), 4)
    assert flat.share == 0 and flat.magnitude.max() < 1e-6
    for crop in real_crops():
        bicubic = invention_map(imresize_np(crop, 4), 4)
        assert bicubic.magnitude.shape == (crop.shape[0] * 4, crop.shape[1] * 4)
        assert bicubic.share < 0.005 and bicubic.magnitude.mean() < 0.5, (bicubic.share, bicubic.magnitude.mean())
    with pytest.raises(ValueError, match="scale must be > 1"):
        invention_map(flat.image()[..., None], 1)


def test_the_gan_model_invents_more_than_the_psnr_model_on_the_same_inputs():
    psnr = Upscaler(load_upscaling_model(None, 0.0)[0], tile=None)
    gan = Upscaler(load_upscaling_model(None, 1.0)[0], tile=None)
    for crop in real_crops():
        made = {name: invention_map(up.upscale_image(crop), 4) for name, up in (("psnr", psnr), ("gan", gan))}
        made["bicubic"] = invention_map(imresize_np(crop, 4), 4)
        means = {k: v.magnitude.mean() for k, v in made.items()}
        assert means["gan"] > means["psnr"] > means["bicubic"], means
        assert made["gan"].share >= made["psnr"].share


def test_upscale_writes_each_outputs_map_beside_it_and_a_rerun_does_not_take_maps_for_inputs(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, crop in enumerate(real_crops(2, size=40)):
        Image.fromarray(crop).save(photos / f"p{i}.png")
    result = srcore_cli("upscale", str(photos), "-o", str(photos), "--suffix", "_x4", "--invention-map",
                        "--realism", "1")
    assert result.returncode == 0, result.stderr
    maps = sorted(p.name for p in photos.glob("*.invention.png"))
    assert maps == ["p0_x4.invention.png", "p1_x4.invention.png"]
    sidecar = Image.open(photos / maps[0])
    assert sidecar.mode == "L" and sidecar.size == (160, 160) and np.asarray(sidecar).max() > 0
    assert f"invented detail (over {INVENTION_THRESHOLD:g} levels" in result.stdout and "2 maps" in result.stdout
    again = srcore_cli("upscale", str(photos), "-o", str(photos), "--suffix", "_x4", "--invention-map",
                       "--realism", "1")
    assert "0 of 2 inputs upscaled, 2 already done" in again.stdout, again.stdout


def test_the_rows_figure_is_bounded_in_cost_and_agrees_with_the_whole_map():
    """Outputs over the bound are mapped on a grid of crops: the share still agrees with the whole map's, and
    the figure is the same for pixels as an array or a tensor (a GPU worker's outputs stay on its device)."""
    import torch

    from srcore.invention import invention_share

    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (384, 384, 3), np.uint8)
    made = np.clip(imresize_np(lr, 4), 0, 255).astype(np.uint8)  # nothing invented ...
    made[:, :768] = np.kron(lr[:, :192], np.ones((4, 4, 1), np.uint8))  # ... but in the left half: blocks
    whole = invention_map(made, 4).share
    assert 0.4 < whole < 0.55, whole
    sampled = invention_share(made, 4, max_pixels=1 << 20)  # 2 x 2 crops of 512 of the 2.4 MP
    assert abs(sampled - whole) < 0.05, (sampled, whole)
    assert invention_share(torch.from_numpy(made), 4, max_pixels=1 << 20) == pytest.approx(sampled)
