"""Joining a Ray cluster, or starting a local one sized for the job."""

from __future__ import annotations

import logging
import os

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


def quiet_ray_data() -> None:
    """Jobs print their own progress (images or iterations, rate, ETA): Ray Data's per-block bars
    ("Total Progress: 0/?") and execution logs would drown it."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
