"""SRVGGNetCompact, Real-ESRGAN's compact model (realesr-animevideov3, realesr-general-x4v3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .descriptor import ModelDescriptor

ACTIVATIONS = ("prelu", "relu", "leakyrelu")


def make_activation(act_type: str, num_feat: int) -> nn.Module:
    if act_type == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if act_type == "relu":
        return nn.ReLU(inplace=True)
    if act_type == "leakyrelu":
        return nn.LeakyReLU(negative_slope=0.1, inplace=True)
    raise ValueError(f"SRVGGNetCompact: act_type must be one of {ACTIVATIONS}, got {act_type!r}")


class SRVGGNetCompact(nn.Module):
    """A plain VGG-style stack of 3x3 convs at LR resolution, one PixelShuffle, plus a nearest-upsampled skip.

    ``body`` holds conv, act, (conv, act) x ``num_conv``, conv: official Real-ESRGAN key names.
    animevideov3 (64 features, 16 convs, PReLU, x4) has 621,424 parameters; general-x4v3 (32 convs) 1,213,296.

    Args:
        num_in_ch, num_out_ch: image channels.
        num_feat: width (64).
        num_conv: hidden convs (16 or 32).
        upscale: any integer scale >= 1.
        act_type: ``prelu``, ``relu`` or ``leakyrelu``.
        skip: the upsampled input the network adds to: ``nearest`` (Real-ESRGAN's releases) or ``bicubic``
            (a global bicubic residual, as VDSR/ESPCN-style nets: training starts at bicubic quality and
            learns only the correction; the last conv starts small).

    Shapes:
        input (N, num_in_ch, H, W) in [0, 1]; output (N, num_out_ch, H*upscale, W*upscale), about [0, 1].
    """

    arch_name = "srvgg"

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_conv: int = 16,
                 upscale: int = 4, act_type: str = "prelu", skip: str = "nearest"):
        super().__init__()
        if upscale < 1:
            raise ValueError(f"SRVGGNetCompact: upscale must be >= 1, got {upscale}")
        if skip not in ("nearest", "bicubic"):
            raise ValueError(f"SRVGGNetCompact: skip must be 'nearest' or 'bicubic', got {skip!r}")
        self.hparams = dict(num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat,
                            num_conv=num_conv, upscale=upscale, act_type=act_type, skip=skip)
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), make_activation(act_type, num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), make_activation(act_type, num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)
        self.skip = skip
        if skip == "bicubic":
            with torch.no_grad():
                layers[-1].weight.mul_(0.1)
                layers[-1].bias.zero_()

    @property
    def saved_key_prefix(self) -> str:
        """Prefix of this network's keys in the files srcore saves. With the bicubic skip its keys would equal
        Real-ESRGAN's Compact ones, and spandrel (chaiNNer, ComfyUI) would run it with a nearest skip: blocky
        output. Distinct keys make spandrel refuse the file instead; srcore reads the prefix back."""
        return "srcore_bicubic_skip." if self.skip == "bicubic" else ""

    @property
    def descriptor(self) -> ModelDescriptor:
        return ModelDescriptor(arch=self.arch_name, scale=self.upscale,
                               in_channels=self.hparams["num_in_ch"], out_channels=self.hparams["num_out_ch"],
                               tile_overlap=48)  # animevideov3: error < 0.1/255 beyond 16 px

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        if self.skip == "bicubic":
            return out + F.interpolate(x, scale_factor=self.upscale, mode="bicubic", align_corners=False)
        return out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


def hparams_from_state_dict(sd: dict[str, torch.Tensor]) -> dict | None:
    """Recognise ``body.{i}`` conv/activation stacks by the index and shape of the first and last conv.

    Without PReLU weights, ReLU vs LeakyReLU is not stored: ReLU is assumed.
    """
    if not sd or any(not k.startswith("body.") for k in sd) or "body.0.weight" not in sd:
        return None
    last = max(int(k.split(".")[1]) for k in sd)  # body = conv, act, (conv, act) * num_conv, conv
    last_conv = sd.get(f"body.{last}.weight")
    if last % 2 or last_conv is None or last_conv.ndim != 4:
        return None
    first = sd["body.0.weight"]
    num_in_ch = num_out_ch = first.shape[1]
    upscale = math.isqrt(last_conv.shape[0] // num_out_ch)
    if upscale * upscale * num_out_ch != last_conv.shape[0]:
        return None
    return dict(num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=first.shape[0], num_conv=(last - 2) // 2,
                upscale=upscale, act_type="prelu" if "body.1.weight" in sd else "relu")
