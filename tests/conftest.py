"""Shared fixtures. Data from ../shared is found through SRCORE_SHARED and skipped when absent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Under pytest-xdist the workers share the cores: torch's intra-op threads (and those of the processes the
# tests start) get the cores divided among them. Two 2-thread workers on 2 cores spend ~12% more CPU on the same
# work than two 1-thread ones (measured on test_inference + test_streaming), and the suite is CPU-bound. Set
# before torch is imported (srcore.zoo imports it); Ray's workers inherit it, the actors set their own.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

from srcore.zoo import cache_dir  # noqa: E402

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


# Ray settings for every Ray the tests start (the shared head, private clusters, job processes): no usage-stats
# actor, no Train preemption watcher (an actor each run, for spot-instance draining a test never sees), and the
# Train controller polling its workers every 0.5 s instead of 2 s. On 2 cores each actor costs seconds of
# imports; none of these is behaviour a test checks. Worker pool: no workers started ahead of work (most would
# never be used by a test's short job), and idle task workers kept (soft limit 8, not the CPU count) so that the
# next run of the same Ray job reuses them instead of starting and importing Ray Data again (~3.5 CPU-s each).
TEST_RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
                "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5", "RAY_num_workers_soft_limit": "8",
                "RAY_prestart_worker_first_driver": "0", "RAY_enable_worker_prestart": "0"}
os.environ.update(TEST_RAY_ENV)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep tests away from the user's real weights cache, and from the network."""
    monkeypatch.setenv("SRCORE_CACHE", str(tmp_path_factory.mktemp("srcore-cache")))
    monkeypatch.setenv("SRCORE_OFFLINE", "1")


# --- one loopback S3 server and one Ray head per test run (per xdist worker) -------------------------------------
# Tests that run the jobs share them: job processes join the head through RAY_ADDRESS, and jobs called in this
# process (bucket_helpers.run_job) connect this process to it. A Ray start costs seconds and a job process ~10 s
# of imports on 2 cores; only tests whose workers need their own environment start a private cluster. Modules
# that use the head are in the xdist group "ray", so they run one at a time on one worker.


@pytest.fixture(scope="session")
def s3():
    """The loopback S3 server (moto's server mode); ``os.environ`` points S3 clients at it for the run."""
    from pipelines.local_s3 import local_s3_server

    with local_s3_server() as env:
        yield env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agent_ports() -> list[str]:
    """Free ports for a head's agents: their defaults (52365, ...) are one per machine, and a second head's
    job agent would fail to bind them while another Ray runs (`ray job submit`: "No available agent")."""
    return [f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}", f"--metrics-export-port={_free_port()}"]


@pytest.fixture(scope="session")
def shared_ray_head(s3, tmp_path_factory):
    """A Ray head (``ray start --head``) for the run; its workers see the S3 server and a cache of their own."""
    bin_dir = Path(sys.executable).parent
    logs = tmp_path_factory.mktemp("ray-head")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # RAY_AUTH_MODE: a token left in ~/.ray by another cluster would otherwise lock this process out
    env.update(SRCORE_CACHE=str(tmp_path_factory.mktemp("ray-cache")), SRCORE_OFFLINE="1", RAY_AUTH_MODE="disabled",
               PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", **TEST_RAY_ENV)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    with open(logs / "head.log", "w") as log:
        head = subprocess.Popen(
            [str(bin_dir / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
             f"--num-cpus={max(os.cpu_count() or 1, 2)}", "--include-dashboard=false", "--disable-usage-stats",
             f"--ray-client-server-port={_free_port()}", f"--node-manager-port={_free_port()}",
             f"--object-manager-port={_free_port()}", *agent_ports()],
            cwd=Path(__file__).resolve().parents[1], env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        deadline = time.time() + 120
        while not (logs / "head.log").read_text().count("Ray runtime started"):
            assert head.poll() is None, (logs / "head.log").read_text()[-3000:]
            assert time.time() < deadline, "the shared Ray head did not start in 120 s"
            time.sleep(0.5)
        yield address
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        os.killpg(head.pid, signal.SIGTERM)  # the head and every process it started (its own session)
        try:
            head.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        current = Path("/tmp/ray/ray_current_cluster")  # `ray start` leaves its address for ray.init() to find
        if current.exists() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()


_worker_env: dict[str, str] = {}  # the environment this process's Ray job gives its workers


def connect_to_shared_head(address: str, worker_env: dict[str, str] | None = None) -> None:
    """This process connected to the head as a Ray job whose workers get ``worker_env`` on top of the head's
    environment (``runtime_env``, as ``ray job submit --runtime-env-json`` gives a job's workers)."""
    import ray

    global _worker_env
    wanted = dict(worker_env or {})
    if ray.is_initialized() and (ray.get_runtime_context().gcs_address != address or _worker_env != wanted):
        ray.shutdown()  # a test's private cluster, or a job with other worker variables
    if not ray.is_initialized():
        ray.init(address=address, runtime_env={"env_vars": wanted} if wanted else None)
        _worker_env = wanted


@pytest.fixture()
def shared_ray(shared_ray_head, monkeypatch, request):
    """This process connected to the run's Ray head, and RAY_ADDRESS naming it for job processes. Call it
    with variables (``shared_ray(NAME=value)``) to reconnect as a job whose workers see them."""
    if request.config.getoption("loadgroup", False):  # an xdist worker under --dist loadgroup
        assert request.node.nodeid.endswith("@ray"), \
            f"{request.node.nodeid} uses the shared Ray head but is not in the xdist group 'ray' (mark it), or " \
            "xdist's grouping is not working (pytest-xdist 3.8 needs pytest < 9)"
    monkeypatch.setenv("RAY_ADDRESS", shared_ray_head)
    connect_to_shared_head(shared_ray_head)
    yield lambda **worker_env: connect_to_shared_head(shared_ray_head, worker_env)
    if _worker_env:
        connect_to_shared_head(shared_ray_head)  # the next test's workers see the run's environment


@pytest.fixture(scope="session")
def hostile_run(s3, shared_ray_head):
    """One bucket job over hostile keys, metadata and error text, with distinctive credentials in the driver's
    and workers' environment (bucket_helpers.hostile_bucket_run): the report's browser test and the secrets
    test read the same run. Its users are in the xdist group "ray"."""
    from bucket_helpers import hostile_bucket_run

    result = hostile_bucket_run(shared_ray_head)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture()
def private_ray():
    """For a test that starts its own cluster in this process: no connection to the shared head in the way."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    yield
    if ray.is_initialized():
        ray.shutdown()
