"""Training data without Ray: sub-image extraction (for prepared datasets), random patches, augmentation."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..imageio import decode, to_8bit


def crop_positions(length: int, crop: int, step: int, thresh: int = 0) -> list[int]:
    """BasicSR's extract_subimages positions: every ``step``, plus a last crop flush with the end when
    more than ``thresh`` pixels would otherwise be left out."""
    if length <= crop:
        return [0]
    positions = list(range(0, length - crop + 1, step))
    if length - (positions[-1] + crop) > thresh:
        positions.append(length - crop)
    return positions


def extract_subimages(image: np.ndarray, crop: int = 480, step: int = 240, thresh: int = 0
                      ) -> list[tuple[int, int, np.ndarray]]:
    """(y, x, crop) sub-images of an (H, W, C) image; images smaller than ``crop`` come whole."""
    h, w = image.shape[:2]
    return [(y, x, image[y : y + crop, x : x + crop]) for y in crop_positions(h, crop, step, thresh)
            for x in crop_positions(w, crop, step, thresh)]


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def decode_rgb(data: bytes, name: str) -> np.ndarray:
    """Training images as 8-bit RGB (gray replicated, alpha dropped, 16-bit reduced)."""
    pixels = to_8bit(decode(data, name).pixels)
    c = pixels.shape[2]
    if c in (1, 2):
        return np.repeat(pixels[..., :1], 3, axis=2)
    return np.ascontiguousarray(pixels[..., :3])


def random_patch(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random size x size crop; smaller images are reflect-padded first."""
    h, w = image.shape[:2]
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect" if ph < h and pw < w else "edge")
        h, w = image.shape[:2]
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    return image[y : y + size, x : x + size]


def augment(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal flip, vertical flip and transpose: the 8 dihedral variants, as EDSR/BasicSR train."""
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if rng.random() < 0.5:
        patch = patch[::-1]
    if rng.random() < 0.5:
        patch = patch.transpose(1, 0, 2)
    return np.ascontiguousarray(patch)


def sample_patches(images: list[np.ndarray], size: int, per_image: int, rng: np.random.Generator) -> np.ndarray:
    """(len(images) * per_image, size, size, 3) uint8 augmented random patches."""
    return np.stack([augment(random_patch(im, size, rng), rng) for im in images for _ in range(per_image)])
