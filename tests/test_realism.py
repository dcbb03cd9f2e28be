"""The fidelity-realism knob: network interpolation of the bundled GAN model and its PSNR partner."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from command_helpers import srcore_cli
from PIL import Image

from srcore.provenance import read_provenance
from srcore.weights import load_model, load_upscaling_model


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_realism_0_and_1_are_the_two_models_exactly_and_between_is_neither():
    psnr, gan = load_model("srcore-compact-x4"), load_model("srcore-compact-x4-gan")
    assert not same_weights(psnr, gan)
    for name in ("srcore-compact-x4-gan", "srcore-compact-x4"):  # either name of the pair
        zero, zero_id = load_upscaling_model(name, 0.0)
        one, one_id = load_upscaling_model(name, 1.0)
        assert same_weights(zero, psnr) and same_weights(one, gan)
        assert (zero_id, one_id) == ("srcore-compact-x4-gan@realism=0", "srcore-compact-x4-gan@realism=1")
    half, half_id = load_upscaling_model("srcore-compact-x4-gan", 0.5)
    assert half_id == "srcore-compact-x4-gan@realism=0.5"
    key = next(iter(half.state_dict()))
    torch.testing.assert_close(half.state_dict()[key], (psnr.state_dict()[key] + gan.state_dict()[key]) / 2)
    with pytest.raises(ValueError, match="realism must be in 0..1"):
        load_upscaling_model("srcore-compact-x4-gan", 1.5)
    with pytest.raises(ValueError, match="realesr-animevideov3 has no GAN / PSNR pair.*srcore-compact-x4-gan"):
        load_upscaling_model("realesr-animevideov3", 0.5)


def test_the_cli_knob_reproduces_each_model_and_records_the_blend(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "in.png"
    Image.fromarray(np.kron(rng.integers(0, 256, (6, 8, 3), np.uint8), np.ones((4, 4, 1), np.uint8))).save(src)
    runs = {"psnr": ["--model", "srcore-compact-x4"], "gan": ["--model", "srcore-compact-x4-gan"],
            "r0": ["--realism", "0"], "r1": ["--realism", "1"], "r05": ["--realism", "0.5"], "default": []}
    pixels, provenance = {}, {}
    for name, flags in runs.items():
        out = tmp_path / name
        result = srcore_cli("upscale", str(src), "-o", str(out), "--runtime", "torch", *flags)
        assert result.returncode == 0, result.stderr
        data = (out / "in.png").read_bytes()
        pixels[name], provenance[name] = np.asarray(Image.open(out / "in.png")), read_provenance(data)["model"]
    assert np.array_equal(pixels["r0"], pixels["psnr"]) and np.array_equal(pixels["r1"], pixels["gan"])
    assert not np.array_equal(pixels["r05"], pixels["psnr"]) and not np.array_equal(pixels["r05"], pixels["gan"])
    assert provenance["r05"] == "srcore-compact-x4-gan@realism=0.5" and provenance["psnr"] == "srcore-compact-x4"
    # no flags: the default is the bundled pair half way
    assert provenance["default"] == provenance["r05"] and np.array_equal(pixels["default"], pixels["r05"])
    bad = srcore_cli("upscale", str(src), "-o", str(tmp_path / "bad"), "--realism", "2")
    assert bad.returncode == 2 and "realism must be in 0..1, got 2" in bad.stderr and not (tmp_path / "bad").exists()
