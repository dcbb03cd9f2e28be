"""RRDBNet, the ESRGAN / Real-ESRGAN generator (Wang et al., 2018 and 2021).

Parameter names follow BasicSR, so official ``.pth`` files load with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import check_multiple, num_blocks, scaled_kaiming_init
from .descriptor import ModelDescriptor

# Real-ESRGAN runs x2 and x1 models on pixel-unshuffled input, then the same x4 upsampler.
UNSHUFFLE = {4: 1, 2: 2, 1: 4}


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; output = 0.2 * conv5 + input.

    Args:
        num_feat: channels in and out.
        num_grow_ch: channels each of conv1-4 adds (growth).
    """

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        scaled_kaiming_init([self.conv1, self.conv2, self.conv3, self.conv4, self.conv5], 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs, output = 0.2 * rdb3(rdb2(rdb1(x))) + x."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN generator: conv -> ``num_block`` RRDBs -> conv + skip -> 2x (nearest x2, conv, lrelu) -> convs.

    The upsampler is always x4; x2 and x1 models pixel-unshuffle their input first (by 2 or 4),
    as Real-ESRGAN's x2plus does, so their input size must be a multiple of 2 or 4.
    The ``realesrgan-x4plus`` configuration (23 blocks, 64 features, growth 32) has 16,697,987 parameters.

    Args:
        num_in_ch, num_out_ch: image channels.
        scale: 1, 2 or 4.
        num_feat: trunk width (64).
        num_block: RRDB count (23; 6 in the anime model).
        num_grow_ch: dense growth channels (32).

    Shapes:
        input (N, num_in_ch, H, W) in [0, 1]; output (N, num_out_ch, H*scale, W*scale), about [0, 1].
    """

    arch_name = "rrdbnet"

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, scale: int = 4, num_feat: int = 64,
                 num_block: int = 23, num_grow_ch: int = 32):
        super().__init__()
        if scale not in UNSHUFFLE:
            raise ValueError(f"RRDBNet: scale must be 1, 2 or 4, got {scale}")
        self.hparams = dict(num_in_ch=num_in_ch, num_out_ch=num_out_ch, scale=scale, num_feat=num_feat,
                            num_block=num_block, num_grow_ch=num_grow_ch)
        self.scale = scale
        self.unshuffle = UNSHUFFLE[scale]
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    @property
    def descriptor(self) -> ModelDescriptor:
        return ModelDescriptor(arch=self.arch_name, scale=self.scale, in_channels=self.hparams["num_in_ch"],
                               out_channels=self.hparams["num_out_ch"], size_multiple=self.unshuffle,
                               # 23 RRDBs see far: x4plus needs ~64 px of context to stay within 1/255
                               tile_overlap=160 * self.unshuffle)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            check_multiple(x, self.unshuffle, "RRDBNet")
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


def hparams_from_state_dict(sd: dict[str, torch.Tensor]) -> dict | None:
    """Recognise a BasicSR-layout RRDBNet; the scale follows from conv_first's input channels."""
    if "conv_first.weight" not in sd or "body.0.rdb1.conv1.weight" not in sd:
        return None
    num_out_ch = sd["conv_last.weight"].shape[0]
    unshuffle_sq = sd["conv_first.weight"].shape[1] // num_out_ch
    scale = {1: 4, 4: 2, 16: 1}.get(unshuffle_sq)
    if scale is None:
        return None
    return dict(
        num_in_ch=sd["conv_first.weight"].shape[1] // unshuffle_sq,
        num_out_ch=num_out_ch,
        scale=scale,
        num_feat=sd["conv_first.weight"].shape[0],
        num_block=num_blocks(sd, "body."),
        num_grow_ch=sd["body.0.rdb1.conv1.weight"].shape[0],
    )
