"""One console line per interval for long runs: done / total, rate, ETA, failures so far."""

from __future__ import annotations

import datetime as dt
import time


def eta(remaining: float, rate: float) -> str:
    """Time left at ``rate`` units per second, as H:MM:SS (``?`` before any rate is known)."""
    return str(dt.timedelta(seconds=round(remaining / rate))) if rate > 0 else "?"


class ProgressLog:
    """Prints ``[srcore] 120/1000 images (12.0%) | 3.40 images/s | ETA 0:04:18 | 2 failed`` at most every
    ``interval`` seconds, and once more when the count reaches the total."""

    def __init__(self, total: int, unit: str = "images", interval: float = 10.0, print_fn=print):
        self.total, self.unit, self.interval, self.print = total, unit, interval, print_fn
        self.done = self.failed = 0
        self.start = self.last = time.perf_counter()

    def add(self, done: int, failed: int = 0) -> None:
        self.done += done
        self.failed += failed
        now = time.perf_counter()
        if now - self.last >= self.interval or self.done >= self.total:
            self.last = now
            self.print(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.perf_counter()) - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.done / self.total:.1f}%)" if self.total else ""
        return (f"[srcore] {self.done}/{self.total} {self.unit}{share} | {rate:.2f} {self.unit}/s | "
                f"ETA {eta(self.total - self.done, rate)} | {self.failed} failed")
