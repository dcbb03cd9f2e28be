"""Weights files of registered variants: where they are (download cache, bundled), a safe download, and the
SHA-256 check every file passes before it is loaded by name.

Downloads stream to a temporary file beside the target, are hashed (SHA-256) on the way, and are renamed
into place only when complete and matching; a failed or mismatching download leaves nothing behind.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import time
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .archs.registry import ModelVariant
from .atomic import atomic_path
from .model_errors import DownloadError, WeightsError

PRETRAINED_DIR = Path(__file__).parent / "pretrained"  # the bundled weights, shipped in the wheel


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


@functools.lru_cache(maxsize=64)
def _settled_digest(path: str, identity: tuple[int, ...]) -> str:
    # the file's identity is part of the key: a file replaced or rewritten in place is hashed again
    return sha256_file(Path(path))


RACY_NS = 2_000_000_000  # a file changed this recently may change again within the same mtime tick


def _file_digest(path: Path) -> str:
    """The file's SHA-256, remembered per (path, inode, size, mtime, ctime) once the file has been left alone
    for a while (git's "racily clean" rule: a rewrite within one timestamp tick would look unchanged)."""
    stat = path.stat()
    if time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) < RACY_NS:
        return sha256_file(path)
    identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    return _settled_digest(str(path.resolve()), identity)


def check_sha256(path: Path, expected: str, what: str, remedy: str) -> None:
    """Raise WeightsError naming ``path``, the expected and the actual SHA-256 unless they match.

    A file already verified in this process (same path, inode, size and times) is not hashed again, so
    loading a model repeatedly costs one hash.
    """
    actual = _file_digest(path)
    if actual != expected.lower():
        raise WeightsError(f"{path}: SHA-256 mismatch for {what}: expected {expected}, got {actual}; "
                           f"the file is corrupt or not the registered one; {remedy}")


def download(url: str, target: Path, sha256: str, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``target`` atomically; a file whose SHA-256 is not ``sha256`` is discarded."""
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
            if digest.hexdigest() != sha256.lower():
                raise DownloadError(f"{url}: SHA-256 mismatch: expected {sha256}, got {digest.hexdigest()}; "
                                    f"the file was discarded")
    except DownloadError:
        raise
    except OSError as exc:
        raise DownloadError(f"{url}: download failed ({exc}); download it by hand to {target}") from None
    return target


def weights_path(variant: ModelVariant, allow_download: bool = True) -> Path:
    """Path of a variant's weights, checked against the registry's SHA-256: the bundled file, the cached
    download, else a verified download into the cache.

    Offline, the error names the URL to fetch and the path to put it at.
    """
    if variant.bundled:
        path = PRETRAINED_DIR / variant.bundled
        if not path.is_file():
            raise WeightsError(f"{variant.name}: bundled weights {path} are missing from this installation")
        check_sha256(path, variant.sha256, f"the bundled {variant.name}",
                     "reinstall srcore (a deliberate re-export records its new digest in srcore/archs/registry.py)")
        return path
    if variant.url is None:
        raise WeightsError(f"{variant.name}: no published weights are registered; "
                           f"train it or pass a weights file path instead of the name")
    path = cached_path(variant)
    if path.is_file():
        check_sha256(path, variant.sha256, variant.name, f"delete it and load {variant.name} again to re-download")
        return path
    if not allow_download:
        raise WeightsError(f"{variant.name}: weights not found at {path}; download {variant.url} to that path "
                           f"(or set SRCORE_CACHE), or pass the file's path instead of the name")
    try:
        return download(variant.url, path, variant.sha256)
    except DownloadError as exc:
        raise WeightsError(f"{variant.name}: {exc}") from None
