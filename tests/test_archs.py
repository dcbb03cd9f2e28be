"""Architectures: published parameter counts, output shapes at every supported scale, registry descriptors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import srcore
from srcore.archs import SRCNN, RRDBNet, SRResNet, SRVGGNetCompact, SwinIR, UNetDiscriminatorSN, VGGStyleDiscriminator
from srcore.archs.architecture import ARCHITECTURES
from srcore.archs.common import count_parameters
from srcore.archs.registry import ModelVariant


def meta_param_count(name: str, **overrides) -> int:
    with torch.device("meta"):
        return count_parameters(srcore.create_model(name, **overrides))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("srcnn-9-5-5", 57_281),
        ("realesrgan-x4plus", 16_697_987),
        ("realesr-animevideov3", 621_424),
        ("realesr-general-x4v3", 1_213_296),
        ("unet-discriminator-sn", 4_376_897),
    ],
)
def test_published_parameter_counts(name, expected):
    assert meta_param_count(name) == expected


@pytest.mark.parametrize(
    "name, published",
    [
        # SwinIR paper, Tables 2 and 3, rounded to 1K there; the paper leaves out the relative position
        # bias tables ((2*8-1)^2 x heads per block), which are learnable parameters in the released models.
        ("swinir-s-x2", 878_000),
        ("swinir-s-x3", 886_000),
        ("swinir-s-x4", 897_000),
        ("swinir-m-x4", 11_852_000),
    ],
)
def test_swinir_parameter_counts_match_paper(name, published):
    with torch.device("meta"):
        model = srcore.create_model(name)
    tables = sum(p.numel() for n, p in model.named_parameters() if n.endswith("relative_position_bias_table"))
    assert abs(count_parameters(model) - tables - published) <= 500
    if name == "swinir-m-x4":
        assert count_parameters(model) == 11_900_199  # "11.9M" in the paper's classical SR table


def test_srcnn_rgb_and_srresnet_counts():
    # 3-channel SRCNN: 9x9x3x64+64 + 5x5x64x32+32 + 5x5x32x3+3
    assert count_parameters(SRCNN(num_channels=3)) == 15_616 + 51_232 + 2_403
    # BatchNorm-free SRResNet drops 2 BN per block + 1 (128 params each) and gains conv biases (64 each)
    with_bn = count_parameters(SRResNet(num_block=16, use_bn=True))
    without_bn = count_parameters(SRResNet(num_block=16, use_bn=False))
    assert with_bn - without_bn == 33 * 128 - 33 * 64


def run(model: torch.nn.Module, c: int, h: int, w: int) -> torch.Size:
    with torch.inference_mode():
        return model.eval()(torch.rand(2, c, h, w)).shape


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("channels", [1, 3])
def test_srcnn_shapes(scale, channels):
    model = SRCNN(num_channels=channels, scale=scale)
    assert run(model, channels, 11, 7) == (2, channels, 11 * scale, 7 * scale)
    assert model.descriptor.scale == scale


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize("use_bn", [True, False])
def test_srresnet_shapes_at_every_scale(scale, use_bn):
    model = SRResNet(num_feat=8, num_block=2, scale=scale, use_bn=use_bn)
    assert run(model, 3, 9, 6) == (2, 3, 9 * scale, 6 * scale)


def test_srresnet_rejects_unsupported_scale():
    with pytest.raises(ValueError, match="unsupported scale 5"):
        SRResNet(scale=5)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_rrdbnet_shapes_at_every_scale(scale):
    model = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=scale)
    assert run(model, 3, 12, 8) == (2, 3, 12 * scale, 8 * scale)
    assert model.descriptor.size_multiple == {4: 1, 2: 2, 1: 4}[scale]


def test_rrdbnet_names_the_size_requirement():
    with pytest.raises(ValueError, match="multiples of 2"):
        run(RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=2), 3, 7, 8)


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("act", ["prelu", "relu", "leakyrelu"])
def test_srvgg_shapes(scale, act):
    model = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=scale, act_type=act)
    assert run(model, 3, 10, 7) == (2, 3, 10 * scale, 7 * scale)


TINY_SWINIR = dict(embed_dim=12, depths=[2, 2], num_heads=[2, 3], window_size=4)


@pytest.mark.parametrize(
    "upsampler, scale",
    [("pixelshuffle", s) for s in (2, 3, 4, 8)]
    + [("pixelshuffledirect", s) for s in (2, 3, 4)]
    + [("nearest+conv", s) for s in (2, 4)]
    + [("", 1)],
)
def test_swinir_shapes_with_padding(upsampler, scale):
    model = SwinIR(upscale=scale, upsampler=upsampler, **TINY_SWINIR)
    # 13x10 is not a multiple of the window: the network pads and crops back
    assert run(model, 3, 13, 10) == (2, 3, 13 * scale, 10 * scale)
    assert model.descriptor.scale == scale and model.descriptor.size_multiple == 4


def test_swinir_pads_by_reflection_and_crops_back():
    """Running on a 13x10 input equals running on its bottom/right reflect-padded 16x12 version, cropped."""
    model = SwinIR(upscale=2, upsampler="pixelshuffledirect", **TINY_SWINIR).eval()
    x = torch.rand(1, 3, 13, 10)
    padded = torch.nn.functional.pad(x, (0, 2, 0, 3), mode="reflect")
    with torch.inference_mode():
        torch.testing.assert_close(model(x), model(padded)[..., :26, :20])


@pytest.mark.parametrize("size", [128, 256])
def test_vgg_discriminator_shapes(size):
    model = VGGStyleDiscriminator(num_feat=8, input_size=size)
    assert run(model, 3, size, size) == (2, 1)
    with pytest.raises(ValueError, match=f"must be {size}x{size}"):
        run(model, 3, size // 2, size)


def test_unet_discriminator_shape():
    assert run(UNetDiscriminatorSN(num_feat=8), 3, 32, 24) == (2, 1, 32, 24)


@pytest.mark.parametrize("name", srcore.list_models())
def test_every_variant_builds_with_a_consistent_descriptor(name):
    variant = srcore.VARIANTS[name]
    desc = srcore.describe(name)
    assert desc.arch == variant.arch
    assert desc.in_channels in (1, 3) and desc.scale >= 1
    assert desc.kind == ("discriminator" if "discriminator" in name else "generator")
    assert srcore.ModelDescriptor.from_json(desc.to_json()) == desc


def test_one_entry_per_architecture():
    """The registry's variants and ``srcore.ARCHS`` name families of the one ARCHITECTURES table, each used."""
    assert set(srcore.ARCHS) == set(ARCHITECTURES) == {v.arch for v in srcore.VARIANTS.values()}
    assert all(srcore.VARIANTS[name].architecture.network is SRVGGNetCompact
               for name in ("realesr-animevideov3", "srcore-compact-x4"))
    with pytest.raises(KeyError, match="unknown architecture 'nope'"):
        ModelVariant("x", "nope")


def test_create_model_errors_are_clear():
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        srcore.create_model("nope")
    with pytest.raises(TypeError, match="bad arguments for rrdbnet"):
        srcore.create_model("realesrgan-x4plus", colour=3)


def test_list_models_from_the_command_line_lists_every_variant():
    out = subprocess.run([sys.executable, "-c", "import srcore; print(srcore.list_models())"],
                         capture_output=True, text=True, check=True).stdout
    for name in srcore.VARIANTS:
        assert repr(name) in out
    assert len(srcore.list_models("generator")) + len(srcore.list_models("discriminator")) == len(srcore.VARIANTS)


def test_data_workers_modules_do_not_import_torch():
    """A Ray Data worker that decodes or samples patches imports these: torch would cost it seconds."""
    code = "import sys, srcore, srcore.imageio, srcore.train.data, pipelines.train_data; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_core_does_not_import_ray():
    code = "import sys, srcore; srcore.load_model; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
