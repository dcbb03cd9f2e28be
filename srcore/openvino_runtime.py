"""OpenVINO as the network runtime on CPUs (the ``openvino`` extra): the field's standard CPU inference engine.

On a 2-core AVX512-BF16 EPYC it is 1.2-1.5x eager PyTorch bf16 for 512 px inputs and for RRDBNet x4plus, and
0.94x for the compact model on 128 px inputs (``bench/inference.py --peers``; docs/engine.md). The PyTorch
network is converted in memory (``openvino.convert_model``, no ONNX file), with dynamic batch, height and
width, and compiled once per precision.
"""

from __future__ import annotations

import copy
import importlib.util
import threading

import torch
from torch import nn


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


class OpenVINONetwork:
    """A network compiled by OpenVINO for this CPU: (N, C, h, w) float tensor -> (N, C, h*s, w*s) float32 tensor.

    ``dtype`` picks the inference precision (bf16 runs natively on AVX512-BF16/AMX CPUs; fp32 otherwise).
    Thread-safe: each call uses an inference request of its own thread.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype, threads: int):
        import openvino as ov

        descriptor = model.descriptor
        side = -(-64 // descriptor.size_multiple) * descriptor.size_multiple
        probe = torch.rand(1, descriptor.in_channels, max(side, descriptor.min_size), max(side, descriptor.min_size))
        source = copy.deepcopy(model).float().eval().cpu()
        with torch.no_grad():
            converted = ov.convert_model(source, example_input=probe,
                                         input=[ov.PartialShape([-1, descriptor.in_channels, -1, -1])])
        hint = {torch.bfloat16: "bf16", torch.float16: "f16"}.get(dtype, "f32")
        self.compiled = ov.Core().compile_model(converted, "CPU", {
            "INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": max(1, threads),
            "PERFORMANCE_HINT": "LATENCY"})
        self.output = self.compiled.output(0)
        self.precision = hint
        self._local = threading.local()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        # the input is read in place; the output is copied out of the request's buffer, which the next call reuses
        result = request.infer({0: x.float().contiguous().numpy()}, share_inputs=True)[self.output]
        return torch.from_numpy(result)
