"""Cross-check against spandrel, an independent implementation of the same official architectures.

Our state dicts (random weights, official key layout) must load into spandrel's models and give the same
outputs: this checks key names, shapes and forward passes of architectures we have no official file for here.
"""

from __future__ import annotations

import pytest
import torch

import srcore
from srcore.archs.registry import get_variant
from srcore.archs.swinir import shifted_window_mask
from srcore.zoo import weights_path

spandrel = pytest.importorskip("spandrel", reason="spandrel (the 'dev' or 'spandrel' extra) is not installed")

CASES = {
    "realesrgan-x4plus": dict(num_feat=16, num_block=2),  # spandrel assumes growth 32
    "realesrgan-x2plus": dict(num_feat=16, num_block=2),  # spandrel assumes growth 32
    "realesr-general-x4v3": dict(num_feat=16, num_conv=4),
    "swinir-m-x2": dict(embed_dim=24, depths=[2, 2], num_heads=[2, 2], window_size=8),
    "swinir-s-x3": dict(embed_dim=24, depths=[2], num_heads=[3], window_size=8),
    "swinir-realworld-m-x4": dict(embed_dim=24, depths=[2], num_heads=[2], window_size=8),
    "swinir-realworld-l-x4": dict(embed_dim=32, depths=[2, 2], num_heads=[2, 2], window_size=8,
                                  resi_connection="3conv"),
}


def official_layout(model: torch.nn.Module, img_size: int = 64) -> dict[str, torch.Tensor]:
    """Our state dict plus the shifted-window masks that official SwinIR checkpoints store for their img_size."""
    sd = dict(model.state_dict())
    if model.arch_name == "swinir":
        ws = model.window_size
        for name, module in model.named_modules():
            if getattr(module, "shift_size", 0):
                sd[f"{name}.attn_mask"] = shifted_window_mask(img_size, img_size, ws, ws // 2, torch.device("cpu"))
    return sd


@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_match_spandrel(name, tmp_path):
    torch.manual_seed(0)
    ours = srcore.create_model(name, **CASES[name]).eval()
    official = official_layout(ours)
    theirs = spandrel.ModelLoader().load_from_state_dict(official)
    assert theirs.scale == ours.descriptor.scale
    # the same official-layout file loads back into srcore (masks dropped: they are derived)
    torch.save({"params": official}, tmp_path / "official.pth")
    reloaded = srcore.load_model(tmp_path / "official.pth")
    x = torch.rand(1, 3, 24, 16)  # a multiple of 8 and 2: spandrel's own padding does not come into it
    with torch.inference_mode():
        expected = theirs.model.eval()(x)  # the raw network: the descriptor's call clamps to [0, 1]
        torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(reloaded(x), expected, rtol=1e-5, atol=1e-5)


def test_unknown_layouts_are_handed_to_spandrel(tmp_path):
    """The original ESRGAN release's key layout (model.1.sub.0.RDB1...) is not srcore's: spandrel loads it."""
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    original = ESRGAN(in_nc=3, out_nc=3, num_filters=16, num_blocks=1, scale=4).eval()
    torch.save(original.state_dict(), tmp_path / "RRDB_ESRGAN_x4.pth")
    model = srcore.load_model(tmp_path / "RRDB_ESRGAN_x4.pth")
    assert model.arch_name == "spandrel" and model.descriptor.scale == 4
    x = torch.rand(1, 3, 20, 16)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), original(x))
    out = srcore.Upscaler(model, tile=None).upscale_network_input((x[0].permute(1, 2, 0).numpy() * 255).astype("uint8"))
    assert out.shape == (80, 64, 3)


SMALL = {"rrdbnet": dict(num_block=1), "srresnet": dict(num_block=2),
         "swinir": dict(embed_dim=24, depths=[2], num_heads=[2], window_size=8)}


def test_spandrel_runs_srcore_model_files_exactly_or_refuses_them(tmp_path):
    """chaiNNer and ComfyUI load models through spandrel: a file srcore saved must never run there as another
    network (the bundled models' bicubic skip read as Compact's nearest skip gave blocky output)."""
    loaded, refused = [], []
    for name in srcore.list_models("generator"):
        variant = get_variant(name)
        torch.manual_seed(0)
        model = srcore.create_model(name, **SMALL.get(variant.arch, {})).eval()
        path = srcore.save_model(model, tmp_path / f"{name}.safetensors")
        try:
            theirs = spandrel.ModelLoader().load_from_file(str(path))
        except Exception:  # refused: UnsupportedModelError, or a state dict that fits none of its networks
            refused.append(name)
            continue
        x = torch.rand(1, model.descriptor.in_channels, 24, 24)
        with torch.no_grad():
            assert torch.allclose(theirs.model.eval()(x), model(x), atol=1e-5), name
        assert theirs.scale == model.descriptor.scale
        loaded.append(name)
    assert {"realesrgan-x4plus", "realesr-animevideov3"} <= set(loaded)
    assert {"srcore-compact-x4", "srcore-compact-x4-gan"} <= set(refused)
    for name in ("srcore-compact-x4", "srcore-compact-x4-gan"):  # the shipped files themselves
        with pytest.raises(spandrel.UnsupportedModelError):
            spandrel.ModelLoader().load_from_file(str(weights_path(get_variant(name))))
        assert srcore.load_model(name).skip == "bicubic"  # srcore still reads them
