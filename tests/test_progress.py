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
    assert 6 <= len(lines) <= 9, lines
    assert max(b - a for a, b in itertools.pairwise(times)) < 0.5 + 0.35, lines  # polled 4 times an interval
    assert "last result 2 s ago" in lines[3][1] and "0/3 images" in lines[3][1]
    assert lines[-1][1].startswith("[srcore] 3/3 images (100.0%)") and "1 failed" in lines[-1][1]
    printed = len(lines)
    time.sleep(0.7)
    assert len(lines) == printed  # the heartbeat stopped with the block
