"""SRCNN (Dong et al., 2014/2016): the first CNN for single-image super-resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .descriptor import ModelDescriptor


class SRCNN(nn.Module):
    """SRCNN 9-5-5: patch extraction (9x9, 64), non-linear mapping (5x5, 32), reconstruction (5x5).

    The paper feeds a bicubic-upsampled image; here the network does that upsampling itself
    (``torch`` bicubic, a = -0.75) so every srcore generator maps LR -> HR alike. Convolutions use
    'same' padding, so the output is exactly ``scale`` times the input (the paper's valid convolutions
    shrink it by 16 pixels).

    Args:
        num_channels: 1 for the paper's Y-channel model (57,281 parameters), 3 for RGB (69,251).
        scale: upscaling factor applied by the built-in bicubic pre-upsampling (any integer >= 1).
        num_feat: width of the first layer (64 in the paper).
        num_map: width of the mapping layer (32 in the paper).

    Shapes:
        input (N, num_channels, H, W) in [0, 1]; output (N, num_channels, H*scale, W*scale), about [0, 1].
    """

    arch_name = "srcnn"

    def __init__(self, num_channels: int = 1, scale: int = 4, num_feat: int = 64, num_map: int = 32):
        super().__init__()
        if scale < 1:
            raise ValueError(f"SRCNN: scale must be >= 1, got {scale}")
        self.hparams = dict(num_channels=num_channels, scale=scale, num_feat=num_feat, num_map=num_map)
        self.scale = scale
        self.conv1 = nn.Conv2d(num_channels, num_feat, 9, padding=4)
        self.conv2 = nn.Conv2d(num_feat, num_map, 5, padding=2)
        self.conv3 = nn.Conv2d(num_map, num_channels, 5, padding=2)

    @property
    def descriptor(self) -> ModelDescriptor:
        c = self.hparams["num_channels"]
        return ModelDescriptor(
            arch=self.arch_name, scale=self.scale, in_channels=c, out_channels=c,
            color_space="y" if c == 1 else "rgb", tile_overlap=16,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale > 1:
            x = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.conv3(x)


def hparams_from_state_dict(sd: dict[str, torch.Tensor]) -> dict | None:
    """Recognise an SRCNN state dict (``conv1``/``conv2``/``conv3`` only, 9x9 first kernel). Scale is not stored."""
    if set(sd) != {f"conv{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")}:
        return None
    if sd["conv1.weight"].shape[-1] != 9:
        return None
    return dict(
        num_channels=sd["conv1.weight"].shape[1],
        num_feat=sd["conv1.weight"].shape[0],
        num_map=sd["conv2.weight"].shape[0],
    )
