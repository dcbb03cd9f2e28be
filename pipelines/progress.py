"""One console line per interval for long runs: done / total, rate, ETA, failures so far, time elapsed."""

from __future__ import annotations

import datetime as dt
import threading
import time


def eta(remaining: float, rate: float) -> str:
    """Time left at ``rate`` units per second, as H:MM:SS (``?`` before any rate is known)."""
    return str(dt.timedelta(seconds=round(remaining / rate))) if rate > 0 else "?"


class ProgressLog:
    """Prints ``[srcore] 120/1000 images (12.0%) | 3.40 images/s | ETA 0:04:18 | 2 failed | 0:00:35 elapsed``
    every ``interval`` seconds, and once more when the count reaches the total.

    Results arrive a batch at a time, and one batch can take longer than the interval (large images, slow
    models): inside ``with log:`` a heartbeat thread prints the line on time between batches too, saying how
    long ago the last result came, so a silent console always means a stuck process, never a slow batch.
    """

    def __init__(self, total: int, unit: str = "images", interval: float = 10.0, print_fn=print):
        self.total, self.unit, self.interval, self.print = total, unit, interval, print_fn
        self.done = self.failed = 0
        self.start = self.last = self.last_result = time.perf_counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, done: int, failed: int = 0) -> None:
        with self._lock:
            self.done += done
            self.failed += failed
            now = self.last_result = time.perf_counter()
            if now - self.last >= self.interval or self.done >= self.total:
                self._emit(now)

    def line(self, now: float | None = None) -> str:
        now = now or time.perf_counter()
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.done / self.total:.1f}%)" if self.total else ""
        quiet = now - self.last_result
        waiting = f" | last result {quiet:.0f} s ago" if quiet >= self.interval else ""
        return (f"[srcore] {self.done}/{self.total} {self.unit}{share} | {rate:.2f} {self.unit}/s | "
                f"ETA {eta(self.total - self.done, rate)} | {self.failed} failed | "
                f"{dt.timedelta(seconds=round(elapsed))} elapsed{waiting}")

    def _emit(self, now: float) -> None:
        self.last = now
        self.print(self.line(now))

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.interval / 4)):
            with self._lock:
                now = time.perf_counter()
                if now - self.last >= self.interval and self.done < self.total:
                    self._emit(now)

    def __enter__(self) -> ProgressLog:
        self._thread = threading.Thread(target=self._beat, name="srcore-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
