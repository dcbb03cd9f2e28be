"""The wheel is the product: built as a release is, installed into clean virtualenvs outside the repository,
it runs `srcore bucket`, `srcore evaluate` and `srcore train` from what it carries, each extra installs and
imports alone, a missing extra is named in one line, and another distribution's top-level `pipelines` is
reported, never left to break srcore silently.

The clean environments get their third-party packages from this one without its srcore: an overlay folder of
links to exactly the distributions that srcore's requirements (and the extras asked for) reach, on their path
through a .pth file. `pip install --no-index` then resolves the wheel's requirements against them, as it would
against an index, and fails on any requirement the overlay lacks; nothing is downloaded.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from conftest import TEST_RAY_ENV
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(sysconfig.get_paths()["purelib"])  # this environment's packages
EXTRA_IMPORTS = {  # what each extra makes importable, checked with only the core and that extra installed
    "ray": "import pipelines.commands.bucket, pipelines.upscale.run, pipelines.train, pipelines.prepare, s3fs",
    "geo": "import srcore.geo, rasterio, affine; from rio_cogeo.cogeo import cog_validate",
    "train": "import tensorboardX, srcore.train.loop",
    "perceptual": "import h5py, srcore.vgg16_hed",
}

# one worker runs this module, so the wheel is built once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheel")]


def reached(requirements: list[str]) -> set[str]:
    """The installed distributions (canonical names) that ``requirements`` reach, extras and markers followed."""
    found: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name == "srcore" or (name, *sorted(req.extras)) in found:
            continue
        found.add(name)
        found.add((name, *sorted(req.extras)))
        for line in metadata.distribution(name).requires or []:
            dep = Requirement(line)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                todo.append(dep)
    return {n for n in found if isinstance(n, str)}


def overlay(folder: Path, distributions: set[str]) -> Path:
    """A folder of links to the distributions' top-level files in this environment."""
    folder.mkdir(parents=True)
    for name in distributions:
        dist = metadata.distribution(name)
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            if (SITE / top).exists() and not (folder / top).exists():
                (folder / top).symlink_to(SITE / top)
    return folder


def requirements_of(wheel: Path, *extras: str) -> list[str]:
    """The wheel's Requires-Dist lines for the core and ``extras``, markers evaluated."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = [line.split(":", 1)[1].strip() for line in zf.read(meta).decode().splitlines()
                 if line.startswith("Requires-Dist:")]
    chosen = []
    for line in lines:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras):
            req.marker = None
            chosen.append(str(req))
    return chosen


class CleanEnv:
    """A virtualenv outside the repository whose third-party packages are an overlay (see the module doc)."""

    def __init__(self, folder: Path, wheel: Path, *extras: str, before: tuple[Path, ...] = ()):
        self.folder, self.wheel, self.extras = folder, wheel, extras
        subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(folder / "venv")], check=True)
        self.python = folder / "venv" / "bin" / "python"
        site = Path(self.run_python("import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
        deps = overlay(folder / "overlay", reached(requirements_of(wheel, *extras)))
        (site / "srcore-test-overlay.pth").write_text(f"{deps}\n")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PYTHON", "VIRTUAL_ENV"))}
        self.env.update(PATH=f"{self.python.parent}{os.pathsep}{os.environ['PATH']}", HOME=str(folder),
                        SRCORE_CACHE=str(folder / "cache"), RAY_AUTH_MODE="disabled", **TEST_RAY_ENV)
        for other in before:  # distributions installed ahead of srcore
            assert self.pip("install", "--no-index", str(other)).returncode == 0
        spec = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
        self.install = self.pip("install", "--no-index", spec)

    def pip(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pip", "--python", str(self.python), "--disable-pip-version-check",
                               *args], capture_output=True, text=True, cwd=self.folder, timeout=600)

    def run(self, *command: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(list(command), capture_output=True, text=True, cwd=self.folder, env=self.env,
                              timeout=timeout)

    def run_python(self, code: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.python), "-c", code], capture_output=True, text=True, cwd=self.folder,
                              env=getattr(self, "env", None), timeout=300)

    def srcore(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return self.run(str(self.python.parent / "srcore"), *args, timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``python -m build --wheel`` of this checkout's files (tracked, and new ones git does not ignore), copied
    out first: a build writes build/ and *.egg-info beside its sources. Setuptools from this environment."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).exists() or (ROOT / name).is_symlink():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name, follow_symlinks=False)
    build = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
                            str(source)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (path,) = out.glob("srcore-*.whl")
    return path


def folder_of_images(folder: Path, count: int = 3, size: int = 24) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        small = rng.integers(0, 256, (size // 4, size // 4, 3), np.uint8)
        Image.fromarray(small).resize((size, size), Image.BICUBIC).save(folder / f"img_{i}.png")
    return folder


def test_the_wheel_carries_everything_the_commands_need(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ["srcore/cli.py", "srcore/evaluate_command.py", "pipelines/commands/bucket.py",
                     "pipelines/commands/train.py", "pipelines/commands/prepare.py", "pipelines/upscale/report_html.py",
                     "srcore/data/niqe_pris_params.npz", "srcore/pretrained/srcore-compact-x4.safetensors",
                     "srcore/pretrained/srcore-compact-x4-gan.safetensors",
                     "srcore/pretrained/srcore-compact-x4-gan.md", "srcore/pretrained/srcore-compact-x4.md",
                     "srcore/pretrained/srcore-distill-x4.safetensors", "srcore/pretrained/srcore-distill-x4.md"]:
        assert required in names, required
    configs = {n.rsplit("/", 1)[1] for n in names if n.startswith("srcore/configs/")}
    assert configs == {p.name for p in (ROOT / "configs").glob("*.yaml")}
    entry_points = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("entry_points.txt"))
    for command in ("bucket", "train", "prepare"):
        assert re.search(rf"^{command} = pipelines\.commands\.{command}$", entry_points, re.M), entry_points


def test_installed_with_the_ray_extra_it_upscales_a_folder_evaluates_and_trains(wheel, tmp_path):
    env = CleanEnv(tmp_path / "ray", wheel, "ray", "train")  # train: training's TensorBoard logs
    assert env.install.returncode == 0, env.install.stdout[-3000:] + env.install.stderr[-3000:]
    where = env.run_python("import srcore, pipelines; print(srcore.__file__, pipelines.__file__)").stdout
    assert where and str(ROOT) not in where, where  # the wheel's copy, not this checkout

    help_ = env.srcore("--help")
    assert help_.returncode == 0, help_.stderr
    for command in ("models", "upscale", "evaluate", "weights", "bucket", "train", "prepare"):
        assert re.search(rf"^    {command} +\S", help_.stdout, re.M), help_.stdout  # one line each

    inputs = folder_of_images(tmp_path / "in")
    bucket = env.srcore("bucket", "--input", str(inputs), "--output", str(tmp_path / "out"), "--no-progress")
    assert bucket.returncode == 0, bucket.stdout[-3000:] + bucket.stderr[-3000:]
    assert "[srcore] upscaled       3 (100.0%)" in bucket.stdout, bucket.stdout
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["img_0.png", "img_1.png", "img_2.png"]
    assert Image.open(tmp_path / "out" / "img_0.png").size == (96, 96)

    hr = folder_of_images(tmp_path / "Mine" / "HR", count=2, size=48)
    scores = env.srcore("evaluate", "--model", "srcore-compact-x4", "--sets", str(hr), "--out", str(tmp_path / "e"))
    assert scores.returncode == 0, scores.stderr[-3000:]
    assert "| srcore-compact-x4 | x4 | Mine | 2 |" in scores.stdout, scores.stdout

    train_data = folder_of_images(tmp_path / "train", count=2, size=64)
    train = env.srcore("train", "--config", "default-model", "iterations=2", "checkpoint_every=2", "val_every=2",
                       "log_every=1", f"data.train=[{train_data}]", f"data.val=[{hr}]", "data.patch_size=32",
                       "data.batch_size=2", "data.cache_decoded=false", f"run.storage_path={tmp_path / 'runs'}",
                       "run.torch_threads=1")
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    assert "done: train-compact-x4 at iteration 2" in train.stdout, train.stdout[-2000:]
    assert (tmp_path / "runs" / "train-compact-x4" / "net_g_2.safetensors").is_file()


def test_the_core_alone_upscales_and_names_the_extra_each_command_needs(wheel, tmp_path):
    env = CleanEnv(tmp_path / "core", wheel)
    assert env.install.returncode == 0, env.install.stdout[-3000:] + env.install.stderr[-3000:]
    for module in ("ray", "pyarrow", "rasterio", "tensorboardX", "h5py"):  # no extra's package came with the core
        assert env.run_python(f"import {module}").returncode != 0, module
    inputs = folder_of_images(tmp_path / "in")
    upscaled = env.srcore("upscale", str(inputs), "-o", str(tmp_path / "up"))
    assert upscaled.returncode == 0, upscaled.stderr[-3000:]
    assert len(list((tmp_path / "up").glob("*.png"))) == 3
    help_ = env.srcore("--help")
    assert help_.returncode == 0 and re.search(r"^    bucket +\S", help_.stdout, re.M), help_.stdout + help_.stderr
    for command in (["bucket", "--input", str(inputs), "--output", str(tmp_path / "o")],
                    ["train", "--config", "default-model"],
                    ["prepare", "--input", str(inputs), "--output", str(tmp_path / "p")]):
        result = env.srcore(*command)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert f"srcore {command[0]} needs" in lines[0] and "pip install 'srcore[ray]'" in lines[0], lines[0]


@pytest.mark.parametrize("extra", sorted(EXTRA_IMPORTS))
def test_each_extra_installs_and_imports_alone(wheel, tmp_path, extra):
    env = CleanEnv(tmp_path / extra, wheel, extra)
    assert env.install.returncode == 0, env.install.stdout[-3000:] + env.install.stderr[-3000:]
    imported = env.run_python(EXTRA_IMPORTS[extra])
    assert imported.returncode == 0, imported.stderr[-3000:]


def other_pipelines_wheel(folder: Path) -> Path:
    """A small distribution, ``other-pipelines``, with a top-level ``pipelines`` package of its own."""
    files = {"pipelines/__init__.py": b'"""Somebody else\'s pipelines."""\nSTEPS = []\n',
             "pipelines/steps.py": b"def step():\n    return 1\n",
             "other_pipelines-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: other-pipelines\nVersion: 1.0\n",
             "other_pipelines-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                                   b"Tag: py3-none-any\n",
             "other_pipelines-1.0.dist-info/top_level.txt": b"pipelines\n"}
    record = "".join(f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()}"
                     f",{len(data)}\n" for name, data in files.items())
    record += "other_pipelines-1.0.dist-info/RECORD,,\n"
    path = folder / "other_pipelines-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("other_pipelines-1.0.dist-info/RECORD", record)
    return path


def test_another_distributions_pipelines_package_is_reported_not_silent(wheel, tmp_path):
    """pip lets two distributions share a top-level folder and overwrites shared files without a word. Installed
    after srcore, the other package's ``pipelines/__init__.py`` replaces srcore's: the Ray commands say so and
    stop; `srcore upscale` is untouched. Installed before, srcore's wins and the commands warn about the other."""
    other = other_pipelines_wheel(tmp_path)
    env = CleanEnv(tmp_path / "after", wheel, "ray")
    assert env.install.returncode == 0 and env.pip("install", "--no-index", str(other)).returncode == 0
    result = env.srcore("bucket", "--help")
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr
    assert "the top-level package 'pipelines'" in result.stderr and "other-pipelines" in result.stderr, result.stderr
    assert "virtualenv of its own" in result.stderr
    inputs = folder_of_images(tmp_path / "in", count=1)
    assert env.srcore("upscale", str(inputs), "-o", str(tmp_path / "up")).returncode == 0

    before = CleanEnv(tmp_path / "before", wheel, before=(other,))
    assert before.install.returncode == 0, before.install.stderr[-2000:]
    result = before.srcore("prepare", "--help")
    assert "also installed by other-pipelines" in result.stderr, result.stderr[-2000:]
