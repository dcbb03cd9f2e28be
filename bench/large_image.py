"""Peak memory of one very large image through the CLI's path (``srcore.upscale.upscale_file``), against the
stated bound.

A synthetic side x side (or side x height) RGB PNG is written, then upscaled in a fresh process (peak RSS is a
per-process high-water mark) with the engine's defaults; its PNG output streams (``srcore.upscale.streams``). Prints the
output size, seconds, the peak RSS and the bound of docs/engine.md ("Large outputs"):

    bound = ready + max(decoding, upscaling)     (ready: the process with its model loaded and run once)
    decoding  = file bytes + H x W x 7 bytes (Pillow's 4-byte RGB pixels and the 3-byte array; RGB input)
    upscaling = H x W x C bytes (the decoded input) + 3 x accumulator
    accumulator = (T + O) x s x W x s x C x 4 bytes (one tile row of float32 output; T the tile, O its overlap).
                The factor 3 covers, measured, the tile row's other buffers: the uploaded input band and its
                tiles, the finished rows (quantised, then PNG-filtered) and the allocator's slack.

    python bench/large_image.py --side 12000                      # the bundled x4 model: 48000x48000 out
    python bench/large_image.py --side 12000 --model tiny-x2      # 144 MP in, 576 MP out
    python bench/large_image.py --side 12000 --height 1400 --model tiny-x2   # what tests/test_streaming.py runs
    python bench/large_image.py --side 2000 --folder /tmp/large   # keep the files
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
import numpy as np, torch
from pathlib import Path
from PIL import Image
import srcore
from srcore.upscale import upscale_file
from srcore.options import EngineOptions
side, folder, name, height = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
yy = np.arange(height, dtype=np.uint16)[:, None]
xx = np.arange(side, dtype=np.uint16)[None, :]
image = np.empty((height, side, 3), np.uint8)
image[..., 0] = (xx // 47).astype(np.uint8)
image[..., 1] = (yy // 47).astype(np.uint8)
image[..., 2] = ((xx + yy) % 256).astype(np.uint8)
Image.fromarray(image).save(folder + "/large.png", compress_level=1)
del image
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
if name == "tiny-x2":
    torch.manual_seed(0)
    model = srcore.create_model("realesr-animevideov3", num_feat=8, num_conv=2, upscale=2)
else:
    model = srcore.load_model(name)
upscaler = EngineOptions().build(model, "cpu")
upscaler.upscale_network_input(np.zeros((64, 64, 3), np.uint8))  # the runtime's own buffers, before the image
with open("/proc/self/statm") as f:
    ready = int(f.read().split()[1]) * 4096 / 1e9
start = time.perf_counter()
path, size = upscale_file(upscaler, folder + "/large.png", folder + "/out", name)
print(json.dumps({{"input_file_bytes": Path(folder + "/large.png").stat().st_size, "output": size,
                  "seconds": round(time.perf_counter() - start, 1), "tile": upscaler.tile,
                  "overlap": upscaler.overlap, "scale": upscaler.scale, "runtime": upscaler.runtime,
                  "output_MB": round(path.stat().st_size / 2**20, 1), "rss_generating_gb": round(base, 2),
                  "rss_ready_gb": round(ready, 2),
                  "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}}))
"""


def bound_gb(side: int, scale: int, tile: int, overlap: int, base_gb: float, file_bytes: int,
             height: int | None = None) -> float:
    """docs/engine.md's bound for a side x height RGB input (height: side): base + max(decoding, upscaling)."""
    height = side if height is None else height
    width_out, c = side * scale, 3
    accumulator = (tile + overlap) * scale * width_out * c * 4
    decoding = file_bytes + side * height * 7
    upscaling = side * height * c + 3 * accumulator
    return base_gb + max(decoding, upscaling) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--side", type=int, default=12000, help="the input's width (and height, without --height)")
    p.add_argument("--height", type=int, help="a strip's height (memory follows the width: a strip taller than "
                   "the streaming threshold checks the same bound in a fraction of the time)")
    p.add_argument("--model", default="srcore-compact-x4", help="a model name or file, or tiny-x2")
    p.add_argument("--smoke", action="store_true", help="a 12000x1400 strip with tiny-x2 (24000x2800 out, over the "
                   "streaming threshold), peak RSS checked against the bound (make test)")
    p.add_argument("--folder", help="keep the input (large.png) and output (out/large.png) here "
                   "(default: a temporary folder, removed)")
    args = p.parse_args()
    if args.smoke:
        args.side, args.height, args.model = 12000, 1400, "tiny-x2"
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.folder or temporary
        Path(folder).mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        height = args.height or args.side
        result = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), str(args.side), folder,
                                 args.model, str(height)], capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(result.stderr[-3000:])
        row = json.loads(result.stdout.strip().splitlines()[-1])
    row.update(input=[args.side, height], model=args.model, total_seconds=round(time.perf_counter() - start, 1),
               bound_gb=round(bound_gb(args.side, row["scale"], row["tile"], row["overlap"], row["rss_ready_gb"],
                                       row["input_file_bytes"], height), 2),
               whole_output_gb=round(row["output"][0] * row["output"][1] * 3 / 1e9, 2))
    print(json.dumps(row))
    if args.smoke:
        assert row["output"] == [2 * args.side, 2 * args.height], row
        assert 0 < row["peak_rss_gb"] <= row["bound_gb"] * 1.05, f"--smoke: peak RSS over the bound: {row}"


if __name__ == "__main__":
    main()
