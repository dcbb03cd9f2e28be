"""OpenVINO as the network runtime on CPUs (the ``openvino`` extra): the field's standard CPU inference engine.

On a 2-core AVX512-BF16 EPYC it is 1.2-2x eager PyTorch bf16 and 1.3-2.1x Real-ESRGAN's ncnn build
(``bench/inference.py --peers``; docs/engine.md). The PyTorch network is converted in memory
(``openvino.convert_model``, no ONNX file), with dynamic batch, height and width, and compiled once per
precision. Whole 8-bit images take a second model built from the same conversion, with normalisation and
quantisation fused into it (uint8 NHWC in and out): no PyTorch operation runs between inferences, whose
OpenMP threads would otherwise spin against OpenVINO's on the same cores (6-12% of the compact model's time).
Several such images run concurrently on OpenVINO's throughput streams (one thread each: +7% on 128 px).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import threading
import warnings

import numpy as np
import torch
from torch import nn

from .zoo import cache_dir


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


class OpenVINONetwork:
    """A network compiled by OpenVINO for this CPU: (N, C, h, w) float tensor -> (N, C, h*s, w*s) float32 tensor.

    ``dtype`` picks the inference precision (bf16 runs natively on AVX512-BF16/AMX CPUs; fp32 otherwise).
    Thread-safe: each call uses an inference request of its own thread.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype, threads: int):
        import openvino as ov

        converted = converted_model(model)
        hint = {torch.bfloat16: "bf16", torch.float16: "f16"}.get(dtype, "f32")
        self._core = ov.Core()
        self._config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": max(1, threads),
                        # OpenVINO pins its threads to the first cores: two 1-thread workers would share core 0
                        "ENABLE_CPU_PINNING": threads >= (os.cpu_count() or 1)}
        self.compiled = self._compile(converted, "LATENCY")
        self.output = self.compiled.output(0)
        self.precision = hint
        self._converted = converted
        self._pixel_models: dict[str, object] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def _compile(self, model, hint: str):
        return self._core.compile_model(model, "CPU", {**self._config, "PERFORMANCE_HINT": hint})

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        # the input is read in place; the output is copied out of the request's buffer, which the next call reuses
        result = request.infer({0: x.float().contiguous().numpy()}, share_inputs=True)[self.output]
        return torch.from_numpy(result)

    def upscale_uint8(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """(h, w, C) uint8 C-contiguous images of one shape -> (h*s, w*s, C) uint8, by the fused pixel model.

        Whole rounds of images run concurrently, one per throughput stream; the rest one at a time on all
        threads (a single image on one stream would run at half speed on two cores)."""
        out: list[np.ndarray] = []
        streams = self._pixel_requests("THROUGHPUT") if len(images) > 1 else []
        rounds = len(images) // len(streams) if len(streams) > 1 else 0
        done = rounds * len(streams)
        for start in range(0, done, max(1, len(streams))):
            chunk = [im[None] for im in images[start : start + len(streams)]]  # kept alive while they run
            for request, x in zip(streams, chunk, strict=True):
                request.start_async({0: x}, share_inputs=True)
            for request, _ in zip(streams, chunk, strict=True):
                request.wait()
                out.append(request.get_output_tensor(0).data[0].copy())
        if done < len(images):
            request = self._pixel_requests("LATENCY")[0]
            for image in images[done:]:
                out.append(request.infer({0: image[None]}, share_inputs=True)[0][0].copy())
        return out

    def _pixel_requests(self, hint: str) -> list:
        """This thread's inference requests of the pixel model compiled for ``hint`` (compiled on first use)."""
        requests = getattr(self._local, hint, None)
        if requests is None:
            with self._lock:
                if hint not in self._pixel_models:
                    self._pixel_models[hint] = self._compile(pixel_model(self._converted), hint)
            compiled = self._pixel_models[hint]
            count = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") if hint == "THROUGHPUT" else 1
            requests = [compiled.create_infer_request() for _ in range(max(1, count))]
            setattr(self._local, hint, requests)
        return requests


def converted_model(model: nn.Module):
    """``model`` converted to OpenVINO (dynamic batch, height and width), from the local disk cache
    (``$SRCORE_CACHE/openvino/<digest>.xml``, keyed by the architecture, its weights and OpenVINO's version)
    when an earlier process converted the same weights: conversion traces the network (2 s for the compact
    models, 12 s for RRDBNet), loading takes milliseconds. Processes starting together convert once (a lock
    file); the cache is written atomically."""
    import fcntl

    import openvino as ov

    folder = cache_dir() / "openvino"
    key = _weights_digest(model, ov.__version__)
    xml = folder / f"{key}.xml"
    core = ov.Core()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / f"{key}.lock", "w")  # noqa: SIM115 (held until the conversion is cached)
    except OSError:  # a read-only cache: convert in memory
        return _convert(model)
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if xml.exists():
            try:
                return core.read_model(str(xml))
            except Exception:  # a damaged entry: convert again, below
                pass
        converted = _convert(model)
        tmp = folder / f".{key}.{os.getpid()}"
        try:
            ov.save_model(converted, f"{tmp}.xml", compress_to_fp16=False)
            os.replace(f"{tmp}.bin", xml.with_suffix(".bin"))
            os.replace(f"{tmp}.xml", xml)
            return core.read_model(str(xml))  # what every later process runs, this one too
        except OSError:  # a full or read-only disk: this process runs its own conversion, uncached
            return converted


def _convert(model: nn.Module):
    import openvino as ov

    descriptor = model.descriptor
    side = -(-64 // descriptor.size_multiple) * descriptor.size_multiple
    probe = torch.rand(1, descriptor.in_channels, max(side, descriptor.min_size), max(side, descriptor.min_size))
    source = copy.deepcopy(model).float().eval().cpu()
    # OpenVINO's PyTorch frontend traces with torch.jit.trace, which torch now flags as deprecated: the
    # warning is about OpenVINO's call, not ours, and would reach every user's console
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace", category=FutureWarning)
        return ov.convert_model(source, example_input=probe,
                                input=[ov.PartialShape([-1, descriptor.in_channels, -1, -1])])


def _weights_digest(model: nn.Module, version: str) -> str:
    digest = hashlib.sha256(f"{type(model).__name__} {getattr(model, 'hparams', None)} {version}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def pixel_model(converted):
    """The converted network with its pixels' conversions fused in: uint8 (N, H, W, C) in, [0, 1] floats
    inside, uint8 (N, H*s, W*s, C) out, rounded half to even and clamped as the PyTorch path quantises."""
    import openvino as ov
    import openvino.opset13 as ops
    from openvino.preprocess import PrePostProcessor

    def quantise(node):
        y = ops.round(ops.multiply(node, ops.constant(np.float32(255.0))), "half_to_even")
        return ops.convert(ops.clamp(y, 0.0, 255.0), "u8").output(0)

    ppp = PrePostProcessor(converted.clone())
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).scale(255.0)
    ppp.output().model().set_layout(ov.Layout("NCHW"))
    ppp.output().postprocess().custom(quantise)
    ppp.output().tensor().set_layout(ov.Layout("NHWC"))
    return ppp.build()
