"""One entry per architecture family: its network class and how to recognise its state dicts (spandrel's shape).

The network class builds the model, and the built model's ``descriptor`` states its size and precision
requirements (they depend on the hyper-parameters, e.g. SwinIR's window, RRDBNet's pixel-unshuffle).
``ARCHITECTURES`` is the only list of families; ``srcore.archs.ARCHS`` and the registry derive from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from . import discriminators, rrdbnet, srcnn, srresnet, srvgg, swinir
from .descriptor import ModelDescriptor

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Architecture:
    """A network family.

    Attributes:
        network: the ``nn.Module`` class; its ``arch_name`` is the key saved models and descriptors record.
        detect: hyper-parameters read from a state dict's key names and tensor shapes, or None when the
            state dict is not this family's.
    """

    network: type[nn.Module]
    detect: Callable[[StateDict], dict | None]

    @property
    def key(self) -> str:
        return self.network.arch_name

    def build(self, kwargs: dict) -> nn.Module:
        """The network built with constructor arguments ``kwargs``, with a clear error on bad ones."""
        try:
            return self.network(**kwargs)
        except TypeError as exc:
            raise TypeError(f"bad arguments for {self.key}: {exc}") from None

    def describe(self, kwargs: dict) -> ModelDescriptor:
        """The descriptor of the network ``kwargs`` build, on the meta device so nothing is allocated."""
        with torch.device("meta"):
            return self.build(kwargs).descriptor


# In detection order, most specific first: SwinIR and RRDBNet share ``conv_first`` with SRResNet.
ARCHITECTURES: dict[str, Architecture] = {
    entry.key: entry
    for entry in (
        Architecture(swinir.SwinIR, swinir.hparams_from_state_dict),
        Architecture(rrdbnet.RRDBNet, rrdbnet.hparams_from_state_dict),
        Architecture(srresnet.SRResNet, srresnet.hparams_from_state_dict),
        Architecture(srvgg.SRVGGNetCompact, srvgg.hparams_from_state_dict),
        Architecture(srcnn.SRCNN, srcnn.hparams_from_state_dict),
        Architecture(discriminators.UNetDiscriminatorSN, discriminators.unet_hparams_from_state_dict),
        Architecture(discriminators.VGGStyleDiscriminator, discriminators.vgg_hparams_from_state_dict),
    )
}


def get_architecture(key: str) -> Architecture:
    """The family saved models and variants call ``key``; a KeyError lists the known ones."""
    try:
        return ARCHITECTURES[key]
    except KeyError:
        raise KeyError(f"unknown architecture {key!r}; known: {', '.join(sorted(ARCHITECTURES))}") from None


def detect_architecture(state_dict: StateDict) -> tuple[str, dict] | None:
    """The family key and hyper-parameters of a state dict, from key names and tensor shapes; None if unknown."""
    for entry in ARCHITECTURES.values():
        hparams = entry.detect(state_dict)
        if hparams is not None:
            return entry.key, hparams
    return None
