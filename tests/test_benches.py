"""Every bench script the README or bench/results cites runs here at toy size (``--smoke``, seconds) and checks
its own figures, so a change elsewhere cannot silently break it. bench/large_image.py's smoke run is in
test_streaming (its peak-RSS bound); the GPU suite's steps are checked by test_gpu_suite's dry run (and its
CPU smoke run, ``make test-gpu-suite``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared_path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = {  # bench -> what its smoke run needs from ../shared
    "encoders.py": [],
    "lr_check.py": [],
    "inference.py": [],
    "realism.py": ["weights/RealESRGAN_x4plus.pth", "datasets/RealWorld"],
    "invention.py": ["datasets/RealWorld"],
    "geo.py": [],
    "steady_state.py": [],
    "train.py": [],
    "scale.py": [],
    "reliability.py": [],
    "video.py": [],
}

pytestmark = pytest.mark.slow


def test_every_cited_bench_has_a_smoke_run():
    docs = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("bench/results/*.md")]
    scripts = {p.name for p in (ROOT / "bench").glob("*.py")}  # a removed script's old figures cite nothing now
    cited = {name for name in scripts for doc in docs if f"bench/{name}" in doc.read_text()}
    checked_elsewhere = {"large_image.py", "gpu_suite.py", "gpu_correctness.py", "gpu_tests.py"}
    assert cited and cited - checked_elsewhere <= set(SMOKE), sorted(cited - checked_elsewhere - set(SMOKE))


@pytest.mark.parametrize("bench", sorted(SMOKE))
def test_the_bench_smoke_run_measures_sane_figures(bench):
    for needed in SMOKE[bench]:
        shared_path(needed)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # benches start their own Ray
    result = subprocess.run([sys.executable, str(ROOT / "bench" / bench), "--smoke"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "smoke:" in result.stdout, result.stdout[-2000:]  # its own check ran
