"""A PNG writer fed band by band: memory holds one band of rows, whatever the image's size.

Pillow and OpenCV encode a PNG only from a whole image in memory; an x4 output of a 12000x12000 input is
6.9 GB of 8-bit RGB. This writer takes rows as the engine finishes them (:meth:`Upscaler.bands`), filters them
with PNG's "Up" filter (each byte minus the byte above: one vectorised subtraction per band) and deflates them
with zlib, writing IDAT chunks as they fill. 8 and 16 bits, gray, gray + alpha, RGB and RGBA.

Metadata chunks (ICC profile, text, XMP, EXIF) go before the pixels, where readers (and
:func:`srcore.imageio.read_provenance` reading the first 64 KB) look for them.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> gray, gray + alpha, RGB, RGBA
IDAT_BYTES = 1 << 20  # deflated bytes per IDAT chunk
FILTER_UP = 2


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


class PngWriter:
    """Write a (height, width, channels) uint8/uint16 image to ``file`` in bands of rows, top to bottom.

    ``chunks``: (type, data) ancillary chunks written before the pixels. ``level``: zlib level 0-9.
    """

    def __init__(self, file: BinaryIO, width: int, height: int, channels: int, dtype: np.dtype, level: int = 1,
                 chunks: list[tuple[bytes, bytes]] = ()):
        if channels not in COLOUR_TYPES:
            raise ValueError(f"PNG holds 1 to 4 channels, got {channels}")
        if np.dtype(dtype) not in (np.dtype(np.uint8), np.dtype(np.uint16)):
            raise ValueError(f"PNG holds 8 or 16 bits, got {np.dtype(dtype)}")
        if not (0 < width < 2**31 and 0 < height < 2**31):
            raise ValueError(f"PNG sizes are 1 to 2^31-1, got {width}x{height}")
        self.file, self.width, self.height, self.channels = file, width, height, channels
        self.dtype = np.dtype(dtype)
        self.rows_written = 0
        self._previous: np.ndarray | None = None  # the last row written, as bytes (the Up filter's reference)
        self._deflate = zlib.compressobj(level)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        depth = 8 * self.dtype.itemsize
        file.write(SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth,
                                                          COLOUR_TYPES[channels], 0, 0, 0)))
        for kind, data in chunks:
            file.write(chunk(kind, data))

    def write(self, rows: np.ndarray) -> None:
        """The next rows: (n, width, channels) of the writer's dtype."""
        if rows.ndim == 2:
            rows = rows[..., None]
        if rows.shape[1:] != (self.width, self.channels) or rows.dtype != self.dtype:
            raise ValueError(f"expected rows of shape (n, {self.width}, {self.channels}) {self.dtype}, "
                             f"got {rows.shape} {rows.dtype}")
        if self.rows_written + rows.shape[0] > self.height:
            raise ValueError(f"more rows than the image's {self.height}")
        if rows.shape[0] == 0:
            return
        raw = np.ascontiguousarray(rows, dtype=self.dtype.newbyteorder(">")).view(np.uint8)
        raw = raw.reshape(rows.shape[0], -1)
        filtered = np.empty((raw.shape[0], raw.shape[1] + 1), np.uint8)
        filtered[:, 0] = FILTER_UP
        # each byte minus the one above, modulo 256 (the row above the image counts as zeros)
        np.subtract(raw[1:], raw[:-1], out=filtered[1:, 1:])
        if self._previous is None:
            filtered[0, 1:] = raw[0]
        else:
            np.subtract(raw[0], self._previous, out=filtered[0, 1:])
        self._previous = raw[-1].copy()
        self.rows_written += rows.shape[0]
        self._queue(self._deflate.compress(filtered.data))

    def close(self) -> None:
        """Finish the image (every row must have been written) and write the end chunk; the file stays open."""
        if self.rows_written != self.height:
            raise ValueError(f"{self.rows_written} of {self.height} rows written")
        self._queue(self._deflate.flush())
        self._flush_idat()
        self.file.write(chunk(b"IEND", b""))

    def _queue(self, data: bytes) -> None:
        if data:
            self._pending.append(data)
            self._pending_bytes += len(data)
        if self._pending_bytes >= IDAT_BYTES:
            self._flush_idat()

    def _flush_idat(self) -> None:
        if self._pending:
            self.file.write(chunk(b"IDAT", b"".join(self._pending)))
        self._pending, self._pending_bytes = [], 0
