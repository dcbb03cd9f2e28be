"""Network interpolation: one model's weights blended with another's of the same architecture."""

from __future__ import annotations

import copy

from torch import nn


def interpolate_models(model_a: nn.Module, model_b: nn.Module, alpha: float) -> nn.Module:
    """Network interpolation (ESRGAN) / deep network interpolation (Real-ESRGAN DNI):
    weights alpha * A + (1 - alpha) * B of two models of one architecture.

    For example A = a PSNR-oriented model and B = its GAN fine-tune: alpha trades realism for fidelity.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if type(model_a) is not type(model_b) or getattr(model_a, "hparams", None) != getattr(model_b, "hparams", None):
        raise ValueError("network interpolation needs two models of the same architecture and configuration")
    sa, sb = model_a.state_dict(), model_b.state_dict()
    mixed = {k: alpha * v + (1 - alpha) * sb[k] if v.is_floating_point() else v for k, v in sa.items()}
    out = copy.deepcopy(model_a)
    out.load_state_dict(mixed)
    return out
