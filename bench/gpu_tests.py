"""The tests that need a GPU, run by the GPU suite (``bench/gpu_suite.py``): nvJPEG parity and the compiled
CUDA engine against eager (``tests/test_gpu_paths.py``). Writes each test's outcome to ``--json-out``.

    python bench/gpu_tests.py --json-out gpu_tests.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_gpu_paths.py"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json-out", help="each test's outcome")
    p.add_argument("--dry-run", action="store_true", help="check that pytest and the test files are there, exit")
    args = p.parse_args()
    missing = [t for t in TESTS if not (ROOT / t).exists()]
    if missing:
        raise SystemExit(f"missing test files: {missing}")
    import pytest  # noqa: F401 (the GPU host has it; the dry run says so when it does not)

    if args.dry_run:
        print(json.dumps({"dry_run": True, "tests": TESTS}))
        return
    junit = Path("/tmp/srcore-gpu-tests.xml")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={junit}",
                           *TESTS], cwd=ROOT)
    cases = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        message = next((child.get("message", "")[:300] for child in case if child.tag != "system-out"), "")
        cases.append({"test": case.get("name"), "outcome": outcome, "seconds": float(case.get("time", 0)),
                      "message": message})
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"cases": cases, "exit": proc.returncode}, indent=1))
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
