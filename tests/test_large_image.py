"""A 4000x3000 image upscaled x4 on CPU with tile 256 stays under a stated memory bound.

Bound: 3 GB peak RSS for the whole process (measured 1.5 GB alone and 2.25 GB inside the full suite:
allocator fragmentation varies) (Python with torch and srcore imported takes ~0.55 GB; the
16000x12000 uint8 output is 0.58 GB). A whole-image pass would hold the float32 output (2.3 GB) and the
network's 48-channel pre-shuffle feature map (2.3 GB) at once.
"""

from __future__ import annotations

import json
import subprocess
import sys

PEAK_RSS_BOUND_GB = 3.0

SCRIPT = """
import json, resource, time
import numpy as np, torch
import srcore
torch.manual_seed(0)
model = srcore.create_model("realesr-animevideov3", num_feat=16, num_conv=4)  # compact x4
up = srcore.Upscaler(model, tile=256, batch_size=4)
image = np.empty((3000, 4000, 3), np.uint8)  # built in place: the bound is about the upscale, not the test
image[..., 0] = (np.arange(4000) * 255 // 4000).astype(np.uint8)[None, :]
image[..., 1] = (np.arange(3000) * 255 // 3000).astype(np.uint8)[:, None]
image[..., 2] = (np.arange(3000)[:, None] + np.arange(4000)[None, :]) % 256
start = time.perf_counter()
out = up.upscale_network_input(image)
print(json.dumps({"shape": out.shape, "dtype": str(out.dtype), "seconds": time.perf_counter() - start,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                  "corner": int(out[-1, -1, 0])}))
"""


def test_4000x3000_upscale_under_memory_bound():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(report)
    assert report["shape"] == [12000, 16000, 3] and report["dtype"] == "uint8"
    assert report["peak_rss_gb"] < PEAK_RSS_BOUND_GB, report
