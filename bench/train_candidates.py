"""Training cost of candidate <= 1M-parameter x4 networks (issue 16): parameters, train steps/s, samples/s.

One process, the same synthetic HR patches for every candidate: bicubic LR, L1 loss, Adam, bf16 autocast on
CUDA. What a GPU minute buys for each network, to pick the one to train on T91 + BSD200.

    python bench/train_candidates.py --device cuda --batches 32,64 --patch 192 --seconds 6
    python bench/train_candidates.py --device cpu --batches 2 --patch 48 --seconds 1    # smoke
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from srcore.archs.registry import build, get_variant

CANDIDATES = {
    "srcore-compact-x4 (bundled)": ("srvgg", get_variant("srcore-compact-x4").kwargs),
    "compact f64 c24 bicubic": ("srvgg", dict(num_feat=64, num_conv=24, upscale=4, skip="bicubic")),
    "compact f80 c16 bicubic": ("srvgg", dict(num_feat=80, num_conv=16, upscale=4, skip="bicubic")),
    "rrdb-lite f32 b5 g16": ("rrdbnet", dict(scale=4, num_feat=32, num_block=5, num_grow_ch=16)),
    "swinir-s-x4": ("swinir", get_variant("swinir-s-x4").kwargs),
}


def measure(name: str, arch: str, kwargs: dict, batch: int, patch: int, seconds: float, device: str) -> dict:
    torch.manual_seed(0)
    model = build(arch, kwargs).to(device).train()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    hr = torch.rand(batch, 3, patch, patch, device=device)
    lr = F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)
    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=device.startswith("cuda"))

    def step() -> None:
        with autocast:
            loss = F.l1_loss(model(lr).float(), hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for _ in range(3):  # warm-up: cuDNN autotune, allocator
        step()
    sync()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
        if steps % 5 == 0:
            sync()
    sync()
    rate = steps / (time.perf_counter() - start)
    row = {"model": name, "params": params, "batch": batch, "hr_patch": patch, "it_per_s": round(rate, 2),
           "samples_per_s": round(rate * batch, 1)}
    if device.startswith("cuda"):
        row["peak_device_MB"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batches", default="32,64")
    p.add_argument("--patch", type=int, default=192, help="HR patch side (LR = patch / 4)")
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per candidate and batch")
    p.add_argument("--json-out")
    args = p.parse_args()
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    rows = []
    for name, (arch, kwargs) in CANDIDATES.items():
        for batch in (int(b) for b in args.batches.split(",")):
            try:
                row = measure(name, arch, kwargs, batch, args.patch, args.seconds, args.device)
            except Exception as exc:  # one candidate failing must not hide the others
                row = {"model": name, "batch": batch, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
