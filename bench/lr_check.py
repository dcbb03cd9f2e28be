"""Memory and time of the bucket job's LR-consistency check on a large output: crops against the whole image.

Each way runs in a fresh process (peak RSS is a per-process high-water mark) on the same random 8-bit input,
nearest-upscaled x4 as the output, and prints the PSNR, seconds and peak RSS growth.

    python bench/lr_check.py --side 3000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from inference import peak_rss_mb  # noqa: E402


def measure(side: int, max_pixels: int) -> dict:
    from srcore.metrics import lr_consistency

    lr = np.random.default_rng(0).integers(0, 256, (side, side, 3), np.uint8)
    sr = np.repeat(np.repeat(lr, 4, axis=0), 4, axis=1)
    before, start = peak_rss_mb(), time.perf_counter()
    psnr = lr_consistency(lr, sr, 4, max_pixels=max_pixels)
    return {"input": f"{side}x{side}", "output_MB": round(sr.nbytes / 2**20), "max_pixels": max_pixels,
            "psnr_dB": round(psnr, 2), "seconds": round(time.perf_counter() - start, 2),
            "peak_rss_growth_MB": round(peak_rss_mb() - before)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--side", type=int, default=3000, help="input side in pixels (the output is 4x)")
    p.add_argument("--smoke", action="store_true", help="a 1600x1600 input, the figures checked (make test)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(*json.loads(args.child))))
        return
    from srcore.metrics import LR_CHECK_PIXELS

    side = 1600 if args.smoke else args.side  # 2.6 MP in: over LR_CHECK_PIXELS, so the crops are scored
    rows = []
    for label, max_pixels in (("crops (default)", LR_CHECK_PIXELS), ("whole image", 10**12)):
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps([side, max_pixels])],
                             capture_output=True, text=True, check=True)
        print(label, out.stdout.strip().splitlines()[-1], flush=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if args.smoke:
        from smoke import check_positive

        check_positive(rows, "psnr_dB", "output_MB")
        assert all(row["seconds"] >= 0 and row["peak_rss_growth_MB"] >= 0 for row in rows), rows


if __name__ == "__main__":
    main()
