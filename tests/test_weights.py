"""Weight I/O: official checkpoints reproduce the official outputs; bad files fail naming file and key."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import shared_path
from PIL import Image

import srcore
from srcore.archs.architecture import detect_architecture
from srcore.model_errors import WeightsError
from srcore.weights import read_state_dict

OFFICIAL = [
    # (weights file, fixture output, expected architecture and hyper-parameters)
    ("weights/RealESRGAN_x4plus.pth", "fixtures/realesrgan-x4plus_lincoln_crop_out.npy",
     "rrdbnet", dict(scale=4, num_block=23, num_feat=64, num_grow_ch=32)),
    ("weights/realesr-animevideov3.pth", "fixtures/realesr-animevideov3-x4_lincoln_crop_out.npy",
     "srvgg", dict(upscale=4, num_conv=16, num_feat=64, act_type="prelu")),
]


def fixture_input() -> torch.Tensor:
    image = np.asarray(Image.open(shared_path("fixtures/lincoln_crop_64x48.png")).convert("RGB"), np.float32)
    return torch.from_numpy(image / 255.0).permute(2, 0, 1).unsqueeze(0)


@pytest.mark.parametrize("weights, expected, arch, hparams", OFFICIAL)
def test_official_weights_reproduce_official_outputs(weights, expected, arch, hparams):
    path = shared_path(weights)
    model = srcore.load_model(path)
    assert model.arch_name == arch
    assert {k: model.hparams[k] for k in hparams} == hparams
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp16-stored convs were cast
    with torch.inference_mode():
        out = model(fixture_input())[0].numpy()
    reference = np.load(shared_path(expected))
    assert out.shape == reference.shape == (3, 192, 256)
    assert np.abs(out - reference).max() <= 1e-4


def test_official_file_is_read_from_params_ema_with_fp16_convs():
    sd, info = read_state_dict(shared_path("weights/RealESRGAN_x4plus.pth"))
    assert info is None and sd["conv_first.weight"].dtype == torch.float16
    assert detect_architecture(sd)[0] == "rrdbnet"


def test_truncated_pth_names_the_file(tmp_path):
    data = shared_path("weights/realesr-animevideov3.pth").read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"truncated\.pth.*truncated or corrupt"):
        srcore.load_model(bad)


def test_renamed_key_names_the_file_and_both_keys(tmp_path):
    sd, _ = read_state_dict(shared_path("weights/realesr-animevideov3.pth"))
    sd["body.4.weights"] = sd.pop("body.4.weight")
    bad = tmp_path / "renamed.pth"
    torch.save({"params": sd}, bad)
    with pytest.raises(WeightsError) as err:
        srcore.load_model(bad)
    message = str(err.value)
    assert "renamed.pth" in message
    assert "missing keys: body.4.weight" in message
    assert "unexpected keys: body.4.weights" in message


def test_empty_and_foreign_files_fail_clearly(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.touch()
    with pytest.raises(WeightsError, match=r"empty\.pth.*0 bytes"):
        srcore.load_model(empty)
    foreign = tmp_path / "foreign.pth"
    torch.save({"encoder.weight": torch.zeros(2, 2)}, foreign)
    with pytest.raises(WeightsError, match=r"foreign\.pth.*cannot recognise.*encoder\.weight"):
        srcore.load_model(foreign)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match=r"garbage\.safetensors"):
        srcore.load_model(garbage)


def test_pickled_code_is_never_run(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle code ran')",))

    evil = tmp_path / "evil.pth"
    torch.save({"params": Boom()}, evil)
    with pytest.raises(WeightsError, match=r"evil\.pth"):
        srcore.load_model(evil)


def test_shape_mismatch_names_the_key(tmp_path):
    model = srcore.create_model("realesr-animevideov3", num_feat=8, num_conv=2)
    sd = model.state_dict()
    sd["body.2.weight"] = torch.zeros(8, 8, 5, 5)
    path = tmp_path / "shape.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError, match=r"shape\.pth.*body\.2\.weight"):
        srcore.load_model(path, arch="srvgg", num_feat=8, num_conv=2)


SMALL = {
    "srcnn-9-5-5": dict(scale=3),
    "srcnn-9-5-5-rgb": dict(scale=3),
    "srresnet-x4": dict(num_feat=8, num_block=2),
    "srresnet-nobn-x4": dict(num_feat=8, num_block=2, scale=3),
    "realesrgan-x4plus": dict(num_feat=8, num_block=2, num_grow_ch=4),
    "realesrgan-x2plus": dict(num_feat=8, num_block=2, num_grow_ch=4),
    "realesr-general-x4v3": dict(num_feat=8, num_conv=3),
    "swinir-m-x3": dict(embed_dim=12, depths=[2, 2], num_heads=[2, 2], window_size=4),
    "swinir-s-x4": dict(embed_dim=12, depths=[2], num_heads=[3], window_size=4),
    "swinir-realworld-m-x4": dict(embed_dim=12, depths=[2], num_heads=[2], window_size=4),
    "swinir-realworld-l-x4": dict(embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=4),
    "unet-discriminator-sn": dict(num_feat=8),
    "vgg256-discriminator": dict(num_feat=4),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_architecture_is_detected_from_an_official_layout_pth(name, tmp_path):
    model = srcore.create_model(name, **SMALL[name]).eval()
    path = tmp_path / "model.pth"
    torch.save({"params_ema": model.state_dict()}, path)
    loaded = srcore.load_model(path, **({"scale": 3} if model.arch_name == "srcnn" else {}))
    assert loaded.arch_name == model.arch_name
    assert loaded.hparams == model.hparams
    size = loaded.descriptor.min_size if loaded.descriptor.kind == "discriminator" else 16
    x = torch.rand(1, loaded.descriptor.in_channels, max(size, 16), max(size, 16))
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x))


def test_safetensors_round_trip_keeps_descriptor_and_outputs(tmp_path):
    model = srcore.create_model("realesrgan-x2plus", num_feat=8, num_block=1, num_grow_ch=4).eval()
    path = srcore.save_model(model, tmp_path / "out" / "tiny.safetensors", name="tiny-x2")
    assert [p.name for p in path.parent.iterdir()] == ["tiny.safetensors"]  # no temporary left behind
    _, info = read_state_dict(path)
    assert info["name"] == "tiny-x2" and info["descriptor"]["size_multiple"] == 2
    loaded = srcore.load_model(path)
    assert loaded.descriptor == model.descriptor
    x = torch.rand(1, 3, 8, 8)
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))


def test_load_model_dtype_and_registered_name_without_weights(tmp_path):
    model = srcore.create_model("realesr-animevideov3", num_feat=8, num_conv=1)
    path = tmp_path / "m.pth"
    torch.save(model.state_dict(), path)
    assert next(srcore.load_model(path, dtype=torch.bfloat16).parameters()).dtype == torch.bfloat16
    with pytest.raises(WeightsError, match="realesr-animevideov3: weights not found at .*download https://"):
        srcore.load_model("realesr-animevideov3")
    with pytest.raises(WeightsError, match="srresnet-x4: no published weights"):
        srcore.load_model("srresnet-x4")
