"""Videos: frames per second through ``srcore upscale`` and the bucket job, against the engine alone; and the
temporal stability of the bundled models.

One clip, made here: a pan over a photo (``--image``, default an Urban100 picture, only as moving texture)
at ``--size`` (360p: 640x360), ``--frames`` frames at 24 frames/s (a keyframe each half second), H.264 with an
AAC sine track. Then, in one process's run, side by side:

- engine: the frames, decoded beforehand, through the engine in the video path's batches (the ceiling of
  the network alone: no decoding, no encoding);
- library: :func:`srcore.upscale.upscale_video_file`, the CLI's own function (decode, upscale, encode H.264,
  join with the audio);
- cli: ``srcore upscale clip.mp4 -o out/`` as a process (adds start-up and model loading);
- job: ``jobs/upscale_bucket.py`` over a folder holding the clip, on a local Ray, the clip cut into
  ``--segment-seconds`` segments for the actors (one per CPU here);

then flicker (the output's frame-to-frame luma change over that of bicubic; 1.0 = as stable as bicubic) for
each bundled model on a smaller clip. On a GPU host, ``--device cuda --size 1920x1080`` measures the engine
and library rows (PyAV comes there in its own carry, ``make device-kit-video``: docs/gpu.md).

    python bench/video.py                                   # CPU: 360p, 48 frames, compact x4
    python bench/video.py --device cuda --size 1920x1080 --frames 96 --tools engine,library \\
        --models srcore-compact-x4,fresh:realesrgan-x4plus --flicker-models none   # docs/gpu.md: the av kit
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("SRCORE_SHARED", ROOT.parent / "shared"))

from srcore.options import EngineOptions, OutputOptions  # noqa: E402
from srcore.upscale import upscale_video_file  # noqa: E402
from srcore.video import FRAMES_PER_BATCH  # noqa: E402
from srcore.weights import load_upscaling_model  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from inference import resolve_model  # noqa: E402

BUNDLED = ("srcore-compact-x4", "srcore-compact-x4-gan", "srcore-distill-x4")


def write_pan(path: Path, image: np.ndarray, size: tuple[int, int], frames: int, rate: int = 24) -> list[np.ndarray]:
    """A clip panning over ``image`` (resized to cover ``size`` with room to move), H.264 with an AAC sine;
    returns its frames as written (RGB), before compression."""
    w, h = size
    scale = max((w + 2 * frames) / image.shape[1], (h + frames) / image.shape[0], 1.0)
    if scale > 1:
        image = np.asarray(Image.fromarray(image).resize((int(image.shape[1] * scale) + 1,
                                                          int(image.shape[0] * scale) + 1), Image.BICUBIC))
    pictures = [np.ascontiguousarray(image[i:i + h, 2 * i:2 * i + w]) for i in range(frames)]
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.options = {"crf": "20", "preset": "veryfast", "g": str(rate // 2)}  # a keyframe each half second
        sound = out.add_stream("aac", rate=44100)
        sound.layout = "mono"
        for picture in pictures:
            for packet in video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        samples = int(44100 * frames / rate)
        wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 44100)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = np.zeros((1, 1024), np.float32)
            chunk[0, :min(1024, samples - start)] = wave[start:start + 1024]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 44100, start, Fraction(1, 44100)
            for packet in sound.encode(frame):
                out.mux(packet)
        for packet in sound.encode():
            out.mux(packet)
    return pictures


def load(spec: str):
    """(model, id): a registered name or weights file, or ``fresh:NAME`` (fresh weights: the GPU host has no
    downloads, and speed does not depend on the weights; the CLI and job rows need a real model)."""
    if spec.startswith("fresh:"):
        return resolve_model(spec), spec
    return load_upscaling_model(spec, None)


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def engine_rate(upscaler, frames: list[np.ndarray]) -> float:
    upscaler.upscale_images(frames[:1])  # warm-up (compilation, first-call allocations)
    start = time.perf_counter()
    for i in range(0, len(frames), FRAMES_PER_BATCH):
        upscaler.upscale_images(frames[i:i + FRAMES_PER_BATCH])
    return len(frames) / (time.perf_counter() - start)


def library_rate(upscaler, clip: Path, out: Path, name: str) -> tuple[float, float | None]:
    start = time.perf_counter()
    result = upscale_video_file(upscaler, clip, out, name, OutputOptions())
    return result.frames / (time.perf_counter() - start), result.flicker


def cli_rate(clip: Path, out: Path, model: str, frames: int) -> float:
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "srcore"), "upscale", str(clip), "-o", str(out), "--model",
                    model], check=True, capture_output=True, cwd=ROOT)
    return frames / (time.perf_counter() - start)


def job_rate(clip: Path, work: Path, model: str, frames: int, segment_seconds: float) -> dict:
    folder = work / "job-in"
    folder.mkdir(parents=True)
    os.link(clip, folder / clip.name)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "jobs" / "upscale_bucket.py"), "--no-progress", "--input",
                           str(folder), "--output", str(work / "job-out"), "--model", model,
                           "--video-segment-seconds", str(segment_seconds)], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(done.stdout[-2000:] + done.stderr[-2000:])
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith("[srcore] report"))
    summary = json.loads(Path(line.split()[-1]).with_name("summary.json").read_text())
    segment_rates = [float(m.group(1)) for m in re.finditer(r": segment \d+/\d+ \(\d+ frames, ([\d.]+) frames/s\)",
                                                             done.stdout + done.stderr)]
    return {"frames/s (process wall)": frames / wall, "frames/s (run, summary)": summary["frames_per_s"],
            "segments": len(segment_rates),
            "frames/s per actor (mean over segments)": float(np.mean(segment_rates)) if segment_rates else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="srcore-compact-x4")
    parser.add_argument("--tools", default="engine,library,cli,job")
    parser.add_argument("--segment-seconds", type=float, default=0.5)
    parser.add_argument("--flicker-models", default=",".join(BUNDLED), help="'none' to skip")
    parser.add_argument("--flicker-size", default="160x120")
    parser.add_argument("--image", default=str(SHARED / "datasets" / "Urban100" / "HR" / "img_004.png"))
    parser.add_argument("--json-out")
    parser.add_argument("--smoke", action="store_true", help="toy sizes (make test): every figure but the job's")
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.frames, args.tools = "96x64", 12, "engine,library,cli"
        args.flicker_models, args.flicker_size = "srcore-compact-x4,srcore-distill-x4", "64x48"
    size = tuple(int(v) for v in args.size.split("x"))
    tools = args.tools.split(",")
    image = np.asarray(Image.open(args.image).convert("RGB")) if Path(args.image).exists() else \
        np.random.default_rng(0).integers(0, 256, (720, 1280, 3), np.uint8)
    results: dict = {"size": args.size, "frames": args.frames, "device": args.device, "rows": [], "flicker": []}
    with tempfile.TemporaryDirectory(prefix="srcore-video-bench-") as tmp:
        work = Path(tmp)
        clip = work / "clip.mp4"
        write_pan(clip, image, size, args.frames)
        frames = decoded(clip)
        print(f"clip: {args.size}, {len(frames)} frames, H.264 + AAC; device {args.device}", flush=True)
        for model_name in args.models.split(","):
            model, name = load(model_name)
            upscaler = EngineOptions().build(model, args.device)
            row = {"model": name, "precision": upscaler.precision, "runtime": upscaler.runtime}
            if "engine" in tools:
                row["engine frames/s"] = engine_rate(upscaler, frames)
            if "library" in tools:
                row["library frames/s"], _ = library_rate(upscaler, clip, work / f"lib-{model_name}.mp4", name)
            if "cli" in tools:
                row["cli frames/s"] = cli_rate(clip, work / f"cli-{model_name}", model_name, len(frames))
            if "job" in tools:
                for key, value in job_rate(clip, work / f"job-{model_name}", model_name, len(frames),
                                           args.segment_seconds).items():
                    row[f"job {key}"] = value
            results["rows"].append(row)
            print("  " + " | ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                  flush=True)
        if args.flicker_models != "none":
            small = tuple(int(v) for v in args.flicker_size.split("x"))
            flicker_clip = work / "flicker.mp4"
            write_pan(flicker_clip, image, small, 24)
            print(f"flicker ({args.flicker_size} pan, 24 frames; output's frame-to-frame change / bicubic's):")
            for model_name in args.flicker_models.split(","):
                model, name = load_upscaling_model(model_name, None)
                upscaler = EngineOptions().build(model, args.device)
                result = upscale_video_file(upscaler, flicker_clip, work / f"flicker-{model_name}.mp4", name,
                                            OutputOptions(video_codec="ffv1"))
                results["flicker"].append({"model": name, "flicker": result.flicker})
                print(f"  {name:36s} {result.flicker:.3f}", flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    if args.smoke:
        rates = [v for row in results["rows"] for k, v in row.items() if k.endswith("frames/s")]
        flicker = [f["flicker"] for f in results["flicker"]]
        assert len(rates) == 3 and all(r > 0 for r in rates), rates
        assert len(flicker) == 2 and all(0 < f < 10 for f in flicker), flicker
        print(f"smoke: {len(rates)} rates > 0, flicker {flicker}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
