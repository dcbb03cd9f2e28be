"""Weights by name against a real local HTTP server: downloads verified, atomic, cached; every file loaded by
name (cached or bundled) checked against the registry's SHA-256; offline errors say what to do."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import threading
from functools import partial
from pathlib import Path

import pytest
import torch

import srcore
import srcore.zoo
from srcore.archs.registry import VARIANTS, ModelVariant
from srcore.model_errors import DownloadError, WeightsError
from srcore.zoo import cached_path, download, weights_path


@pytest.fixture()
def server(tmp_path):
    """Serve tmp_path/www on a loopback port."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def tiny_weights(path) -> str:
    torch.manual_seed(0)
    torch.save({"params": srcore.create_model("realesr-animevideov3", num_feat=4, num_conv=1).state_dict()}, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_good_hash_gives_a_cached_file_that_loads(server):
    root, url = server
    digest = tiny_weights(root / "tiny.pth")
    variant = ModelVariant("tiny", "srvgg", dict(num_feat=4, num_conv=1), url=f"{url}/tiny.pth", sha256=digest)
    path = weights_path(variant)
    assert path == cached_path(variant) and path.read_bytes() == (root / "tiny.pth").read_bytes()
    assert list(path.parent.iterdir()) == [path]  # no temporary left
    (root / "tiny.pth").unlink()  # cached: no second download
    assert weights_path(variant) == path
    assert srcore.load_model(path).descriptor.scale == 4


def test_bad_hash_is_an_error_naming_both_digests_and_leaves_no_file(server):
    root, url = server
    digest = tiny_weights(root / "tiny.pth")
    variant = ModelVariant("tiny", "srvgg", {}, url=f"{url}/tiny.pth", sha256="0" * 64)
    with pytest.raises(WeightsError, match=f"SHA-256 mismatch: expected {'0' * 64}, got {digest}"):
        weights_path(variant)
    folder = cached_path(variant).parent
    assert not folder.exists() or list(folder.iterdir()) == []


def test_missing_file_and_offline_errors_say_what_to_do(server, tmp_path):
    root, url = server
    with pytest.raises(DownloadError, match="download it by hand to"):
        download(f"{url}/missing.pth", tmp_path / "dl" / "missing.pth", "0" * 64, progress=False)
    assert list((tmp_path / "dl").iterdir()) == []
    variant = srcore.VARIANTS["realesrgan-x4plus"]
    with pytest.raises(WeightsError, match=r"weights not found at .*RealESRGAN_x4plus\.pth; download https://"):
        weights_path(variant, allow_download=False)


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupted_cached_download_is_refused_naming_both_digests(server, monkeypatch):
    root, url = server
    digest = tiny_weights(root / "tiny.pth")
    variant = ModelVariant("tiny", "srvgg", dict(num_feat=4, num_conv=1), url=f"{url}/tiny.pth", sha256=digest)
    monkeypatch.setitem(VARIANTS, "tiny", variant)
    srcore.load_model("tiny", download=True)  # downloaded, verified (the tests run with SRCORE_OFFLINE)
    srcore.load_model("tiny")  # cached, verified
    path = cached_path(variant)
    flip_one_byte(path)
    corrupt = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(WeightsError) as err:
        srcore.load_model("tiny")
    assert str(path) in str(err.value) and f"expected {digest}, got {corrupt}" in str(err.value)


def test_a_registered_variants_cached_file_must_be_the_published_one(tmp_path):
    """A file put in the cache by hand under realesr-animevideov3's name is checked like a download."""
    variant = VARIANTS["realesr-animevideov3"]
    path = cached_path(variant)
    path.parent.mkdir(parents=True)
    other = tiny_weights(path)
    with pytest.raises(WeightsError, match=f"expected {variant.sha256}, got {other}"):
        srcore.load_model("realesr-animevideov3")


@pytest.mark.parametrize("name", [n for n, v in VARIANTS.items() if v.bundled])
def test_bundled_files_have_their_registered_digest(name):
    path = weights_path(VARIANTS[name])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == VARIANTS[name].sha256


def test_a_corrupted_bundled_file_is_refused_naming_both_digests(tmp_path, monkeypatch):
    variant = VARIANTS["srcore-compact-x4"]
    copy = tmp_path / variant.bundled
    shutil.copyfile(weights_path(variant), copy)
    flip_one_byte(copy)
    monkeypatch.setattr(srcore.zoo, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(WeightsError) as err:
        srcore.load_model("srcore-compact-x4")
    actual = hashlib.sha256(copy.read_bytes()).hexdigest()
    assert str(copy) in str(err.value) and f"expected {variant.sha256}, got {actual}" in str(err.value)


def test_a_verified_file_is_hashed_once_per_process(tmp_path, monkeypatch):
    path = tmp_path / "bundled.safetensors"
    digest = tiny_weights(path)
    hashed = []

    def counting_sha256(p: Path) -> str:
        hashed.append(p)
        return hashlib.sha256(p.read_bytes()).hexdigest()

    monkeypatch.setattr(srcore.zoo, "sha256_file", counting_sha256)
    with monkeypatch.context() as settled:
        settled.setattr(srcore.zoo, "RACY_NS", 0)  # as if written long ago
        for _ in range(3):
            srcore.zoo.check_sha256(path, digest, "tiny", "-")
    assert len(hashed) == 1
    os.utime(path)  # touched now
    for _ in range(2):  # a file written within the last seconds is hashed every time: a rewrite in the same
        srcore.zoo.check_sha256(path, digest, "tiny", "-")  # timestamp tick would look unchanged
    assert len(hashed) == 3
    flip_one_byte(path)  # rewritten at once, same size: checked again
    with pytest.raises(WeightsError, match=f"expected {digest}"):
        srcore.zoo.check_sha256(path, digest, "tiny", "-")


def test_every_weights_file_in_the_registry_has_a_digest():
    with pytest.raises(ValueError, match="needs its SHA-256"):
        ModelVariant("unpinned", "srvgg", url="https://example.invalid/unpinned.pth")
    for variant in VARIANTS.values():
        if variant.url or variant.bundled:
            assert len(variant.sha256) == 64 and int(variant.sha256, 16) >= 0, variant.name
