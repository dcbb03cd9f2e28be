"""`ray job submit` of the bucket job to a Ray head started with `ray start --head` on loopback, token auth on."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bucket_helpers import ROOT, get_object, good_images, list_objects, make_bucket
from conftest import agent_ports

from srcore.imageio import decode

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture()
def ray_head(tmp_path):
    """A Ray head on 127.0.0.1 that demands a token; yields (dashboard address, environment with the token)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_"))}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16), HOME=str(tmp_path),
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    dashboard, gcs_port = free_port(), free_port()
    log = open(tmp_path / "ray-head.log", "w")
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs_port}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--ray-client-server-port={free_port()}",
         "--num-cpus=2", "--disable-usage-stats", *agent_ports()],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.time() + 120
        while ray_cli("job", "list", "--address", address, env=env).returncode != 0:
            assert head.poll() is None, (tmp_path / "ray-head.log").read_text()[-3000:]
            assert time.time() < deadline, "the Ray head did not come up in 120 s"
            time.sleep(2)
        yield address, env
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # the head and every process it started (its own session)
        try:
            head.wait(10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        head.wait()
        log.close()
        # ray start leaves its address for later ray.init() calls to join; this head is gone
        current = Path("/tmp/ray/ray_current_cluster")
        if current.exists() and current.read_text().strip().endswith(f":{gcs_port}"):
            current.unlink()


def test_ray_job_submit_with_token_auth_runs_the_bucket_job(ray_head, s3):
    address, env = ray_head
    no_token = {k: v for k, v in env.items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
    refused = ray_cli("job", "list", "--address", address, env=no_token)
    assert refused.returncode != 0, "the head accepted a client without the token"

    images = good_images(6)
    make_bucket("submitted", "in", {k: v[0] for k, v in images.items()})
    runtime_env = {"env_vars": s3}  # how a cluster's jobs are pointed at MinIO or another S3 endpoint
    submit = ["job", "submit", "--address", address, "--working-dir", ".", "--runtime-env-json",
              json.dumps(runtime_env), "--", "python", "jobs/upscale_bucket.py", "--input", "s3://submitted/in",
              "--output", "s3://submitted/out", "--no-progress", "--actor-concurrency", "2"]  # the GPU default, on CPU
    for _ in range(12):  # a head answers `ray job list` before its job agent has registered (seconds, under load)
        result = ray_cli(*submit, env=env, timeout=600)
        if "No available agent to submit job" not in result.stdout + result.stderr:
            break
        time.sleep(5)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "succeeded" in result.stdout.lower()
    assert re.search(r"\[srcore\] upscaled +6 \(100.0%\)", result.stdout), result.stdout[-3000:]
    outputs = list_objects("submitted", "out")
    assert len(outputs) == 6
    for key, (_, (w, h), _) in images.items():
        out_key = next(k for k in outputs if k.rsplit(".", 1)[0] == key.rsplit(".", 1)[0])
        assert decode(get_object("submitted", f"out/{out_key}")).size == (4 * w, 4 * h)
