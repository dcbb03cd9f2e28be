"""The one fault-injection point, for recovery drills and the tests that check recovery.

Two sources, each read once per process:

- the training config's ``fault`` (:class:`srcore.train.config.FaultInjection`): fail once at an iteration on
  a rank (raise, SIGKILL, or hold while the drill removes the node), :func:`training_fault`;
- ``SRCORE_FAULTS``, a JSON object in the workers' environment (Ray passes it on through ``runtime_env``):
  ``{"die": {"decode": "<marker>", "upscale": "<marker>"}, "train_dump": "<folder>"}``. ``die``: the bucket
  job's worker process ends as an out-of-memory kill would (exit 137) when that stage handles an input whose
  key holds the marker (:func:`die_if_marked`). ``train_dump``: each training worker saves its final weights,
  node and segments to ``<folder>/<run>/rank<N>.pt`` (:func:`train_dump_folder`).

Unset, nothing here does anything; the product's code calls these functions at four places only (the
decode and upscale stages, the training loop's step and its end).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from pathlib import Path

FAULTS_ENV = "SRCORE_FAULTS"


@functools.cache
def _settings() -> dict:
    text = os.environ.get(FAULTS_ENV)
    if not text:
        return {}
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"${FAULTS_ENV} is not JSON ({exc})") from None
    if not isinstance(settings, dict) or set(settings) - {"die", "train_dump"}:
        raise ValueError(f"${FAULTS_ENV} takes an object with 'die' and 'train_dump', got {text[:200]!r}")
    return settings


def faults_env(die: dict[str, str] | None = None, train_dump: str | os.PathLike | None = None) -> dict[str, str]:
    """The environment variable that sets these faults in workers (for ``runtime_env={"env_vars": ...}``)."""
    settings = {k: v for k, v in (("die", die), ("train_dump", str(train_dump) if train_dump else None)) if v}
    return {FAULTS_ENV: json.dumps(settings)}


def die_if_marked(stage: str, key: str) -> None:
    """End this process (exit 137) when ``SRCORE_FAULTS`` marks ``stage`` for inputs whose key holds a marker."""
    marker = _settings().get("die", {}).get(stage)
    if marker and marker in key:
        os._exit(137)


def train_dump_folder() -> Path | None:
    """Where training workers save their final state for a drill to compare (``train_dump``), or None."""
    folder = _settings().get("train_dump")
    return Path(folder) if folder else None


def training_fault(fault, rank: int, iteration: int, node_id: str) -> None:
    """Fail once, as the config's ``fault`` (:class:`srcore.train.config.FaultInjection`) says, at its iteration
    on its rank: a marker file records it (and the node), so a resumed run goes on."""
    if fault.iteration is None or iteration != fault.iteration or rank != fault.rank or fault.marker is None:
        return
    marker = Path(fault.marker)
    if marker.exists():
        return
    if fault.kill or fault.hold_s:
        # a kill in the instant after the last report lost that checkpoint once (Ray Train's controller seems to
        # register it only after polling every rank's report): not what the drill checks, so give it a few polls
        time.sleep(3 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2")))
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"fault injected at iteration {iteration} on rank {rank}\nnode {node_id}\n")
    if fault.hold_s:
        time.sleep(fault.hold_s)  # the drill removes this worker's node meanwhile
        return
    if fault.kill:
        os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError(f"injected fault at iteration {iteration} (fault-tolerance drill)")
