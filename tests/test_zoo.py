"""Weight downloads against a real local HTTP server: verified, atomic, cached; offline errors say what to do."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial

import pytest
import torch

import srcore
from srcore.archs.registry import ModelVariant
from srcore.weights import WeightsError
from srcore.zoo import DownloadError, cached_path, download, weights_path


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


def test_bad_hash_is_an_error_and_leaves_no_file(server):
    root, url = server
    tiny_weights(root / "tiny.pth")
    variant = ModelVariant("tiny", "srvgg", {}, url=f"{url}/tiny.pth", sha256="0" * 64)
    with pytest.raises(WeightsError, match="SHA-256 mismatch"):
        weights_path(variant)
    folder = cached_path(variant).parent
    assert not folder.exists() or list(folder.iterdir()) == []


def test_missing_file_and_offline_errors_say_what_to_do(server, tmp_path):
    root, url = server
    with pytest.raises(DownloadError, match="download it by hand to"):
        download(f"{url}/missing.pth", tmp_path / "dl" / "missing.pth", None, progress=False)
    assert list((tmp_path / "dl").iterdir()) == []
    variant = srcore.VARIANTS["realesrgan-x4plus"]
    with pytest.raises(WeightsError, match=r"weights not found at .*RealESRGAN_x4plus\.pth; download https://"):
        weights_path(variant, allow_download=False)
