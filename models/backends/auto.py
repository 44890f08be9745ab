"""``auto``: the fastest backend this machine has, by a rule that bench/bench_backends.py justifies.

1. An NVIDIA GPU and TensorRT installed → ``tensorrt`` (fp16, from the fp16 ONNX model).
2. A GPU without TensorRT → ``torch`` on the GPU (fp32).
3. CPU only → ``onnxruntime`` fp32. Measured side by side (``python -m bench.bench_backends``,
   a trained whalenet, region tiles 1024² and 2048², batch 1, three interleaved rounds; the
   committed ``bench/results/backends.json`` is from a 2-core Intel Xeon at load 21–27): ONNX
   Runtime fp32 ran 1.9× and 3.1× torch fp32 (channels-last) and ahead of it in every round,
   within 1e-6 of its scores (earlier runs on an AMD EPYC: 1.2–3.7×, never slower); OpenVINO
   bf16 was fastest but moves probabilities by up to 1e-2 (detections unchanged on that net).
   ``auto`` promises fp32 scores: the same scene gives the same rows on every node, whether or
   not its CPU has bf16 (OpenVINO's ``auto`` precision follows the CPU), so reruns stay
   idempotent. bf16 is opt-in: ``--backend openvino``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from models.backends import Backend, available, build_backend
from models.backends.options import DEFAULT_OPTIONS, BackendOptions
from models.bundle import Bundle


def choose(device: str | None = None) -> tuple[str, dict[str, Any]]:
    """(backend name, options) that ``auto`` uses for ``device`` (None: whatever is here)."""
    gpu = device.startswith("cuda") if device else _may_have_gpu() and _torch_sees_gpu()
    if gpu:
        gpu_device = device or "cuda:0"
        if available("tensorrt"):
            return "tensorrt", {"device": gpu_device}
        return "torch", {"device": gpu_device}
    return "onnxruntime", {"device": "cpu"}


def auto_backend(
    bundle: Bundle, options: BackendOptions = DEFAULT_OPTIONS, **extra: Any
) -> Backend:
    """Load the backend :func:`choose` picks; its ``name`` is the concrete backend's."""
    name, chosen = choose(options.device)
    return build_backend(name, bundle, dataclasses.replace(options, **chosen), **extra)


def _may_have_gpu() -> bool:
    """False when this process surely has no NVIDIA GPU: none visible to it, or no driver device.

    Checked before ``import torch`` (≈1–2 s, more on a busy node) so that CPU actors start
    without torch when the bundle's ONNX model exists (bench/bench_startup.py).
    """
    import os
    from pathlib import Path

    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False  # Ray gives actors without a GPU an empty CUDA_VISIBLE_DEVICES
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/gpus").is_dir()


def _torch_sees_gpu() -> bool:
    import torch

    return torch.cuda.is_available()
