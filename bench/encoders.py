"""Output encoders side by side: which one should write upscaled images (often the pipeline's limit at 16x).

PNG: srcore's band writer (what srcore writes, ``srcore.png_writer``), Pillow and OpenCV (all zlib, level 1
by default). JPEG: Pillow, OpenCV, torchvision's ``encode_jpeg``
on the CPU and, on a GPU host, on CUDA (nvjpeg), where the pixels are already on the device. Same image,
one process, best of ``--rounds``; prints output MP/s and file size per encoder.

    python bench/encoders.py --size 2048
    python bench/encoders.py --size 4096 --json-out encoders.json     # on a GPU host: adds the CUDA row
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inference import synthetic_images  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from srcore.png_writer import PngWriter  # noqa: E402


def best_seconds(fn, rounds: int) -> tuple[float, int]:
    size = len(fn())
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best, size


def encoders(rgb: np.ndarray, quality: int, png_level: int) -> dict:
    bgr = np.ascontiguousarray(rgb[..., ::-1])

    def pil(fmt: str, **params):
        def run() -> bytes:
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, fmt, **params)
            return buf.getvalue()
        return run

    def srcore_png() -> bytes:
        buf = io.BytesIO()
        writer = PngWriter(buf, rgb.shape[1], rgb.shape[0], 3, rgb.dtype, png_level)
        for row in range(0, rgb.shape[0], 512):  # in bands, as large outputs stream
            writer.write(rgb[row : row + 512])
        writer.close()
        return buf.getvalue()

    found = {
        f"png  srcore PngWriter (level {png_level})": srcore_png,
        f"png  Pillow (level {png_level})": pil("PNG", compress_level=png_level),
        f"png  OpenCV (level {png_level})": lambda: cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION,
                                                                             png_level])[1].tobytes(),
        f"jpeg Pillow (q{quality})": pil("JPEG", quality=quality),
        f"jpeg OpenCV (q{quality})": lambda: cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
        .tobytes(),
    }
    try:
        from torchvision.io import encode_jpeg

        chw = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
        found[f"jpeg torchvision CPU (q{quality})"] = lambda: encode_jpeg(chw, quality=quality).numpy().tobytes()
        if torch.cuda.is_available():
            on_gpu = chw.cuda()

            def cuda_jpeg() -> bytes:  # the pixels are on the device already, as the engine leaves them
                data = encode_jpeg(on_gpu, quality=quality)
                return data.cpu().numpy().tobytes()
            found[f"jpeg torchvision CUDA (q{quality})"] = cuda_jpeg
    except Exception as exc:  # an old torchvision, or one without its image extension
        print(f"torchvision encode_jpeg skipped: {exc}", flush=True)
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=2048, help="square image side (an upscaled output's size)")
    p.add_argument("--quality", type=int, default=95)
    p.add_argument("--png-level", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json-out")
    p.add_argument("--dry-run", action="store_true", help="list the encoders on a tiny image, exit")
    p.add_argument("--smoke", action="store_true", help="256x256, one round, the figures checked (make test)")
    args = p.parse_args()
    if args.smoke:
        args.size, args.rounds = 256, 1
    if args.dry_run:
        names = list(encoders(np.zeros((16, 16, 3), np.uint8), args.quality, args.png_level))
        print(json.dumps({"dry_run": True, "encoders": names}))
        return
    # an upscaled-looking image: smooth content, enlarged 4x, with a little noise
    small = synthetic_images(1, args.size // 4)[0]
    rgb = cv2.resize(small, (args.size, args.size), interpolation=cv2.INTER_CUBIC)
    megapixels = args.size**2 / 1e6
    rows = []
    for name, fn in encoders(rgb, args.quality, args.png_level).items():
        seconds, size = best_seconds(fn, args.rounds)
        rows.append({"encoder": name, "MP_per_s": round(megapixels / seconds, 2), "ms": round(seconds * 1e3, 1),
                     "MB": round(size / 2**20, 2)})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.size}x{args.size} RGB, best of {args.rounds}:\n\n| encoder | MP/s | ms | MB |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['encoder']} | {r['MP_per_s']} | {r['ms']} | {r['MB']} |")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"size": args.size, "rows": rows}, f, indent=1)
    if args.smoke:
        from smoke import check_positive

        check_positive(rows, "MP_per_s", "ms", "MB")
        assert {"png  Pillow", "jpeg Pillow"} <= {r["encoder"].split(" (")[0] for r in rows}, rows


if __name__ == "__main__":
    main()
