"""OpenVINO backend (CPU, extra ``whalescan[openvino]``): the bundle's ONNX compiled per shape."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from models.backends import check_input, chunks, cpu_backend
from models.backends.options import DEFAULT_OPTIONS, BackendOptions
from models.bundle import Bundle
from models.export import onnx_path

PRECISIONS = ("fp32", "bf16", "auto")
_HINTS = {"fp32": "f32", "bf16": "bf16"}


class OpenVinoBackend:
    """``model.onnx`` compiled by OpenVINO for the CPU, once per input shape (an LRU of ``cache``).

    ``precision``: ``fp32`` (exact: equals torch fp32 to ~1e-7), ``bf16`` (activations and
    weights in bfloat16, fp32 accumulation; ~2× faster on CPUs with AVX-512-BF16/AMX, max
    probability error in the 1e-4..1e-2 range — see bench/bench_backends.py), or ``auto``
    (OpenVINO's default: bf16 where the CPU has it natively, else fp32). ``self.precision``
    reports what OpenVINO actually chose.

    Static shapes: region tiles come in a handful of shapes per run, a static compile costs
    0.03–0.4 s and runs up to 10 % faster than one dynamic-shape model; so each (N, 3, H, W)
    seen is compiled once and kept.
    """

    name = "openvino"

    def __init__(self, bundle: Bundle, options: BackendOptions = DEFAULT_OPTIONS, cache: int = 8):
        ov, self.device, precision = cpu_backend(self.name, options, PRECISIONS, "auto")
        threads = options.threads
        self._ov = ov
        self._core = ov.Core()
        self.max_batch = options.max_batch
        self.path = onnx_path(bundle, "fp32")
        self._config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
        if precision in _HINTS:
            self._config["INFERENCE_PRECISION_HINT"] = _HINTS[precision]
        if threads:
            # A slice of the machine (one of several Ray actors): OpenVINO pins its threads to
            # cores by default, and every process would pin to the same first cores.
            self._config["INFERENCE_NUM_THREADS"] = int(threads)
            self._config["ENABLE_CPU_PINNING"] = False
        self._cache_size = max(1, cache)
        self._requests: OrderedDict[tuple[int, ...], object] = OrderedDict()
        self._model = self._core.read_model(str(self.path))  # fails early on a bad file
        if precision == "auto":
            chosen = self._core.get_property("CPU", "INFERENCE_PRECISION_HINT")
            self.precision = "bf16" if chosen == ov.Type.bf16 else "fp32"
        else:
            self.precision = precision

    def _request(self, shape: tuple[int, ...]):
        req = self._requests.get(shape)
        if req is not None:
            self._requests.move_to_end(shape)
            return req
        model = self._model.clone()
        model.reshape({0: self._ov.PartialShape(list(shape))})
        req = self._core.compile_model(model, "CPU", self._config).create_infer_request()
        self._requests[shape] = req
        if len(self._requests) > self._cache_size:
            self._requests.popitem(last=False)
        return req

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, self.name)
        parts = []
        for part in chunks(x, self.max_batch):
            req = self._request(tuple(part.shape))
            req.infer({0: part})
            parts.append(req.get_output_tensor(0).data.copy())  # the request reuses its buffer
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
