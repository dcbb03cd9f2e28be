"""srcore: deep-learning super-resolution, from single images to archives on Ray.

The core library imports no Ray. Start with::

    import srcore
    srcore.list_models()
    model = srcore.load_model("path/to/RealESRGAN_x4plus.pth")   # or a registered name
    model.descriptor                                              # scale, channels, size multiple, ...
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# The names below load their module (and torch) on first use, not with ``import srcore``: a process that only
# decodes, encodes or samples patches (a Ray Data worker) then skips torch's seconds of imports.
_EXPORTS = {
    "ARCHS": "srcore.archs", "ModelDescriptor": "srcore.archs",
    "VARIANTS": "srcore.archs.registry", "ModelVariant": "srcore.archs.registry",
    "create_model": "srcore.archs.registry", "describe": "srcore.archs.registry",
    "list_models": "srcore.archs.registry",
    "Upscaler": "srcore.inference", "interpolate_models": "srcore.interpolate",
    "WeightsError": "srcore.model_errors", "load_model": "srcore.weights", "read_state_dict": "srcore.weights",
    "save_model": "srcore.weights",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # once: later lookups are plain attribute reads
        return value
    raise AttributeError(f"module 'srcore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
