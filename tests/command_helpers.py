"""A command's ``main(argv)`` called in the test process, its output captured as a process's would be."""

from __future__ import annotations

import contextlib
import io
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image


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


def load_job(name: str):
    """A jobs/ script as a module, to call its ``main`` in this process (as ``__main__`` the script calls it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"job_{name}", Path(__file__).parents[1] / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clash_folder(folder):
    """x.jpg, x.jpeg, x.png, x.bmp and x.tif: five different images that want three output names."""
    folder.mkdir(parents=True)
    for i, suffix in enumerate(("jpg", "jpeg", "png", "bmp", "tif")):
        Image.fromarray(np.full((8, 10, 3), 40 * i, np.uint8)).save(folder / f"x.{suffix}")
    return folder


def expected_clash_outputs(folder: str = "coll") -> list[str]:
    """The output names of :func:`clash_folder`'s inputs when ``folder`` is where they lie under the input
    folder or prefix: each clashing one carries a short hash of its relative key (``coll/x.jpg``)."""
    import hashlib

    short = {s: hashlib.sha1(f"{folder}/x.{s}".encode()).hexdigest()[:8] for s in ("jpg", "jpeg", "png", "bmp")}
    return sorted([f"x-{short['jpg']}.jpg", f"x-{short['jpeg']}.jpg", f"x-{short['png']}.png",
                   f"x-{short['bmp']}.png", "x.tif"])


def clash_source(output_name: str, folder: str = "coll") -> str:
    """The input an output of :func:`expected_clash_outputs` was made from."""
    import hashlib

    if output_name == "x.tif":
        return "x.tif"
    return next(f"x.{s}" for s in ("jpg", "jpeg", "png", "bmp")
                if hashlib.sha1(f"{folder}/x.{s}".encode()).hexdigest()[:8] in output_name)
