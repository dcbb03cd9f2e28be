"""Architectures srcore does not implement, loaded through spandrel (the optional ``spandrel`` extra)."""

from __future__ import annotations

import torch
from torch import nn

from .descriptor import ModelDescriptor


class SpandrelModel(nn.Module):
    """Wraps a spandrel ``ImageModelDescriptor``'s network with an srcore descriptor.

    Shapes: input (N, C, H, W) in [0, 1]; output (N, C, H*scale, W*scale), unclamped.
    """

    arch_name = "spandrel"

    def __init__(self, spandrel_descriptor):
        from spandrel import ModelTiling

        super().__init__()
        self.net = spandrel_descriptor.model
        self.hparams = {"spandrel_architecture": str(spandrel_descriptor.architecture.id)}
        req = spandrel_descriptor.size_requirements
        self._descriptor = ModelDescriptor(
            arch=self.arch_name, scale=int(spandrel_descriptor.scale),
            in_channels=int(spandrel_descriptor.input_channels), out_channels=int(spandrel_descriptor.output_channels),
            size_multiple=max(1, int(req.multiple_of)), min_size=max(1, int(req.minimum)),
            supports_half=bool(spandrel_descriptor.supports_half),
            supports_bfloat16=bool(spandrel_descriptor.supports_bfloat16),
            # INTERNAL: the network tiles itself; srcore's tiles would fight it
            tileable=spandrel_descriptor.tiling != ModelTiling.INTERNAL, tile_overlap=64,
        )

    @property
    def descriptor(self) -> ModelDescriptor:
        return self._descriptor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def load_with_spandrel(state_dict: dict[str, torch.Tensor]) -> nn.Module | None:
    """A model for an unknown state dict via spandrel, or None when spandrel is absent or does not know it."""
    try:
        from spandrel import ImageModelDescriptor, ModelLoader
    except ImportError:
        return None
    try:
        descriptor = ModelLoader().load_from_state_dict(state_dict)
    except Exception:
        return None
    if not isinstance(descriptor, ImageModelDescriptor):
        return None
    return SpandrelModel(descriptor).eval()
