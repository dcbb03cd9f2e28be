"""SRResNet, the SRGAN generator (Ledig et al., 2017), with ESRGAN's BatchNorm-free option."""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import num_blocks
from .descriptor import ModelDescriptor


def upsample_factors(scale: int) -> list[int]:
    """PixelShuffle stages for a scale: x2 per stage for powers of two, one x3 stage for 3.

    The seed article loops ``range(scale // 2)`` x2 stages, which gives x2 for scale 3 and x16 for scale 8.
    """
    if scale == 3:
        return [3]
    if scale >= 2 and scale & (scale - 1) == 0:
        return [2] * int(math.log2(scale))
    raise ValueError(f"unsupported scale {scale}: use 2, 3, 4 or 8 (powers of two or 3)")


class ResidualBlock(nn.Module):
    """conv3x3 - [BN] - PReLU - conv3x3 - [BN], plus identity."""

    def __init__(self, num_feat: int, use_bn: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=not use_bn)
        self.bn1 = nn.BatchNorm2d(num_feat) if use_bn else nn.Identity()
        self.act = nn.PReLU()
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=not use_bn)
        self.bn2 = nn.BatchNorm2d(num_feat) if use_bn else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class SRResNet(nn.Module):
    """SRResNet / SRGAN generator.

    conv9x9 + PReLU -> ``num_block`` residual blocks -> conv3x3 [+ BN] + long skip ->
    one (conv3x3 to ``r*r*num_feat``, PixelShuffle(r), PReLU) stage per factor r of ``scale`` -> conv9x9.

    Output range: the head is linear. SRGAN used tanh with targets in [-1, 1]; srcore trains every
    generator on [0, 1] inputs and targets, so outputs are about [0, 1] and inference clamps them.
    With ``use_bn=False`` this is the BatchNorm-free variant ESRGAN found to train more stably
    and to avoid BN artifacts at test time.

    Args:
        num_in_ch, num_out_ch: image channels.
        num_feat: feature width (64).
        num_block: residual blocks (16).
        scale: 2, 3, 4 or 8.
        use_bn: BatchNorm in the residual blocks and after the body (True for SRGAN).

    Shapes:
        input (N, num_in_ch, H, W); output (N, num_out_ch, H*scale, W*scale).
    """

    arch_name = "srresnet"

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 16,
                 scale: int = 4, use_bn: bool = True):
        super().__init__()
        self.hparams = dict(num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat,
                            num_block=num_block, scale=scale, use_bn=use_bn)
        self.scale = scale
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 9, 1, 4)
        self.act_first = nn.PReLU()
        self.body = nn.Sequential(*[ResidualBlock(num_feat, use_bn) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=not use_bn)
        self.bn_body = nn.BatchNorm2d(num_feat) if use_bn else nn.Identity()
        stages: list[nn.Module] = []
        for r in upsample_factors(scale):
            stages += [nn.Conv2d(num_feat, num_feat * r * r, 3, 1, 1), nn.PixelShuffle(r), nn.PReLU()]
        self.upsample = nn.Sequential(*stages)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 9, 1, 4)

    @property
    def descriptor(self) -> ModelDescriptor:
        return ModelDescriptor(arch=self.arch_name, scale=self.scale,
                               in_channels=self.hparams["num_in_ch"], out_channels=self.hparams["num_out_ch"],
                               tile_overlap=64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.act_first(self.conv_first(x))
        feat = feat + self.bn_body(self.conv_body(self.body(feat)))
        return self.conv_last(self.upsample(feat))


def hparams_from_state_dict(sd: dict[str, torch.Tensor]) -> dict | None:
    if "conv_first.weight" not in sd or "act_first.weight" not in sd or "upsample.0.weight" not in sd:
        return None
    num_feat = sd["conv_first.weight"].shape[0]
    scale = 1
    for key, w in sd.items():
        if key.startswith("upsample.") and key.endswith(".weight") and w.ndim == 4:
            scale *= math.isqrt(w.shape[0] // num_feat)
    return dict(
        num_in_ch=sd["conv_first.weight"].shape[1],
        num_out_ch=sd["conv_last.weight"].shape[0],
        num_feat=num_feat,
        num_block=num_blocks(sd, "body."),
        scale=scale,
        use_bn="bn_body.weight" in sd,
    )
