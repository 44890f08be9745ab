"""Inference backends behind one interface, chosen by explicit name and imported lazily.

A backend is a callable: ``backend(x)`` with ``x`` a float32 array (N, 3, H, W) of pixels on the
0..255 scale returns float32 (N, H', W') whale-face probabilities (see ``models.scorer``).
Attributes: ``name`` (recorded in the ``backend`` column), ``device`` (e.g. ``cpu``, ``cuda:0``)
and ``precision`` (``fp32``, ``bf16``, ``fp16``, ``int8``: what the arithmetic actually runs in).

Backends: ``torch`` (CPU/CUDA), ``onnxruntime`` (CPU), ``openvino`` (CPU, extra
``whalescan[openvino]``), ``tensorrt`` (NVIDIA GPU, extra ``whalescan[tensorrt]``) and ``auto``
(see :mod:`models.backends.auto` for the rule and the benchmark behind it).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from models.backends.options import BackendOptions
from models.bundle import Bundle


class Backend(Protocol):
    name: str
    device: str
    precision: str

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class BackendUnavailableError(ImportError):
    """A backend's optional library (or device) is missing; the message says how to get it."""


# name -> "module:factory"; a factory is (bundle, BackendOptions, **extra options) -> Backend.
REGISTRY = {
    "auto": "models.backends.auto:auto_backend",
    "torch": "models.backends.torch_backend:TorchBackend",
    "onnxruntime": "models.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "openvino": "models.backends.openvino_backend:OpenVinoBackend",
    "tensorrt": "models.backends.tensorrt_backend:TensorRTBackend",
}

# The library each backend needs beyond the core install, and how to get it.
EXTRAS = {
    "onnxruntime": ("onnxruntime", "pip install onnxruntime (a core dependency of whalescan)"),
    "openvino": ("openvino", "pip install 'whalescan[openvino]'"),
    "tensorrt": (
        "tensorrt",
        "pip install 'whalescan[tensorrt]' on a machine with an NVIDIA GPU "
        "(the wheel comes from NVIDIA's index, https://pypi.nvidia.com)",
    ),
}


def load_backend(
    name: str,
    bundle: Bundle,
    device: str | None = None,
    threads: int | None = None,
    precision: str | None = None,
    max_batch: int | None = None,
    **extra: Any,
) -> Backend:
    """Build backend ``name`` for ``bundle`` with the :class:`BackendOptions` given as keywords;
    ``extra`` options go to the backend (e.g. ``channels_last=False``; see its docstring).

    Raises ``ValueError`` for an unknown name and :class:`BackendUnavailableError` (an
    ``ImportError``) when the backend's library or device is missing.
    """
    options = BackendOptions(device, threads, precision, max_batch)
    return build_backend(name, bundle, options, **extra)


def build_backend(name: str, bundle: Bundle, options: BackendOptions, **extra: Any) -> Backend:
    """:func:`load_backend` with the common options as one object."""
    if name not in REGISTRY:
        raise ValueError(f"unknown backend {name!r}; expected one of {sorted(REGISTRY)}")
    module, attr = REGISTRY[name].split(":")
    factory = getattr(importlib.import_module(module), attr)
    return factory(bundle, options, **extra)


def require(backend: str):
    """Import and return the optional library of ``backend``, or raise a clear install hint."""
    module, hint = EXTRAS[backend]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise BackendUnavailableError(
            f"backend {backend!r} needs the {module!r} package, which is not installed: {hint}"
        ) from e


def available(name: str) -> bool:
    """Whether backend ``name``'s library imports here (says nothing about devices)."""
    if name not in EXTRAS:
        return name in REGISTRY
    try:
        require(name)
    except BackendUnavailableError:
        return False
    return True


def check_precision(backend: str, precision: str, allowed: Sequence[str]) -> str:
    """``precision`` if ``backend`` takes it, else a ValueError naming both and the choices."""
    if precision not in allowed:
        raise ValueError(f"{backend} precision {precision!r}: expected one of {', '.join(allowed)}")
    return precision


def cpu_backend(
    backend: str, options: BackendOptions, precisions: Sequence[str], default: str
) -> tuple[Any, str, str]:
    """(library, ``"cpu"``, precision) for the CPU-only ``backend``: its optional library
    imported, the device checked (:func:`cpu_device`) and the precision asked for (else
    ``default``) checked against ``precisions``."""
    library = require(backend)
    device = cpu_device(backend, options.device)
    return library, device, check_precision(backend, options.precision_or(default), precisions)


def cpu_device(backend: str, device: str | None) -> str:
    """``"cpu"`` for a CPU-only ``backend`` asked for ``device`` None or ``"cpu"``; else a
    ValueError naming the backends that run on GPUs."""
    if device not in (None, "cpu"):
        raise ValueError(
            f"backend {backend!r} runs on 'cpu' here, not {device!r}; "
            "use --backend tensorrt or torch for GPUs"
        )
    return "cpu"


def chunks(x: np.ndarray, max_batch: int | None):
    """Split (N, …) ``x`` along N into pieces of at most ``max_batch`` (one piece if None)."""
    if not max_batch or len(x) <= max_batch:
        yield x
        return
    for i in range(0, len(x), max_batch):
        yield x[i : i + max_batch]


def check_input(x: np.ndarray, backend: str) -> np.ndarray:
    """``x`` as C-contiguous float32 (N, 3, H, W), or a ValueError naming the backend and shape."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{backend}: input shape {tuple(x.shape)}, expected (N, 3, H, W)")
    return np.ascontiguousarray(x, dtype=np.float32)
