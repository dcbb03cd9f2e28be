"""What inference needs to know about a network, so that it never guesses.

Modelled on spandrel's model descriptor: scale, channels, size requirements, tiling support.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal


@dataclass(frozen=True)
class ModelDescriptor:
    """Static facts about one built network.

    Attributes:
        arch: architecture family key in ``srcore.archs.ARCHS`` (e.g. ``"rrdbnet"``).
        scale: output size / input size. 1 for discriminators.
        in_channels: channels the network reads (3 for RGB, 1 for a Y-channel model).
        out_channels: channels it writes.
        size_multiple: input height and width must be multiples of this; callers pad (reflect) and crop.
        tileable: whether outputs of overlapping tiles can be blended into a whole (true for every
            fully convolutional or windowed-attention generator; false for discriminators with a linear head).
        value_range: range of input and expected output values.
        color_space: ``"rgb"``, or ``"y"`` for models that see only the luma of YCbCr.
        kind: ``"generator"`` or ``"discriminator"``.
        min_size: smallest input height/width the network accepts (VGG discriminators need an exact size).
        tile_overlap: input pixels neighbouring tiles should share so tiled outputs match untiled ones
            (within 1/255 for the released weights); about twice the context the trained network uses.
        supports_half, supports_bfloat16: whether fp16 / bf16 inference gives sound outputs (as spandrel's
            descriptor says; SwinIR's attention overflows in fp16). ``precision="auto"`` never picks one that
            is ruled out.
    """

    arch: str
    scale: int
    in_channels: int
    out_channels: int
    size_multiple: int = 1
    tileable: bool = True
    value_range: tuple[float, float] = (0.0, 1.0)
    color_space: Literal["rgb", "y"] = "rgb"
    kind: Literal["generator", "discriminator"] = "generator"
    min_size: int = 1
    tile_overlap: int = 32
    supports_half: bool = True
    supports_bfloat16: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelDescriptor:
        data = json.loads(text)
        data["value_range"] = tuple(data["value_range"])
        return cls(**data)
