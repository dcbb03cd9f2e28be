"""Published weights of registered variants: where they are cached, and a safe download.

Downloads stream to a temporary file beside the target, are hashed (SHA-256) on the way, and are renamed
into place only when complete and matching; a failed or mismatching download leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .archs.registry import ModelVariant
from .atomic import atomic_path


class DownloadError(RuntimeError):
    """A download that failed or did not match its expected hash."""


def cache_dir() -> Path:
    """``$SRCORE_CACHE``, else ``$XDG_CACHE_HOME/srcore``, else ``~/.cache/srcore``."""
    if os.environ.get("SRCORE_CACHE"):
        return Path(os.environ["SRCORE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "srcore"


def cached_path(variant: ModelVariant) -> Path:
    return cache_dir() / "weights" / variant.filename


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, target: Path, sha256: str | None, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``target`` atomically, checking ``sha256`` when given."""
    digest = hashlib.sha256()
    try:
        with atomic_path(target) as tmp:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress,
                          file=sys.stderr) as bar:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        out.write(block)
                        digest.update(block)
                        bar.update(len(block))
            if sha256 is not None and digest.hexdigest() != sha256.lower():
                raise DownloadError(f"{url}: SHA-256 mismatch: expected {sha256}, got {digest.hexdigest()}; "
                                    f"the file was discarded")
    except DownloadError:
        raise
    except OSError as exc:
        raise DownloadError(f"{url}: download failed ({exc}); download it by hand to {target}") from None
    return target


def weights_path(variant: ModelVariant, allow_download: bool = True) -> Path:
    """Path of a variant's weights: the cached file, else a verified download into the cache.

    Offline, the error names the URL to fetch and the path to put it at.
    """
    from .weights import WeightsError

    if variant.bundled:
        path = Path(__file__).parent / "pretrained" / variant.bundled
        if not path.is_file():
            raise WeightsError(f"{variant.name}: bundled weights {path} are missing from this installation")
        return path
    if variant.url is None:
        raise WeightsError(f"{variant.name}: no published weights are registered; "
                           f"train it or pass a weights file path instead of the name")
    path = cached_path(variant)
    if path.is_file():
        if variant.sha256 and sha256_file(path) != variant.sha256:
            raise WeightsError(f"{path}: SHA-256 does not match the registry's for {variant.name}; delete it")
        return path
    if not allow_download:
        raise WeightsError(f"{variant.name}: weights not found at {path}; download {variant.url} to that path "
                           f"(or set SRCORE_CACHE), or pass the file's path instead of the name")
    try:
        return download(variant.url, path, variant.sha256)
    except DownloadError as exc:
        raise WeightsError(f"{variant.name}: {exc}") from None


def install_file(src: Path, variant: ModelVariant) -> Path:
    """Copy a hand-downloaded weights file into the cache under the name the registry expects."""
    target = cached_path(variant)
    with atomic_path(target) as tmp:
        shutil.copyfile(src, tmp)
    return target
