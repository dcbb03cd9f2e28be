"""JPEG on the model's device: nvJPEG decodes inputs and encodes outputs where the model runs on a CUDA GPU
(torchvision.io's codecs), so the host's cores are left for PNG and writing. Pixels cross to the device and
back as uint8; the CPU codecs (Pillow) stay the fallback, and the only codecs on CPUs.

An nvJPEG file is a bare JFIF stream: :func:`encode_jpeg` gives it the metadata segments Pillow writes for the
same picture (EXIF, XMP provenance, ICC profile), so both paths carry one catalogue.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable

import numpy as np
import torch

SOI, SOS = b"\xff\xd8", 0xDA


_NVJPEG = threading.Lock()


@contextlib.contextmanager
def _exclusive(device: torch.device):
    """One nvJPEG call at a time in this process, after the work queued on the caller's stream: torchvision's
    CUDA codecs have written into memory that stream was still reading (vision PR 9606) and produced corrupt
    files when threads encoded at once (issue 9060), and a GPU actor runs two calls on two threads."""
    if torch.device(device).type != "cuda":
        yield
        return
    with _NVJPEG:
        torch.cuda.current_stream(device).synchronize()
        yield


@contextlib.contextmanager
def _quiet():
    """torchvision 0.29 marks its image codecs deprecated in favour of TorchCodec, which the GPU hosts lack."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(deprecated|TorchCodec).*")
        yield


def jpeg_decoder(device: torch.device | str) -> Callable[[bytes], np.ndarray]:
    """(JPEG bytes) -> (H, W, 3) uint8 host pixels as stored (no EXIF orientation), decoded on ``device``:
    :func:`srcore.imageio.decode`'s ``jpeg_pixels``."""
    from torchvision.io import ImageReadMode, decode_jpeg

    device = torch.device(device)

    def decode(data: bytes) -> np.ndarray:
        with _exclusive(device), _quiet():
            chw = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB,
                              device=device)
            return chw.permute(1, 2, 0).contiguous().cpu().numpy()

    return decode


def can_encode(pixels_shape: tuple[int, ...], dtype, source_mode: str) -> bool:
    """Does :func:`encode_jpeg` make this output as Pillow's path would (8-bit RGB; not alpha, which Pillow
    composites on a background, not gray, and not a CMYK source, which Pillow writes back as CMYK)?"""
    return len(pixels_shape) == 3 and pixels_shape[2] == 3 and np.dtype(dtype) == np.uint8 and source_mode != "CMYK"


def encode_jpegs(pixels: list[torch.Tensor | np.ndarray], quality: int, metadata_from: list[bytes],
                 device=None) -> list[bytes]:
    """(H, W, 3) uint8 pixels (tensors on the device, or host pixels uploaded to ``device``) -> JPEG files
    encoded there in one batch, each with the APP segments (EXIF, XMP, ICC) of its ``metadata_from`` file, a
    JPEG that Pillow wrote with the output's metadata (see :func:`srcore.upscale.encode_output`)."""
    from torchvision.io import encode_jpeg as tv_encode

    images = [(torch.from_numpy(np.ascontiguousarray(p)).to(device) if isinstance(p, np.ndarray) else p)
              .permute(2, 0, 1).contiguous() for p in pixels]
    with _exclusive(images[0].device), _quiet():
        bodies = [body.cpu().numpy().tobytes() for body in tv_encode(images, quality=quality)]
    return [splice_segments(body, header) for body, header in zip(bodies, metadata_from, strict=True)]


def segments(data: bytes) -> list[tuple[int, bytes]]:
    """The marker segments of a JPEG before its scan: (marker, the segment's whole bytes)."""
    if not data.startswith(SOI):
        raise ValueError("not a JPEG stream")
    out, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == SOS:
            break
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        out.append((marker, data[i : i + 2 + length]))
        i += 2 + length
    return out


def splice_segments(body: bytes, metadata_from: bytes) -> bytes:
    """``body`` (a JPEG) with the APP segments of ``metadata_from`` (and none of its own; its JFIF APP0 where
    ``metadata_from`` has none), where libjpeg places them: SOI, APP0 (JFIF, with the resolution), APP1 EXIF,
    APP1 XMP, APP2 ICC, APP13 Photoshop / IPTC, tables, scan."""
    theirs = segments(metadata_from)
    wanted = [seg for marker, seg in theirs if 0xE1 <= marker <= 0xEF]
    own = segments(body)
    scan = 2 + sum(len(seg) for _, seg in own)
    app0 = [seg for marker, seg in theirs if marker == 0xE0] or [seg for marker, seg in own if marker == 0xE0]
    tables = [seg for marker, seg in own if not 0xE0 <= marker <= 0xEF]
    return SOI + b"".join(app0 + wanted + tables) + body[scan:]
