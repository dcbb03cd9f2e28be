"""Build the GPU-host kit: what an air-gapped GPU machine lacks to run srcore's benches and pipelines.

    make device-kit                                    # .device-kit/ for CPython 3.12, x86-64
    python scripts/device_kit.py --python 3.11 --out /tmp/kit311   # a kit for a local CPU dry run

The GPU hosts have Python 3.12 with torch, numpy, pyarrow, pandas, Pillow, OpenCV, safetensors, tifffile,
tensorboard, fsspec, aiohttp, grpcio, click, msgpack, protobuf, pyyaml and requests, but no Ray and no package
registry, and a command can carry at most 64 MiB. The kit holds, in under 60 MiB:

- ``ray-<version>-<tag>-slim.tar.xz``: Ray's wheel unpacked as a site-packages tree, less what Ray Data and
  Ray Train never load (the Java jars, RLlib, the dashboard's web front end) and with its ELF files' symbol
  tables stripped (they serve crash backtraces only): 79 MB of wheel become about 18.5 MB;
- ``wheels/``: the cp<tag> wheels of the Python packages Ray, Ray Train and srcore need that the host lacks
  (jsonschema and its helpers, pydantic for Ray Train, tensorboardX for training logs), at the versions pinned
  in ``constraints.txt``;
- ``weights/`` and ``fixtures/``: the official Real-ESRGAN weights and reference outputs from the shared data
  folder (``SRCORE_SHARED``), for the correctness checks; throughput runs need no real weights;
- ``MANIFEST.json``: every file with its size and SHA-256, the versions and the Python tag.

``bench/gpu.sh`` unpacks it on the host (``docs/gpu.md``). Downloads go to ``.device-kit-cache/`` so rebuilds
are offline. The tar is written in sorted order with fixed times and owners: the same inputs give the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_KIT_BYTES = 60 * 2**20

# What the GPU host lacks, with the reason it travels. Everything else Ray and srcore import is on the host.
KIT_PACKAGES = {
    "jsonschema": "Ray core requires it",
    "jsonschema-specifications": "jsonschema requires it",
    "referencing": "jsonschema requires it",
    "rpds-py": "referencing requires it (binary)",
    "pydantic": "Ray Train V2 requires it",
    "pydantic-core": "pydantic requires it (binary)",
    "annotated-types": "pydantic requires it",
    "typing-inspection": "pydantic requires it",
    "tensorboardX": "training logs (srcore's trainer) and Ray Tune require it",
}
# The GPU hosts' Python packages, as a session read them there on 2026-11-17 (KINDS.md of the device tool).
HOST_PACKAGES = """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers
flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py
markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind
narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc
nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging
pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham
simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics
torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig
werkzeug wheel wrapt xarray xxhash yarl zipp""".split()
# Never loaded by Ray Data or Ray Train; the jars alone are 33 MB.
RAY_DROPPED = ("ray/jars/", "ray/rllib/", "ray/dashboard/client/build/")
SHARED_FILES = {
    "weights/realesr-animevideov3.pth": "official SRVGGNetCompact x4 (Real-ESRGAN, BSD-3-Clause)",
    "weights/RealESRGAN_x4plus.pth": "official RRDBNet x4plus (Real-ESRGAN, BSD-3-Clause)",
    "fixtures/lincoln_crop_64x48.png": "8-bit RGB input of the official-output fixtures",
    "fixtures/realesr-animevideov3-x4_lincoln_crop_out.npy": "official animevideov3 output (ncnn, fp32)",
    "fixtures/realesrgan-x4plus_lincoln_crop_out.npy": "official x4plus output (ncnn, fp32)",
}
FIXED_MTIME = 1_700_000_000  # reproducible archives: no build-time timestamps


def read_pins(path: Path = ROOT / "constraints.txt") -> dict[str, str]:
    """``name==version`` lines of a pip constraints file, keyed by normalised name."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[normalise(name)] = version.strip()
    return pins


def normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def download_wheel(name: str, version: str, python: str, cache: Path) -> Path:
    """One binary wheel for CPython ``python`` on manylinux x86-64 (cached: later builds are offline)."""
    cache.mkdir(parents=True, exist_ok=True)
    stem = normalise(name).replace("-", "_")
    found = [p for p in cache.glob("*.whl") if normalise(p.name.split("-")[0]) == normalise(stem)
             and p.name.split("-")[1] == version and _fits(p.name, python)]
    if found:
        return found[0]
    tag = python.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
           "--only-binary=:all:", "--python-version", python, "--implementation", "cp", "--abi", f"cp{tag}",
           "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
           "--platform", "manylinux_2_28_x86_64", "--platform", "any", "--abi", "none", "--abi", "abi3",
           "-d", str(cache), f"{name}=={version}"]
    print(f"  downloading {name}=={version} for cp{tag}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"pip download {name}=={version} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return download_wheel(name, version, python, cache)


def _fits(wheel_name: str, python: str) -> bool:
    """Is this wheel for CPython ``python`` (or pure Python)?"""
    tags = wheel_name[:-4].split("-")[-3:]
    return tags[0] in ("py3", "py2.py3", f"cp{python.replace('.', '')}") or tags[1] == "abi3"


def slim_ray(wheel: Path, target: Path) -> dict:
    """Ray's wheel -> a site-packages tree as a reproducible tar.xz, less ``RAY_DROPPED``, ELF files stripped."""
    strip = shutil.which("strip")
    dropped = kept = 0
    with zipfile.ZipFile(wheel) as zf, tempfile.TemporaryDirectory() as tmp:
        members = [i for i in zf.infolist() if not i.is_dir()]
        with lzma.open(target.with_suffix(".part"), "wb", preset=9) as xz, \
                tarfile.open(fileobj=xz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for info in sorted(members, key=lambda i: i.filename):
                name = info.filename
                if name.startswith(RAY_DROPPED) or name.split("/")[0].endswith(".data"):  # console scripts
                    dropped += info.file_size
                    continue
                data = zf.read(info)
                if strip and data[:4] == b"\x7fELF":
                    data = _stripped(data, strip, Path(tmp))
                kept += len(data)
                entry = tarfile.TarInfo(name)
                entry.size, entry.mtime, entry.uid, entry.gid, entry.uname, entry.gname = \
                    len(data), FIXED_MTIME, 0, 0, "", ""
                entry.mode = 0o755 if (info.external_attr >> 16) & 0o111 else 0o644
                tar.addfile(entry, io.BytesIO(data))
    target.with_suffix(".part").replace(target)
    return {"unpacked_bytes": kept, "dropped_bytes": dropped, "stripped": bool(strip)}


def _stripped(data: bytes, strip: str, tmp: Path) -> bytes:
    path = tmp / "elf"
    path.write_bytes(data)
    subprocess.run([strip, "--strip-unneeded", str(path)], check=True)
    return path.read_bytes()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()  # at most the 79 MB wheel


def build(out: Path, python: str, shared: Path | None, cache: Path, with_x4plus: bool = True) -> dict:
    pins = read_pins()
    out.mkdir(parents=True, exist_ok=True)
    for old in (out / "wheels", out / "weights", out / "fixtures"):
        shutil.rmtree(old, ignore_errors=True)
    (out / "wheels").mkdir()
    entries: dict[str, dict] = {}

    ray_version = pins["ray"]
    tag = f"cp{python.replace('.', '')}"
    ray_tar = out / f"ray-{ray_version}-{tag}-slim.tar.xz"
    for stale in out.glob("ray-*-slim.tar.xz"):
        if stale != ray_tar:
            stale.unlink()
    print(f"Ray {ray_version} for {tag}:", flush=True)
    ray_wheel = download_wheel("ray", ray_version, python, cache)
    stamp = out / f".{ray_tar.name}.source"
    if ray_tar.exists() and stamp.exists() and stamp.read_text() == sha256(ray_wheel):
        info = json.loads((out / "MANIFEST.json").read_text())["files"][ray_tar.name]["slim"]
        print("  slim archive is up to date", flush=True)
    else:
        print(f"  slimming {ray_wheel.name} ({ray_wheel.stat().st_size / 1e6:.1f} MB): dropping "
              f"{', '.join(RAY_DROPPED)}, stripping ELF symbol tables, xz -9 (about a minute)", flush=True)
        info = slim_ray(ray_wheel, ray_tar)
        stamp.write_text(sha256(ray_wheel))
    entries[ray_tar.name] = {"what": f"Ray {ray_version}, site-packages tree, slimmed", "source": ray_wheel.name,
                             "slim": info}

    print("wheels:", flush=True)
    for name, why in KIT_PACKAGES.items():
        version = pins.get(normalise(name))
        if version is None:
            raise SystemExit(f"{name} has no pin in constraints.txt")
        wheel = download_wheel(name, version, python, cache)
        shutil.copy2(wheel, out / "wheels" / wheel.name)
        entries[f"wheels/{wheel.name}"] = {"what": why}

    if shared is None or not shared.is_dir():
        print(f"shared data folder {shared} not found: the kit has no official weights (correctness checks on "
              "the GPU host will be skipped; throughput needs none)", flush=True)
    else:
        for relative, what in SHARED_FILES.items():
            if "x4plus" in relative and relative.startswith("weights/") and not with_x4plus:
                continue
            src = shared / relative
            if src.exists():
                (out / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, out / relative)
                entries[relative] = {"what": what}

    for relative, entry in entries.items():
        path = out / relative
        entry.update(bytes=path.stat().st_size, sha256=sha256(path))
    total = sum(e["bytes"] for e in entries.values())
    manifest = {"python": python, "platform": "manylinux x86_64", "ray": ray_version, "total_bytes": total,
                "files": entries,
                "host_must_have": "torch, torchvision, numpy, pyarrow, pandas, pillow, opencv-python-headless, "
                                  "safetensors, tifffile, fsspec, aiohttp, grpcio, click, msgpack, protobuf, pyyaml, "
                                  "requests, filelock, packaging, attrs, typing-extensions, tqdm"}
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if total > MAX_KIT_BYTES:
        hint = "" if info.get("stripped") else "install binutils (strip shrinks Ray by 7 MB) or "
        raise SystemExit(f"kit is {total / 2**20:.1f} MiB, over {MAX_KIT_BYTES / 2**20:.0f} MiB: "
                         f"{hint}build it with --no-x4plus")
    return manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / ".device-kit")
    p.add_argument("--python", default="3.12", help="the GPU host's CPython version (wheel tags)")
    p.add_argument("--shared", type=Path, default=Path(os.environ.get("SRCORE_SHARED", ROOT.parent / "shared")))
    p.add_argument("--cache", type=Path, default=ROOT / ".device-kit-cache")
    p.add_argument("--no-x4plus", action="store_true", help="leave out the 33 MB official x4plus weights")
    args = p.parse_args()
    manifest = build(args.out, args.python, args.shared.resolve(), args.cache, with_x4plus=not args.no_x4plus)
    print(f"\n{args.out}: {len(manifest['files'])} files, {manifest['total_bytes'] / 2**20:.1f} MiB "
          f"(limit {MAX_KIT_BYTES / 2**20:.0f} MiB), for CPython {args.python}")
    for name, entry in sorted(manifest["files"].items()):
        print(f"  {entry['bytes'] / 2**20:6.2f} MiB  {name}")


if __name__ == "__main__":
    main()
