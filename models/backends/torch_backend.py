"""PyTorch backend: the scorer in inference mode on CPU or CUDA."""

from __future__ import annotations

import numpy as np
import torch

from models.bundle import Bundle
from models.scorer import build_scorer


class TorchBackend:
    name = "torch"

    def __init__(self, bundle: Bundle, device: str | None = None, threads: int | None = None):
        self.device = device or ("cuda:0" if torch.cuda.is_available() else "cpu")
        if threads and self.device == "cpu":
            # Set once per worker process: each Ray actor owns its process and its CPUs.
            torch.set_num_threads(threads)
        self.model = build_scorer(bundle, self.device)

    @torch.inference_mode()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        return self.model(t).float().cpu().numpy()
