"""srcore: deep-learning super-resolution, from single images to archives on Ray.

The core library imports no Ray. Start with::

    import srcore
    srcore.list_models()
    model = srcore.load_model("path/to/RealESRGAN_x4plus.pth")   # or a registered name
    model.descriptor                                              # scale, channels, size multiple, ...
"""

__version__ = "0.1.0"

from .archs import ARCHS, ModelDescriptor  # noqa: E402
from .archs.registry import VARIANTS, ModelVariant, create_model, describe, list_models  # noqa: E402
from .inference import Upscaler, interpolate_models  # noqa: E402
from .weights import WeightsError, load_model, read_state_dict, save_model  # noqa: E402

__all__ = ["ARCHS", "VARIANTS", "ModelDescriptor", "ModelVariant", "Upscaler", "WeightsError", "create_model",
           "describe", "interpolate_models", "list_models", "load_model", "read_state_dict", "save_model",
           "__version__"]
