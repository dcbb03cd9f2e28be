"""Network architectures, one module per family, with official parameter names."""

from .architecture import ARCHITECTURES, Architecture
from .descriptor import ModelDescriptor
from .discriminators import UNetDiscriminatorSN, VGGStyleDiscriminator
from .rrdbnet import RRDBNet
from .srcnn import SRCNN
from .srresnet import SRResNet
from .srvgg import SRVGGNetCompact
from .swinir import SwinIR

# arch key -> class; the key is what saved models and descriptors record
ARCHS = {key: entry.network for key, entry in ARCHITECTURES.items()}

__all__ = ["ARCHITECTURES", "ARCHS", "Architecture", "ModelDescriptor", "SRCNN", "SRResNet", "RRDBNet",
           "SRVGGNetCompact", "SwinIR", "VGGStyleDiscriminator", "UNetDiscriminatorSN"]
