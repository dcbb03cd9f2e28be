"""Named model variants, as timm has: ``create_model("realesrgan-x4plus")``, ``list_models()``.

Each variant names its architecture (``srcore.archs.architecture``), its constructor arguments and the weights
file it loads by name, with that file's SHA-256: checked when it is downloaded and whenever it is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from .architecture import Architecture, get_architecture
from .descriptor import ModelDescriptor

REAL_ESRGAN = "https://github.com/xinntao/Real-ESRGAN/releases/download"
SWINIR = "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0"


@dataclass(frozen=True)
class ModelVariant:
    """A named configuration of an architecture, with the weights file it loads by name (if any).

    Attributes:
        name: registry name, e.g. ``realesrgan-x4plus``.
        arch: key of its architecture in ``srcore.archs.ARCHITECTURES``.
        kwargs: constructor arguments.
        summary: one line for listings.
        url: published weights file, when there is one.
        sha256: hex digest of its weights file (published or bundled), checked on download and on every load;
            required with ``url`` or ``bundled``.
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

    def __post_init__(self) -> None:
        get_architecture(self.arch)  # a misspelt key fails here, when the registry is built
        if (self.url or self.bundled) and not self.sha256:
            raise ValueError(f"{self.name}: a variant with a weights file needs its SHA-256")

    @property
    def architecture(self) -> Architecture:
        return get_architecture(self.arch)

    @property
    def filename(self) -> str | None:
        return self.url.rsplit("/", 1)[-1] if self.url else None


def _real_esrgan(file: str, sha256: str, name: str, arch: str, summary: str, **kwargs) -> ModelVariant:
    """A variant whose weights Real-ESRGAN publishes as ``file`` (under its release tag) with this SHA-256."""
    return ModelVariant(name, arch, kwargs, summary, f"{REAL_ESRGAN}/{file}", sha256)


def _swinir_bicubic(size: str, scale: int, sha256: str) -> ModelVariant:
    """SwinIR trained on bicubic downscaling: ``m`` the classical model (DF2K), ``s`` the lightweight (DIV2K)."""
    if size == "m":
        kwargs = dict(embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, upsampler="pixelshuffle")
        summary, file = "SwinIR-M classical SR x{} (DF2K, bicubic)", "001_classicalSR_DF2K_s64w8_SwinIR-M_x{}.pth"
    else:
        kwargs = dict(embed_dim=60, depths=[6] * 4, num_heads=[6] * 4, upsampler="pixelshuffledirect")
        summary, file = "SwinIR-S lightweight SR x{} (DIV2K, bicubic)", "002_lightweightSR_DIV2K_s64w8_SwinIR-S_x{}.pth"
    return ModelVariant(f"swinir-{size}-x{scale}", "swinir", dict(upscale=scale, **kwargs), summary.format(scale),
                        f"{SWINIR}/{file.format(scale)}", sha256)


# SHA-256 of the published files, as stated for these exact release URLs by OpenModelDB
# (github.com/OpenModelDB/open-model-database, data/models/*.json "resources", commit 782aac08) and, for
# Real-ESRGAN, by the AUR's python-realesrgan PKGBUILD (sha256sums, checked by makepkg on every build).
# RealESRNet_x4plus is not in OpenModelDB: its digest is the PKGBUILD's alone.
VARIANTS: dict[str, ModelVariant] = {
    v.name: v
    for v in [
        ModelVariant("srcnn-9-5-5", "srcnn", dict(num_channels=1, scale=3), "SRCNN 9-5-5, Y channel (Dong et al.)"),
        ModelVariant("srcnn-9-5-5-rgb", "srcnn", dict(num_channels=3, scale=3), "SRCNN 9-5-5 on RGB"),
        ModelVariant("srresnet-x4", "srresnet", dict(scale=4, use_bn=True), "SRResNet / SRGAN generator, BatchNorm"),
        ModelVariant("srresnet-nobn-x4", "srresnet", dict(scale=4, use_bn=False),
                     "SRResNet without BatchNorm (ESRGAN's finding)"),
        ModelVariant("esrgan-x4", "rrdbnet", dict(scale=4), "ESRGAN RRDBNet x4 (23 RRDB blocks)"),
        _real_esrgan("v0.1.0/RealESRGAN_x4plus.pth", "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
                     "realesrgan-x4plus", "rrdbnet", "Real-ESRGAN x4plus, general photos", scale=4),
        _real_esrgan("v0.1.1/RealESRNet_x4plus.pth", "a820b9bde89a874d7599d545567308ce6c128fc8754a53208eda016d40aa81df",
                     "realesrnet-x4plus", "rrdbnet", "Real-ESRNet x4plus (PSNR-oriented)", scale=4),
        _real_esrgan("v0.2.1/RealESRGAN_x2plus.pth", "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
                     "realesrgan-x2plus", "rrdbnet", "Real-ESRGAN x2plus (pixel-unshuffle input)", scale=2),
        _real_esrgan("v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
                     "f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da",
                     "realesrgan-x4plus-anime-6b", "rrdbnet", "Real-ESRGAN x4plus for anime, 6 blocks",
                     scale=4, num_block=6),
        _real_esrgan("v0.2.5.0/realesr-animevideov3.pth",
                     "b8a8376811077954d82ca3fcf476f1ac3da3e8a68a4f4d71363008000a18b75d",
                     "realesr-animevideov3", "srvgg", "Real-ESRGAN compact SRVGGNet for anime video",
                     num_conv=16, upscale=4),
        _real_esrgan("v0.2.5.0/realesr-general-x4v3.pth",
                     "8dc7edb9ac80ccdc30c3a5dca6616509367f05fbc184ad95b731f05bece96292",
                     "realesr-general-x4v3", "srvgg", "Real-ESRGAN compact SRVGGNet, general scenes",
                     num_conv=32, upscale=4),
        # bundled: digests of the files in srcore/pretrained/; re-exporting one means recording its new digest
        ModelVariant("srcore-compact-x4", "srvgg", dict(num_feat=48, num_conv=10, upscale=4, skip="bicubic"),
                     "srcore's bundled PSNR model: compact SRVGGNet with bicubic skip, 230k params",
                     sha256="ca349f944f62b1fb9786d84a767278123377eda114458321361c5b5c04290b08",
                     bundled="srcore-compact-x4.safetensors"),
        ModelVariant("srcore-compact-x4-gan", "srvgg", dict(num_feat=48, num_conv=10, upscale=4, skip="bicubic"),
                     "srcore-compact-x4 fine-tuned as a GAN on real-world degradations (realism; --realism)",
                     sha256="a32a8392b40a2e9f1790d6e467924860f2bb96bf901edaa4181a631195734ece",
                     bundled="srcore-compact-x4-gan.safetensors", fidelity_partner="srcore-compact-x4"),
        ModelVariant("srcore-distill-x4", "srvgg", dict(num_conv=16, upscale=4),
                     "Real-ESRGAN x4plus distilled into a compact SRVGGNet (0.62M params, 3% of x4plus's CPU time)",
                     sha256="bcce53c17b5efb2c55c23f5918567c6b5af7fa24fab6734358dea736c97eeb58",
                     bundled="srcore-distill-x4.safetensors"),
        _swinir_bicubic("m", 2, "2032ebf8f401dd3ce2fae5f3852117cb72101ec6ed8358faa64c2a3fa09ed4ac"),
        _swinir_bicubic("m", 3, "6eca3aee41f53322cd2f5a13650e212b80be8f3c0439d6fe19aef13ab1f509c7"),
        _swinir_bicubic("m", 4, "4e78e33f22c1aa8a773db0cf4a7381bae97c2362c717f155439ebc690cbd9215"),
        _swinir_bicubic("m", 8, "6b522c1ea5c21006ce3398797eb20b131ca0024cc6e7b8f3d5d29fad1310a49c"),
        _swinir_bicubic("s", 2, "193b229909ca89cd8b55de9c9e7fce146ae759d59dfcd78d8feb9dd1d6fa0fd7"),
        _swinir_bicubic("s", 3, "53af0cf0b15876752c1c2646a71444f739523b3d562e126d200521a817ab5d2c"),
        _swinir_bicubic("s", 4, "09fad24e32ae62722e1a055efde9921328f4137981bab0a42a4a3a806306c58e"),
        ModelVariant("swinir-realworld-m-x4", "swinir",
                     dict(upscale=4, embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, upsampler="nearest+conv"),
                     "SwinIR-M real-world SR x4 (GAN)", f"{SWINIR}/003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth",
                     "b9afb61e65e04eb7f8aba5095d070bbe9af28df76acd0c9405aeb33b814bcfc6"),
        ModelVariant("swinir-realworld-l-x4", "swinir",
                     dict(upscale=4, embed_dim=240, depths=[6] * 9, num_heads=[8] * 9, upsampler="nearest+conv",
                          resi_connection="3conv"),
                     "SwinIR-L real-world SR x4 (GAN)",
                     f"{SWINIR}/003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth",
                     "99adfa91350a84c99e946c1eb3d8fce34bc28f57d807b09dc8fe40a316328c0a"),
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
    return get_architecture(arch).build(kwargs)


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered variant with fresh (untrained) weights; ``overrides`` replace its kwargs (e.g. scale)."""
    variant = get_variant(name)
    return variant.architecture.build({**variant.kwargs, **overrides})


def describe(name: str, **overrides) -> ModelDescriptor:
    """Descriptor of a variant, built on the meta device so nothing is allocated."""
    variant = get_variant(name)
    return variant.architecture.describe({**variant.kwargs, **overrides})
