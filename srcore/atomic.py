"""Write files so that readers never see a partial one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)  # mkstemp makes 0600 files; give the result the permissions a plain open() would
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def check_writable_folder(folder: str | os.PathLike) -> None:
    """Could files be written in ``folder``? Creates it (and its parents) and writes a file there, then
    removes both again: a check leaves nothing behind, whatever fails after it. OSError says why not."""
    folder = Path(folder).absolute()
    missing = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".srcore-check-"):
            pass
    finally:
        for made in missing:  # deepest first
            with contextlib.suppress(OSError):
                made.rmdir()


def unwritable(location: str, exc: OSError) -> str:
    """The one-line error for an output folder or prefix that cannot be written."""
    return f"--output {location}: cannot write there ({exc.strerror or type(exc).__name__})"
