"""The whole bucket flow on one machine: a local S3 server, a bucket of images, the job, the report.

    make demo                        # or: python scripts/demo.py [--images FOLDER] [--limit N]

1. starts an S3-protocol server (moto) on 127.0.0.1 and points the S3 clients at it (AWS_ENDPOINT_URL);
2. uploads sample images (../shared/datasets/RealWorld when present, else generated ones) and one broken
   file to s3://demo/raw/;
3. runs jobs/upscale_bucket.py on a local Ray with the bundled default model into s3://demo/sr/;
4. copies the outputs and the report to demo-out/ (the server lives only as long as this script) and prints
   where report.html is.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]


def generated_samples(folder: Path, count: int = 6) -> None:
    """Small degraded renderings of text and shapes, for clones without the shared data."""
    rng = np.random.default_rng(0)
    for i in range(count):
        im = Image.new("RGB", (480, 360), tuple(int(v) for v in rng.integers(150, 255, 3)))
        draw = ImageDraw.Draw(im)
        for _ in range(12):
            box = sorted(rng.integers(0, 480, 2).tolist()), sorted(rng.integers(0, 360, 2).tolist())
            draw.rectangle([box[0][0], box[1][0], box[0][1], box[1][1]],
                           outline=tuple(int(v) for v in rng.integers(0, 150, 3)), width=3)
        draw.text((20, 20 + 30 * i), f"srcore sample {i}: fine print, edges and lines", fill=(20, 20, 20))
        small = im.filter(ImageFilter.GaussianBlur(1.2)).resize((120, 90), Image.BICUBIC)
        buf = io.BytesIO()
        small.save(buf, format="JPEG", quality=60)
        (folder / f"sample_{i}.jpg").write_bytes(buf.getvalue())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = Path(os.environ.get("SRCORE_SHARED", ROOT.parent / "shared"))
    p.add_argument("--images", type=Path, default=shared / "datasets" / "RealWorld", help="a folder of images")
    p.add_argument("--limit", type=int, default=12, help="upscale only the first N (the whole bucket is listed)")
    p.add_argument("--out", type=Path, default=ROOT / "demo-out", help="where outputs and the report are copied")
    p.add_argument("--model", default=None, help="default: the job's (the bundled GAN / PSNR pair at realism 0.5)")
    args = p.parse_args()

    import fsspec

    from pipelines.local_s3 import local_s3_server, upload_folder
    from srcore.archs.registry import DEFAULT_REALISM, DEFAULT_UPSCALE_MODEL

    with local_s3_server() as env:
        print(f"[demo] S3 server on {env['AWS_ENDPOINT_URL']}")
        if args.images.is_dir():
            keys = upload_folder(args.images, "demo", "raw")
            print(f"[demo] uploaded {len(keys)} images from {args.images} to s3://demo/raw/")
        else:
            samples = args.out / "samples"
            samples.mkdir(parents=True, exist_ok=True)
            generated_samples(samples)
            keys = upload_folder(samples, "demo", "raw")
            print(f"[demo] {args.images} not found: uploaded {len(keys)} generated samples to s3://demo/raw/")
        fs = fsspec.filesystem("s3", endpoint_url=env["AWS_ENDPOINT_URL"], skip_instance_cache=True)
        fs.pipe_file("demo/raw/000_broken.jpg", b"\xff\xd8\xff\xe0 a JPEG cut short")  # the report shows failures too
        cmd = [sys.executable, str(ROOT / "jobs" / "upscale_bucket.py"), "--input", "s3://demo/raw/",
               "--output", "s3://demo/sr/", "--limit", str(args.limit), "--max-failure-rate", "0.2",
               *(["--model", args.model] if args.model else [])]
        if args.model:
            print(f"[demo] model: {args.model} (--model)")
        else:
            print(f"[demo] model: the default, {DEFAULT_UPSCALE_MODEL} at --realism {DEFAULT_REALISM:g}: the "
                  "bundled GAN model blended half-way with its PSNR partner. Real photos of unknown origin "
                  "(like RealWorld's JPEGs) need it: the PSNR model alone, trained on clean bicubic inputs, turns "
                  "JPEG blocks into mosaic texture (README, 'Which bundled model, for what')")
        shown = [str(Path(c).relative_to(ROOT)) if c.startswith(str(ROOT)) else c for c in cmd[1:]]
        print("[demo] $ python", " ".join(shown), flush=True)
        code = subprocess.call(cmd, cwd=ROOT, env=os.environ.copy())
        args.out.mkdir(parents=True, exist_ok=True)
        fs.get("demo/sr/", str(args.out / "sr") + "/", recursive=True)
        reports = sorted((args.out / "sr" / "_reports").glob("*/report.html"))
        print(f"[demo] outputs (from s3://demo/sr/): {args.out / 'sr'}")
        if reports:
            print(f"[demo] report: {reports[-1]}")
    return code


if __name__ == "__main__":
    sys.exit(main())
