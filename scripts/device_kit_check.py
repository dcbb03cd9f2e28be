"""Check the GPU-host kit without a GPU host: the CPU smoke run of the GPU suite in a GPU-host-like Python.

    make device-kit-check        # or: python scripts/device_kit_check.py

1. builds a kit like ``make device-kit`` but for this machine's CPython (and without the x4plus weights);
2. makes a virtualenv that holds only what the GPU hosts have (``device_kit.HOST_PACKAGES``), linked from
   this environment: torch and the rest, but no Ray, no jsonschema, no pydantic, no s3fs or boto3;
3. runs ``bench/gpu.sh --cpu-smoke`` with that Python and that kit: the kit is unpacked as on the host, and
   every step (correctness, engine, the Ray Data pipeline, Ray Train) runs for real on the CPU.

A package the kit forgot fails step 3 with an ImportError. Everything lives under ``.device-kit-cache/``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib.metadata import distributions
from pathlib import Path

import device_kit

ROOT = device_kit.ROOT


def host_like_venv(target: Path) -> Path:
    """A virtualenv whose site-packages links only the GPU host's distributions from this environment."""
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    python = target / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    linked = site / "host-packages"
    linked.mkdir()
    host = {device_kit.normalise(n) for n in device_kit.HOST_PACKAGES}
    ours = sysconfig.get_paths()["purelib"]
    names = []
    for dist in distributions(path=[ours]):
        name = device_kit.normalise(dist.metadata["Name"])
        if name not in host:
            continue
        names.append(name)
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "bin")}:
            if not top.endswith(".data") and (Path(ours) / top).exists() and not (linked / top).exists():
                (linked / top).symlink_to(Path(ours) / top)
    (site / "host-packages.pth").write_text(str(linked) + "\n")
    missing = sorted({"torch", "numpy", "pyarrow", "pandas", "pillow", "pip"} - set(names))
    if missing:
        raise SystemExit(f"this environment lacks {missing}, which the GPU host has: run from the project's .venv")
    print(f"host-like venv {target}: {len(names)} distributions of the GPU host's, nothing else", flush=True)
    return python


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, default=ROOT / ".device-kit-cache")
    p.add_argument("--out", type=Path, default=ROOT / ".device-kit-cache" / "check-out")
    args = p.parse_args()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    kit = args.cache / f"kit-cp{version.replace('.', '')}"
    shared = Path(os.environ.get("SRCORE_SHARED", ROOT.parent / "shared")).resolve()
    device_kit.build(kit, version, shared, args.cache, with_x4plus=False)
    python = host_like_venv(args.cache / "host-venv")
    leaked = subprocess.run([str(python), "-c", "import importlib.util as u; print([m for m in "
                             "('ray', 'jsonschema', 'pydantic', 's3fs', 'tensorboardX') if u.find_spec(m)])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    if leaked != "[]":
        raise SystemExit(f"the host-like venv must not have {leaked}")
    site = args.cache / "kit-site"
    shutil.rmtree(site, ignore_errors=True)
    env = dict(os.environ, PYTHON=str(python), SRCORE_KIT_SITE=str(site))
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--cpu-smoke", "--kit", str(kit),
                           "--out", str(args.out), "--work", str(args.cache / "check-work")], env=env)
    verdict = "works" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
    print(f"\nkit for CPython {version} in a GPU-host-like Python: {verdict}; summary in {args.out}/summary.md")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
