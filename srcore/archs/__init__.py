"""Network architectures, one module per family, with official parameter names."""

from .descriptor import ModelDescriptor
from .discriminators import UNetDiscriminatorSN, VGGStyleDiscriminator
from .rrdbnet import RRDBNet
from .srcnn import SRCNN
from .srresnet import SRResNet
from .srvgg import SRVGGNetCompact
from .swinir import SwinIR

# arch key -> class; the key is what saved models and descriptors record
ARCHS = {cls.arch_name: cls for cls in (SRCNN, SRResNet, RRDBNet, SRVGGNetCompact, SwinIR,
                                        VGGStyleDiscriminator, UNetDiscriminatorSN)}

__all__ = ["ARCHS", "ModelDescriptor", "SRCNN", "SRResNet", "RRDBNet", "SRVGGNetCompact", "SwinIR",
           "VGGStyleDiscriminator", "UNetDiscriminatorSN"]
