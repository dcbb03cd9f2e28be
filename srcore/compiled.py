"""The compiled engine on CUDA: each recurring input shape replays a captured CUDA graph, optionally of a
network compiled by ``torch.compile`` (Inductor, with Triton kernels).

A network upscaling small images or tiles spends much of its time launching kernels: a graph replays the whole
forward pass as one launch. Capturing costs a few forward passes, so a shape is captured the second time it
is seen (a photo archive's one-off sizes never pay for it; tiles and uniform archives do), at most
``max_graphs`` shapes. With ``measure`` (the ``auto`` mode) each captured graph is timed against eager
execution of the same shape and kept only where it is faster. Inductor compiles once per process and shape;
its kernels are cached on local disk (``TORCHINDUCTOR_CACHE_DIR``, default ``$SRCORE_CACHE/inductor``), so a
restarted worker loads them instead of compiling again.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

import torch
from torch import nn

COMPILE_MODES = ("auto", "off", "graphs", "inductor")
MAX_GRAPHS = 16


def resolve_compile(mode: str | bool, device: torch.device, runtime: str) -> str:
    """The compile mode that runs: 'graphs' and 'auto' need CUDA and PyTorch (else 'off'); 'inductor' runs
    wherever torch.compile does (on CPUs without graphs)."""
    mode = {True: "inductor", False: "off"}.get(mode, mode) if isinstance(mode, bool) else mode
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    if runtime != "torch" or (mode in ("auto", "graphs") and device.type != "cuda"):
        return "off"
    return mode


def compiled(model: nn.Module, mode: str, device: torch.device) -> nn.Module:
    """``model`` as ``mode`` runs it (:func:`resolve_compile`'s result)."""
    if mode == "off":
        return model
    if mode == "inductor":
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", _inductor_cache())
        # the default mode: fused elementwise kernels around cuDNN's convolutions, compiled in about a minute
        # (max-autotune would time Triton templates for every convolution shape: many minutes for RRDBNet)
        model = torch.compile(model, dynamic=False)
    if device.type != "cuda":
        return model
    return GraphedNetwork(model, measure=mode == "auto")


def _inductor_cache() -> str:
    from .zoo import cache_dir

    return str(cache_dir() / "inductor")


class GraphedNetwork(nn.Module):
    """Calls ``network``, replaying a captured CUDA graph for each input shape seen before (see the module).

    Thread-safe: replays are serialised (copy in, replay, copy out are queued on one stream under a lock).
    """

    def __init__(self, network: nn.Module, measure: bool = False, max_graphs: int = MAX_GRAPHS):
        super().__init__()
        self.network, self.measure, self.max_graphs = network, measure, max_graphs
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Drop every graph and its memory (an out-of-memory retry changes the shapes: they start again)."""
        self.seen: Counter = Counter()
        self.graphs: dict[tuple, tuple | None] = {}  # shape -> (static input, static output, graph), or None: eager
        self.pool = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype, x.is_contiguous(memory_format=torch.channels_last))
        with self.lock:
            entry = self.graphs.get(key, False)
            if entry is False:
                if len(self.seen) > 64 * self.max_graphs:  # an archive of one-off sizes: forget the oldest
                    self.seen = Counter(dict(self.seen.most_common(self.max_graphs)))
                self.seen[key] += 1
                captured = sum(e is not None for e in self.graphs.values())
                if self.seen[key] < 2 or captured >= self.max_graphs:
                    entry = None  # eager: not (yet) worth a capture
                else:
                    entry = self.graphs[key] = self._capture(x)
            if entry is not None:
                static_in, static_out, graph = entry
                static_in.copy_(x)
                graph.replay()
                return static_out.clone()  # queued before any later replay overwrites it
        return self.network(x)

    def _capture(self, x: torch.Tensor) -> tuple | None:
        """Warm up, capture, and with ``measure`` keep the graph only when it replays faster than eager runs;
        None when capture fails or does not pay."""
        static_in = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # the same cuDNN settings as eager passes, so a graph computes what eager computes (cuDNN's benchmark
        # mode would pick other algorithms, and its flag is global: the other thread's passes would change too)
        with torch.cuda.stream(side):
            for _ in range(2):
                self.network(static_in)
        torch.cuda.current_stream().wait_stream(side)
        try:
            # thread_local: the actor's other thread may be using the GPU meanwhile (uploads, LR checks)
            with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
                static_out = self.network(static_in)
        except RuntimeError:  # an operation that cannot be captured: this shape stays eager
            torch.cuda.synchronize()
            return None
        if self.measure and _seconds(lambda: self.network(static_in)) <= _seconds(graph.replay):
            return None
        return static_in, static_out, graph


def _seconds(run, repeats: int = 3) -> float:
    """The fastest of ``repeats`` timed runs on the current stream (CUDA events)."""
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return best
