"""A command's ``main(argv)`` called in the test process, its output captured as a process's would be."""

from __future__ import annotations

import contextlib
import io
import subprocess
from collections.abc import Callable


def run_main(main: Callable[[list[str]], int], argv: list[str], command: list[str]) -> subprocess.CompletedProcess:
    """``main(argv)`` with stdout and stderr captured; argparse's exits become the return code. ``command``:
    the process it stands for (shown in failures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors and --help
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return subprocess.CompletedProcess([*command, *argv], code, out.getvalue(), err.getvalue())


def srcore_cli(*args: str) -> subprocess.CompletedProcess:
    """``srcore ARGS`` as the command line's ``main`` in this process (test_cli's test_version runs the process)."""
    from srcore.cli import main

    return run_main(main, list(args), ["srcore"])
