"""ONNX Runtime backend (CPU): the bundle's exported ``model.onnx`` in an InferenceSession."""

from __future__ import annotations

import numpy as np

from models.backends import check_input, chunks, cpu_backend
from models.backends.options import DEFAULT_OPTIONS, BackendOptions
from models.bundle import Bundle
from models.export import INPUT_NAME, onnx_path

PRECISIONS = ("fp32", "fp16", "int8")


class OnnxRuntimeBackend:
    """``model.onnx`` (exported into the bundle on first use if absent) on ORT's CPU provider.

    ``precision`` picks the ONNX variant: ``fp32`` (default; equals torch fp32 to ~1e-7),
    ``fp16`` or ``int8`` (Q/DQ; needs ``whalescan export --precision int8`` first).
    Session: intra-op threads = ``threads`` (all cores if None), one inter-op thread, sequential
    execution, full graph optimisation, memory pattern and arena on (ORT's defaults; measured on
    whalenet at 1024²/2048²: arena off −35 %, basic optimisation −25 %, memory pattern off ±0),
    and idle threads that sleep instead of spin (speed measured even; it leaves the cores to the
    Ray read tasks and other actors between batches).
    """

    name = "onnxruntime"

    def __init__(self, bundle: Bundle, options: BackendOptions = DEFAULT_OPTIONS):
        ort, self.device, self.precision = cpu_backend(self.name, options, PRECISIONS, "fp32")
        self.max_batch = options.max_batch
        self.path = onnx_path(bundle, self.precision)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        if options.threads:
            so.intra_op_num_threads = options.threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3  # errors only; ORT warns about unused initialisers etc.
        self.session = ort.InferenceSession(
            str(self.path), sess_options=so, providers=["CPUExecutionProvider"]
        )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, self.name)
        parts = [self.session.run(None, {INPUT_NAME: p})[0] for p in chunks(x, self.max_batch)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
