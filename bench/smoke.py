"""``--smoke``: every bench the README or bench/results cites runs in ``make test`` at toy size
(tests/test_benches.py) and checks that its own figures are measurements, so a change elsewhere cannot
silently break it."""

from __future__ import annotations

import math


def check_positive(rows: list[dict], *keys: str) -> None:
    """Each row has every key, a finite number above zero; raises naming the first that is not."""
    assert rows, "the bench measured nothing"
    for row in rows:
        for key in keys:
            value = row.get(key)
            ok = isinstance(value, (int, float)) and math.isfinite(value) and value > 0
            assert ok, f"--smoke: {key} is {value!r}, not a positive measurement, in {row}"
    print(f"smoke: {len(rows)} row(s), {', '.join(keys)} sane")
