"""Named model variants, as timm has: ``create_model("realesrgan-x4plus")``, ``list_models()``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from . import ARCHS
from .descriptor import ModelDescriptor

REAL_ESRGAN = "https://github.com/xinntao/Real-ESRGAN/releases/download"
SWINIR = "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0"


@dataclass(frozen=True)
class ModelVariant:
    """A named configuration of an architecture, with where its published weights live (if any).

    Attributes:
        name: registry name, e.g. ``realesrgan-x4plus``.
        arch: key in ``ARCHS``.
        kwargs: constructor arguments.
        summary: one line for listings.
        url: published weights file, when there is one.
        sha256: hex digest of that file, when verified.
        bundled: a weights file shipped inside the package (``srcore/pretrained/``).
        fidelity_partner: for a GAN model, the PSNR model of the same architecture it was fine-tuned from:
            ``--realism`` blends the two by network interpolation.
    """

    name: str
    arch: str
    kwargs: dict = field(default_factory=dict)
    summary: str = ""
    url: str | None = None
    sha256: str | None = None
    bundled: str | None = None
    fidelity_partner: str | None = None

    @property
    def filename(self) -> str | None:
        return self.url.rsplit("/", 1)[-1] if self.url else None


def _swinir_classical(scale: int) -> ModelVariant:
    return ModelVariant(
        f"swinir-m-x{scale}", "swinir",
        dict(upscale=scale, embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, upsampler="pixelshuffle"),
        f"SwinIR-M classical SR x{scale} (DF2K, bicubic)",
        f"{SWINIR}/001_classicalSR_DF2K_s64w8_SwinIR-M_x{scale}.pth",
    )


def _swinir_lightweight(scale: int) -> ModelVariant:
    return ModelVariant(
        f"swinir-s-x{scale}", "swinir",
        dict(upscale=scale, embed_dim=60, depths=[6] * 4, num_heads=[6] * 4, upsampler="pixelshuffledirect"),
        f"SwinIR-S lightweight SR x{scale} (DIV2K, bicubic)",
        f"{SWINIR}/002_lightweightSR_DIV2K_s64w8_SwinIR-S_x{scale}.pth",
    )


VARIANTS: dict[str, ModelVariant] = {
    v.name: v
    for v in [
        ModelVariant("srcnn-9-5-5", "srcnn", dict(num_channels=1, scale=3), "SRCNN 9-5-5, Y channel (Dong et al.)"),
        ModelVariant("srcnn-9-5-5-rgb", "srcnn", dict(num_channels=3, scale=3), "SRCNN 9-5-5 on RGB"),
        ModelVariant("srresnet-x4", "srresnet", dict(scale=4, use_bn=True), "SRResNet / SRGAN generator, BatchNorm"),
        ModelVariant("srresnet-nobn-x4", "srresnet", dict(scale=4, use_bn=False),
                     "SRResNet without BatchNorm (ESRGAN's finding)"),
        ModelVariant("esrgan-x4", "rrdbnet", dict(scale=4), "ESRGAN RRDBNet x4 (23 RRDB blocks)"),
        ModelVariant("realesrgan-x4plus", "rrdbnet", dict(scale=4), "Real-ESRGAN x4plus, general photos",
                     f"{REAL_ESRGAN}/v0.1.0/RealESRGAN_x4plus.pth"),
        ModelVariant("realesrnet-x4plus", "rrdbnet", dict(scale=4), "Real-ESRNet x4plus (PSNR-oriented)",
                     f"{REAL_ESRGAN}/v0.1.1/RealESRNet_x4plus.pth"),
        ModelVariant("realesrgan-x4plus-anime-6b", "rrdbnet", dict(scale=4, num_block=6),
                     "Real-ESRGAN x4plus for anime, 6 blocks",
                     f"{REAL_ESRGAN}/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth"),
        ModelVariant("realesrgan-x2plus", "rrdbnet", dict(scale=2), "Real-ESRGAN x2plus (pixel-unshuffle input)",
                     f"{REAL_ESRGAN}/v0.2.1/RealESRGAN_x2plus.pth"),
        ModelVariant("realesr-animevideov3", "srvgg", dict(num_conv=16, upscale=4),
                     "Real-ESRGAN compact SRVGGNet for anime video",
                     f"{REAL_ESRGAN}/v0.2.5.0/realesr-animevideov3.pth"),
        ModelVariant("realesr-general-x4v3", "srvgg", dict(num_conv=32, upscale=4),
                     "Real-ESRGAN compact SRVGGNet, general scenes",
                     f"{REAL_ESRGAN}/v0.2.5.0/realesr-general-x4v3.pth"),
        ModelVariant("srcore-compact-x4", "srvgg", dict(num_feat=48, num_conv=10, upscale=4, skip="bicubic"),
                     "srcore's bundled PSNR model: compact SRVGGNet with bicubic skip, 230k params",
                     bundled="srcore-compact-x4.safetensors"),
        ModelVariant("srcore-compact-x4-gan", "srvgg", dict(num_feat=48, num_conv=10, upscale=4, skip="bicubic"),
                     "srcore-compact-x4 fine-tuned as a GAN on real-world degradations (realism; --realism)",
                     bundled="srcore-compact-x4-gan.safetensors", fidelity_partner="srcore-compact-x4"),
        ModelVariant("srcore-distill-x4", "srvgg", dict(num_conv=16, upscale=4),
                     "Real-ESRGAN x4plus distilled into a compact SRVGGNet (0.62M params, 3% of x4plus's CPU time)",
                     bundled="srcore-distill-x4.safetensors"),
        *[_swinir_classical(s) for s in (2, 3, 4, 8)],
        *[_swinir_lightweight(s) for s in (2, 3, 4)],
        ModelVariant("swinir-realworld-m-x4", "swinir",
                     dict(upscale=4, embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, upsampler="nearest+conv"),
                     "SwinIR-M real-world SR x4 (GAN)", f"{SWINIR}/003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth"),
        ModelVariant("swinir-realworld-l-x4", "swinir",
                     dict(upscale=4, embed_dim=240, depths=[6] * 9, num_heads=[8] * 9, upsampler="nearest+conv",
                          resi_connection="3conv"),
                     "SwinIR-L real-world SR x4 (GAN)",
                     f"{SWINIR}/003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth"),
        ModelVariant("vgg128-discriminator", "vgg_discriminator", dict(input_size=128),
                     "VGG-style discriminator, 128x128 input (SRGAN, ESRGAN)"),
        ModelVariant("vgg256-discriminator", "vgg_discriminator", dict(input_size=256),
                     "VGG-style discriminator, 256x256 input"),
        ModelVariant("unet-discriminator-sn", "unet_discriminator_sn", {},
                     "U-Net discriminator with spectral norm (Real-ESRGAN)"),
    ]
}


DEFAULT_MODEL = "srcore-compact-x4"  # the library's bundled PSNR model (srcore.load_model's example, benchmarks)
# What `srcore upscale`, the bucket job and the demo run when no --model is given: the bundled GAN / PSNR pair at
# realism 0.5. On RealWorld's real low-quality photos it is more natural than either model alone (NIQE 6.47 vs
# 7.07 PSNR, 6.54 GAN) and stays faithful to the input (median LR-consistency 41.7 dB), with +1.35 dB over
# bicubic on Set5; the PSNR model alone turns JPEG blocks into mosaic texture (README, "Which bundled model").
DEFAULT_UPSCALE_MODEL = "srcore-compact-x4-gan"
DEFAULT_REALISM = 0.5


def list_models(kind: str | None = None) -> list[str]:
    """Names of every registered variant, optionally only ``"generator"`` or ``"discriminator"`` ones."""
    names = sorted(VARIANTS)
    if kind is not None:
        names = [n for n in names if describe(n).kind == kind]
    return names


def realism_pair(name: str) -> tuple[str, str]:
    """(GAN model, its PSNR partner) for a model that has one, named by either of the two."""
    for variant in VARIANTS.values():
        if variant.fidelity_partner and name in (variant.name, variant.fidelity_partner):
            return variant.name, variant.fidelity_partner
    pairs = ", ".join(f"{v.name} / {v.fidelity_partner}" for v in VARIANTS.values() if v.fidelity_partner)
    raise ValueError(f"realism: {name} has no GAN / PSNR pair to blend; models with one: {pairs}")


def get_variant(name: str) -> ModelVariant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(VARIANTS))}") from None


def build(arch: str, kwargs: dict) -> nn.Module:
    """Instantiate an architecture by key with constructor arguments, with a clear error on bad input."""
    if arch not in ARCHS:
        raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHS))}")
    try:
        return ARCHS[arch](**kwargs)
    except TypeError as exc:
        raise TypeError(f"bad arguments for {arch}: {exc}") from None


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered variant with fresh (untrained) weights; ``overrides`` replace its kwargs (e.g. scale)."""
    variant = get_variant(name)
    return build(variant.arch, {**variant.kwargs, **overrides})


def describe(name: str, **overrides) -> ModelDescriptor:
    """Descriptor of a variant, built on the meta device so nothing is allocated."""
    with torch.device("meta"):
        return create_model(name, **overrides).descriptor
