"""Inference backends behind one interface, chosen by explicit name and imported lazily.

A backend is a callable: ``backend(x)`` with ``x`` a float32 array (N, 3, H, W) of pixels on the
0..255 scale returns float32 (N, H', W') whale-face probabilities (see ``models.scorer``).
Attributes: ``name`` (recorded in the ``backend`` column) and ``device`` (e.g. ``cpu``, ``cuda:0``).
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np

from models.bundle import Bundle


class Backend(Protocol):
    name: str
    device: str

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


# name -> "module:factory"; each factory is (bundle, device=None, threads=None) -> Backend.
REGISTRY = {
    "torch": "models.backends.torch_backend:TorchBackend",
}


def load_backend(
    name: str, bundle: Bundle, device: str | None = None, threads: int | None = None
) -> Backend:
    """Build backend ``name`` for ``bundle``; ``threads`` caps intra-op CPU threads."""
    if name not in REGISTRY:
        raise ValueError(f"unknown backend {name!r}; expected one of {sorted(REGISTRY)}")
    module, attr = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), attr)(bundle, device=device, threads=threads)
