"""Shared fixtures. Data from ../shared is found through SRCORE_SHARED and skipped when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from srcore.zoo import cache_dir

# the user's weights cache as the session started, before each test gets an empty one: converted perceptual
# backbones (`make perceptual-weights`) are read from here
USER_CACHE = cache_dir()
SHARED = Path(os.environ.get("SRCORE_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared")).resolve()


def shared_path(relative: str) -> Path:
    """A file under ../shared, or skip the test with the reason when it is not there (a user's fresh clone)."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} not found: set SRCORE_SHARED to the shared data folder to run this test")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep tests away from the user's real weights cache, and from the network."""
    monkeypatch.setenv("SRCORE_CACHE", str(tmp_path_factory.mktemp("srcore-cache")))
    monkeypatch.setenv("SRCORE_OFFLINE", "1")
