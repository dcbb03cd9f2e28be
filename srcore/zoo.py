"""Where published weights of registered variants live on this machine."""

from __future__ import annotations

import os
from pathlib import Path

from .archs.registry import ModelVariant


def cache_dir() -> Path:
    """``$SRCORE_CACHE``, else ``$XDG_CACHE_HOME/srcore``, else ``~/.cache/srcore``."""
    if os.environ.get("SRCORE_CACHE"):
        return Path(os.environ["SRCORE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "srcore"


def weights_path(variant: ModelVariant) -> Path:
    """Path of a variant's cached weights file; a clear error says what to put where when it is absent."""
    from .weights import WeightsError

    if variant.url is None:
        raise WeightsError(f"{variant.name}: no published weights are registered; "
                           f"train it or pass a weights file path instead of the name")
    path = cache_dir() / "weights" / variant.filename
    if not path.is_file():
        raise WeightsError(f"{variant.name}: weights not found at {path}; download {variant.url} to that path "
                           f"(or set SRCORE_CACHE), or pass the file's path instead of the name")
    return path
