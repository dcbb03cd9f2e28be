"""Buckets of real image files on the loopback S3 server, and the bucket job run as users run it."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
from command_helpers import run_main
from PIL import Image, PngImagePlugin

from pipelines.local_s3 import s3_client

ROOT = Path(__file__).resolve().parents[1]


def _encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def good_images(count: int = 20, seed: int = 0) -> dict[str, tuple[bytes, tuple[int, int], str]]:
    """``count`` real images of mixed sizes and modes: key -> (file bytes, (width, height), expected mode).

    Modes cycle through RGB (PNG, JPEG, WebP, TIFF), RGBA, L, 16-bit RGB and 16-bit gray.
    """
    rng = np.random.default_rng(seed)
    images = {}
    for i in range(count):
        w, h = 24 + 8 * (i % 5), 20 + 6 * (i % 4)
        smooth = cv2.resize(rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 4), dtype=np.uint8), (w, h),
                            interpolation=cv2.INTER_CUBIC)
        kind = i % 8
        if kind == 0:
            data, mode, key = _encode(Image.fromarray(smooth[..., :3]), "PNG"), "RGB", f"photos/rgb_{i}.png"
        elif kind == 1:
            data, mode, key = _encode(Image.fromarray(smooth, "RGBA"), "PNG"), "RGBA", f"photos/rgba_{i}.png"
        elif kind == 2:
            data, mode, key = _encode(Image.fromarray(smooth[..., 0], "L"), "PNG"), "L", f"scans/gray_{i}.png"
        elif kind == 3:
            arr16 = smooth[..., :3].astype(np.uint16) * 257
            ok, enc = cv2.imencode(".png", arr16[..., ::-1].copy())
            data, mode, key = enc.tobytes(), "RGB;16", f"scans/deep/rgb16_{i}.png"
        elif kind == 4:
            data, mode, key = _encode(Image.fromarray(smooth[..., :3]), "JPEG"), "RGB", f"photos/jpeg_{i}.jpg"
        elif kind == 5:
            gray16 = smooth[..., 0].astype(np.uint16) * 257
            ok, enc = cv2.imencode(".png", gray16)
            data, mode, key = enc.tobytes(), "L;16", f"scans/deep/gray16_{i}.png"
        elif kind == 6:
            data, mode, key = _encode(Image.fromarray(smooth[..., :3]), "WEBP"), "RGB", f"web/webp_{i}.webp"
        else:
            data, mode, key = _encode(Image.fromarray(smooth[..., :3]), "TIFF"), "RGB", f"scans/tiff_{i}.tif"
        images[key] = (data, (w, h), mode)
    return images


def declared_bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` RGB pixels (a decompression bomb's signature)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width * 3 + 1) * 4)  # a few rows; the rest would inflate to 1.2 GB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bad_files() -> dict[str, tuple[bytes, str]]:
    """key -> (bytes, a phrase the error must contain)."""
    good = _encode(Image.fromarray(np.full((64, 64, 3), 128, np.uint8)), "PNG")
    return {
        "bad/corrupt.png": (good[: len(good) // 2], "truncated or corrupt"),
        "bad/empty.png": (b"", "empty file"),
        "bad/notes.png": (b"these are my notes, not an image\n", "not a recognised image format"),
        "bad/bomb.png": (declared_bomb_png(), "over the limit"),
    }


def make_bucket(bucket: str, prefix: str, files: dict[str, bytes]) -> None:
    client = s3_client()
    client.create_bucket(Bucket=bucket)
    for key, data in files.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=data)


def list_objects(bucket: str, prefix: str) -> dict[str, dict]:
    """key (relative to prefix) -> {ETag, LastModified, Size}, reports and temporary keys left out."""
    client = s3_client()
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) + 1:]
            if not rel.startswith("_reports/") and not rel.rsplit("/", 1)[-1].startswith("."):
                out[rel] = {"ETag": obj["ETag"], "LastModified": obj["LastModified"], "Size": obj["Size"]}
    return out


def get_object(bucket: str, key: str) -> bytes:
    return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()


def job_command(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "jobs" / "upscale_bucket.py"), "--no-progress", *args]


def run_job(*args: str) -> subprocess.CompletedProcess:
    """The bucket job's ``main(argv)`` in this process, on the Ray this process is connected to (the
    ``shared_ray`` fixture), its stdout and stderr captured as a job process's would be.

    A job process adds ~10 s of imports and a Ray start on 2 cores and nothing the test looks at; the
    entry points themselves run as processes in test_upscale_bucket (``python jobs/upscale_bucket.py``,
    ``srcore bucket``), test_job_submit (``ray job submit``) and the killed-run tests.
    """
    import ray

    from pipelines.commands.bucket import main

    assert ray.is_initialized(), "run_job runs on the shared Ray head: use the shared_ray fixture"
    return run_main(main, ["--no-progress", *args], job_command()[:2])


def private_env(**extra: str) -> dict[str, str]:
    """This process's environment without RAY_ADDRESS, plus ``extra``: a job process given it starts a Ray of
    its own, whose workers see ``extra`` (the shared head's workers were started with the run's environment)."""
    return {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **extra}


def run_job_process(*args: str, env: dict | None = None, timeout: float = 600,
                    command: list[str] | None = None) -> subprocess.CompletedProcess:
    """The bucket job as users start it, in its own process: ``python jobs/upscale_bucket.py`` (or
    ``command``, e.g. ``srcore bucket``). It joins the Ray head RAY_ADDRESS names, else starts a private one."""
    cmd = [*command, "--no-progress", *args] if command else job_command(*args)
    return subprocess.run(cmd, cwd=ROOT, env=os.environ.copy() if env is None else env, capture_output=True,
                          text=True, timeout=timeout)


def summary_of(result: subprocess.CompletedProcess) -> dict:
    """The run's summary.json, found beside report.html, whose location the job prints last."""
    line = next(line for line in reversed(result.stdout.splitlines()) if line.startswith("[srcore] report"))
    location = line.split()[-1].rsplit("/", 1)[0] + "/summary.json"
    if location.startswith("s3://"):
        import s3fs

        fs = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"], skip_instance_cache=True)
        return json.loads(fs.cat_file(location))
    return json.loads(Path(location).read_text())


# Names an uploader chose: markup, quotes, script-looking text and a closing </script> (an S3 key may hold '/').
# Each would set window.pwned if the page ran it.
HOSTILE_KEYS = {
    "tag": "photos/<img src=x onerror=\"window.pwned='tag'\">.png",
    "attribute": "photos/\"'><svg onload=window.pwned='attribute'> & co.png",
    "script": "photos/</script><script>window.pwned='script'</script>.png",
    "template": "photos/${window.pwned='template'}{{7*7}}.png",
}
HOSTILE_BAD_KEY = "bad/<b onmouseover=\"window.pwned='error'\">broken</b>.png"  # its error text quotes it


def hostile_png(seed: int, metadata: bool) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), np.uint8)
    info, exif = PngImagePlugin.PngInfo(), Image.Exif()
    if metadata:  # the catalogue's own fields, with markup in them
        info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta xmlns:x='adobe:ns:meta/'><dc:description>"
                      "&lt;script&gt;window.pwned='xmp'&lt;/script&gt;</dc:description></x:xmpmeta>")
        exif[270] = "<img src=x onerror=\"window.pwned='exif'\">"  # ImageDescription
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", pnginfo=info, exif=exif)
    return buf.getvalue()


# Credentials no artefact may carry: the driver's and the workers' store variables during the hostile run
SECRETS = {"AWS_ACCESS_KEY_ID": "AKIASRCORETESTKEY7Q2", "AWS_SECRET_ACCESS_KEY": "wJalrSrcoreTestSecretK7MDENGbPxRfiCY",
           "AWS_SESSION_TOKEN": "FwoGZXIvYXdzSrcoreTestSessionToken9Zq"}


def hostile_bucket_run(head: str) -> subprocess.CompletedProcess:
    """The bucket job, in this process on the shared head, over s3://hostile/in: four images whose keys (and
    one's EXIF and XMP) hold markup and script, and a truncated file whose error text quotes its hostile
    name; previews on. The driver and the workers hold :data:`SECRETS` as their store credentials."""
    import pytest
    from conftest import connect_to_shared_head

    files = {key: hostile_png(i, metadata=i == 1) for i, key in enumerate(HOSTILE_KEYS.values())}
    files[HOSTILE_BAD_KEY] = hostile_png(9, metadata=False)[:60]  # truncated
    with pytest.MonkeyPatch.context() as env:
        for name, value in SECRETS.items():
            env.setenv(name, value)
        make_bucket("hostile", "in", files)
        connect_to_shared_head(head, SECRETS)
        try:
            return run_job("--input", "s3://hostile/in", "--output", "s3://hostile/out", "--previews", "8",
                           "--max-failure-rate", "0.5")
        finally:
            connect_to_shared_head(head)


def upscaler_nodes(cluster) -> set[str]:
    """The ids of this cluster's nodes that run a live upscaling actor: a Ray worker's parent is its node's
    raylet, and an actor's process title names its class. ``cluster``: a ``ray.cluster_utils.Cluster``. Read
    from /proc, so another test's Ray on this machine (or a GCS client left connected to one) cannot answer
    for this cluster."""
    raylets = {node.all_processes["raylet"][0].process.pid: node.node_id
               for node in [cluster.head_node, *cluster.worker_nodes]}
    found = set()
    for proc in Path("/proc").iterdir():
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):  # not a process, or it ended meanwhile
            continue
        if title.startswith("ray::MapWorker(MapBatches(UpscaleWriter))") and parent in raylets:
            found.add(raylets[parent])
    return found
