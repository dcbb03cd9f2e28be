"""The jobs' progress line: on time while nothing arrives (a batch slower than the interval), and at the end."""

from __future__ import annotations

import itertools
import time

from pipelines.progress import ProgressLog


def test_the_heartbeat_keeps_the_interval_while_a_batch_takes_longer():
    lines: list[tuple[float, str]] = []
    log = ProgressLog(3, interval=0.5, print_fn=lambda line: lines.append((time.perf_counter(), line)))
    start = time.perf_counter()
    with log:
        time.sleep(2.3)  # one batch, 4.6 intervals long
        log.add(2)
        time.sleep(1.2)
        log.add(1, failed=1)
    times = [start] + [t for t, _ in lines]
    assert 5 <= len(lines) <= 10, lines
    assert max(b - a for a, b in itertools.pairwise(times)) < 2 * 0.5, lines  # on time (polled 4 times an interval)
    assert any("last result 2 s ago" in line and "0/3 images" in line for _, line in lines), lines
    assert lines[-1][1].startswith("[srcore] 3/3 images (100.0%)") and "1 failed" in lines[-1][1]
    printed = len(lines)
    time.sleep(0.7)
    assert len(lines) == printed  # the heartbeat stopped with the block


def test_ray_start_up_noise_stays_off_the_console_and_everything_else_passes(capfd):
    """Filtered at the file descriptor, as Ray's C++ core writes there; the descriptor is the console's again
    after, and nothing else is held back or dropped."""
    import os

    from pipelines.cluster import ray_noise_off_console

    with ray_noise_off_console():
        os.write(2, b"2026-12-03 WARNING authentication_token_setup.py:85 -- Token authentication is enabled for "
                    b"this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.\n")
        os.write(2, b"[2026-12-03 E 1 1] core_worker.cc:2465: Actor ... has constructor arguments in the object "
                    b"store and max_restarts > 0. If the arguments ...\n")
        os.write(2, b"error: a real problem\n")
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert err == "error: a real problem\nafter\n", err
    with ray_noise_off_console(verbose=True):
        os.write(2, b"Started a local Ray instance.\n")
    assert capfd.readouterr().err == "Started a local Ray instance.\n"
