"""Small building blocks shared by several architectures."""

from __future__ import annotations

import torch
from torch import nn


def scaled_kaiming_init(modules: list[nn.Module], scale: float = 1.0) -> None:
    """Kaiming-normal init scaled down, as ESRGAN does for residual branches so deep nets start near identity."""
    for module in modules:
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
                m.weight.data *= scale
                if m.bias is not None:
                    m.bias.data.zero_()


def count_parameters(model: nn.Module) -> int:
    """Number of learnable parameters (buffers such as BatchNorm statistics are not counted)."""
    return sum(p.numel() for p in model.parameters())


def check_multiple(x: torch.Tensor, multiple: int, arch: str) -> None:
    """Raise a clear error when an input's spatial size is not a multiple the network needs."""
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(
            f"{arch}: input height and width must be multiples of {multiple}, got {h}x{w}; "
            "pad the input (the Upscaler does this from the model descriptor)"
        )


def num_blocks(state_dict: dict, prefix: str) -> int:
    """Count the indexed children ``prefix.0``, ``prefix.1``, ... present in a state dict."""
    indices = {int(k[len(prefix) :].split(".", 1)[0]) for k in state_dict if k.startswith(prefix)}
    return max(indices) + 1 if indices else 0
