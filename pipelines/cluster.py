"""Joining a Ray cluster, or starting a local one sized for the job."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Iterator

import ray


def connect_or_start(min_cpus: float = 1, dashboard: bool = True) -> str:
    """Join the cluster named by ``RAY_ADDRESS`` (``ray job submit`` sets it); else start a local Ray.

    A local Ray gets at least ``min_cpus`` logical CPUs: training workers reserve theirs, and the Ray Data
    tasks feeding them need some left, even on a laptop with fewer cores (the work then shares the cores).
    ``dashboard``: start a local Ray's dashboard (Ray Train's controller queries its state API; a job that
    prints its own progress saves its 2 s start and a process that competes for the CPUs).
    Returns "cluster" or "local".
    """
    if ray.is_initialized():
        return "cluster"
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
        return "cluster"
    # address="local": a new local Ray even where a stopped `ray start` left its address file behind
    ray.init(address="local", num_cpus=max(os.cpu_count() or 1, int(min_cpus + 0.999)), include_dashboard=dashboard)
    return "local"


# Ray's own lines that read like failures to a newcomer but say nothing about the run: start-up notices, the
# token-auth notice, Ray Data's "progress bars disabled" (the job prints its own), deprecations of arguments
# Ray Train passes itself, and the driver's note on actor constructor arguments in the object store
RAY_NOISE = re.compile(
    r"Token authentication is enabled for this Ray cluster|Started a local Ray instance|"
    r"Connecting to existing Ray cluster|Connected to Ray cluster|View the dashboard at|"
    r"Progress bars disabled|exclude_resources|core_worker\.cc.*max_restarts > 0|"
    r"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO|Tip: In future versions of Ray")


@contextlib.contextmanager
def ray_noise_off_console(verbose: bool = False) -> Iterator[None]:
    """This process's stderr without Ray's start-up noise (:data:`RAY_NOISE`) unless ``verbose``; every other
    line passes as it comes. Filtered at the file descriptor: the noisiest line is from Ray's C++ core, which
    no Python logger sees. Ray's log files keep everything."""
    if verbose:
        yield
        return
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    console = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                if not RAY_NOISE.search(line.decode("utf-8", "replace")):
                    os.write(console, line)

    thread = threading.Thread(target=forward, name="srcore-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(console, 2)  # closes the pipe's write end: the thread forwards what is left, then stops
        thread.join(timeout=1)
        if not thread.is_alive():
            os.close(console)


def quiet_ray_data() -> None:
    """Jobs print their own progress (images or iterations, rate, ETA): Ray Data's per-block bars
    ("Total Progress: 0/?") and execution logs would drown it."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


class NoNodeForWork(RuntimeError):
    """The cluster has had no node that can run one of a pipeline's stages for longer than the run waits."""


def unplaceable(requests: dict[str, dict[str, float]], nodes: list[dict]) -> list[str]:
    """The stages of ``requests`` (stage -> the resources one of its workers needs) that no alive node of
    ``nodes`` (``ray.nodes()``) could run, even idle."""
    alive = [node["Resources"] for node in nodes if node.get("Alive")]
    return [stage for stage, need in requests.items()
            if not any(all(have.get(name, 0) >= amount for name, amount in need.items()) for have in alive)]


def node_watchdog(requests: dict[str, dict[str, float]], wait_s: float, every_s: float = 1.0) -> type:
    """A Ray Data execution callback (``DataContext.custom_execution_callback_classes``) that ends the
    execution with :class:`NoNodeForWork` once a stage of ``requests`` has had no node to run on for
    ``wait_s`` seconds: when the last node that could run the actors is lost, Ray Data would otherwise wait
    for one forever. The wait leaves an autoscaler time to add nodes."""
    from ray.data._internal.execution.execution_callback import ExecutionCallback

    class NodeWatchdog(ExecutionCallback):
        def __init__(self):
            self.checked, self.since = 0.0, None

        def on_execution_step(self, executor) -> None:  # each scheduling step, on the executor's thread
            now = time.monotonic()
            if now - self.checked < every_s:
                return
            self.checked = now
            nodes = ray.nodes()
            missing = unplaceable(requests, nodes)
            if not missing:
                self.since = None
                return
            self.since = self.since or now
            if now - self.since >= wait_s:
                needs = "; ".join(f"{stage}: each needs " + ", ".join(f"{v:g} {k}" for k, v in requests[stage].items())
                                  for stage in missing)
                alive = [n["Resources"] for n in nodes if n.get("Alive")]
                left = ", ".join(f"{n.get('CPU', 0):g} CPU/{n.get('GPU', 0):g} GPU" for n in alive) or "none"
                raise NoNodeForWork(f"no node in the cluster can run {needs}, for {wait_s:g} s (--wait-for-nodes); "
                                    f"nodes alive: {left}")

    return NodeWatchdog


@contextlib.contextmanager
def no_remote_args_warning():
    """Ray 2.60 deprecates ``**ray_remote_args`` but has no named parameter yet for the retries and actor
    concurrency the job needs (max_retries, max_task_retries, max_concurrency): keep its warning off users'
    consoles until it has."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        yield
