"""Discriminators for GAN training: SRGAN/ESRGAN's VGG-style net and Real-ESRGAN's U-Net with spectral norm.

Parameter names follow BasicSR, so official discriminator checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from .descriptor import ModelDescriptor


class VGGStyleDiscriminator(nn.Module):
    """VGG-style discriminator (SRGAN, ESRGAN): stride-2 conv stages with BatchNorm, then two linear layers.

    Args:
        num_in_ch: image channels.
        num_feat: width of the first stage (64); stages double it up to 8x.
        input_size: 128 or 256; the linear head fixes it, so inputs must be exactly this size.

    Shapes:
        input (N, num_in_ch, input_size, input_size); output (N, 1) logits.
    """

    arch_name = "vgg_discriminator"

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, input_size: int = 128):
        super().__init__()
        if input_size not in (128, 256):
            raise ValueError(f"VGGStyleDiscriminator: input_size must be 128 or 256, got {input_size}")
        self.hparams = dict(num_in_ch=num_in_ch, num_feat=num_feat, input_size=input_size)
        self.input_size = input_size
        self.conv0_0 = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1, bias=True)
        self.conv0_1 = nn.Conv2d(num_feat, num_feat, 4, 2, 1, bias=False)
        self.bn0_1 = nn.BatchNorm2d(num_feat, affine=True)
        widths = [num_feat, num_feat * 2, num_feat * 4, num_feat * 8, num_feat * 8]
        if input_size == 256:
            widths.append(num_feat * 8)
        self.num_stages = len(widths)
        for i in range(1, self.num_stages):
            setattr(self, f"conv{i}_0", nn.Conv2d(widths[i - 1], widths[i], 3, 1, 1, bias=False))
            setattr(self, f"bn{i}_0", nn.BatchNorm2d(widths[i], affine=True))
            setattr(self, f"conv{i}_1", nn.Conv2d(widths[i], widths[i], 4, 2, 1, bias=False))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(widths[i], affine=True))
        self.linear1 = nn.Linear(num_feat * 8 * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    @property
    def descriptor(self) -> ModelDescriptor:
        c = self.hparams["num_in_ch"]
        return ModelDescriptor(arch=self.arch_name, scale=1, in_channels=c, out_channels=1, tileable=False,
                               kind="discriminator", size_multiple=self.input_size, min_size=self.input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"VGGStyleDiscriminator: input must be {self.input_size}x{self.input_size}, "
                             f"got {x.shape[-2]}x{x.shape[-1]}")
        feat = self.lrelu(self.conv0_0(x))
        feat = self.lrelu(self.bn0_1(self.conv0_1(feat)))
        for i in range(1, self.num_stages):
            feat = self.lrelu(getattr(self, f"bn{i}_0")(getattr(self, f"conv{i}_0")(feat)))
            feat = self.lrelu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(feat)))
        feat = self.lrelu(self.linear1(feat.flatten(1)))
        return self.linear2(feat)


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's U-Net discriminator with spectral normalisation: a realness logit per pixel.

    Three stride-2 downsampling convs, three bilinear-upsampling convs with skips, two extra convs.
    With ``num_feat=64`` it has 4,376,897 parameters.

    Args:
        num_in_ch: image channels.
        num_feat: base width (64).
        skip_connection: add encoder features to decoder features (True).

    Shapes:
        input (N, num_in_ch, H, W) with H, W multiples of 8; output (N, 1, H, W) logits.
    """

    arch_name = "unet_discriminator_sn"

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True):
        super().__init__()
        self.hparams = dict(num_in_ch=num_in_ch, num_feat=num_feat, skip_connection=skip_connection)
        self.skip_connection = skip_connection
        nf = num_feat
        self.conv0 = nn.Conv2d(num_in_ch, nf, 3, 1, 1)
        self.conv1 = spectral_norm(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    @property
    def descriptor(self) -> ModelDescriptor:
        return ModelDescriptor(arch=self.arch_name, scale=1, in_channels=self.hparams["num_in_ch"], out_channels=1,
                               size_multiple=8, tileable=False, kind="discriminator")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def act(t: torch.Tensor) -> torch.Tensor:
            return F.leaky_relu(t, negative_slope=0.2)

        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)

        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        x4 = act(self.conv4(up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = act(self.conv5(up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = act(self.conv6(up(x5)))
        if self.skip_connection:
            x6 = x6 + x0
        out = act(self.conv8(act(self.conv7(x6))))
        return self.conv9(out)


def vgg_hparams_from_state_dict(sd: dict[str, torch.Tensor]) -> dict | None:
    if "conv0_0.weight" not in sd or "linear2.weight" not in sd:
        return None
    return dict(num_in_ch=sd["conv0_0.weight"].shape[1], num_feat=sd["conv0_0.weight"].shape[0],
                input_size=256 if "conv5_0.weight" in sd else 128)


def unet_hparams_from_state_dict(sd: dict[str, torch.Tensor]) -> dict | None:
    if "conv0.weight" not in sd or "conv1.weight_orig" not in sd or "conv9.weight" not in sd:
        return None
    return dict(num_in_ch=sd["conv0.weight"].shape[1], num_feat=sd["conv0.weight"].shape[0])
