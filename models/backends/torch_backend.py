"""PyTorch backend: the scorer in inference mode on CPU or CUDA, in fp32, bf16 or fp16."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from models.backends import (
    BackendUnavailableError,
    check_input,
    check_precision,
    chunks,
)
from models.backends.options import DEFAULT_OPTIONS, BackendOptions
from models.bundle import Bundle
from models.scorer import build_scorer
from models.threads import torch_threads

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# Channels-last (NHWC): on this project's CPU (AVX-512, 2 cores; whalenet, tiles 512²–2048²,
# interleaved A/B) oneDNN ran NHWC 1.1–1.8× NCHW in fp32 and 1.7–2.3× in bf16, never slower;
# on CUDA NHWC is the layout tensor-core kernels want. See bench/bench_backends.py
# (torch_fp32 vs torch_fp32_nchw).
CHANNELS_LAST = {"cpu": True, "cuda": True}


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 on CPUs with native bf16 (AVX-512-BF16/AMX), fp16 on CUDA, else fp32.

    Raises ValueError for an unknown precision or one the device cannot run.
    """
    check_precision("torch", precision, PRECISIONS)
    if precision == "auto":
        if device.type == "cuda":
            return "fp16"
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("torch precision 'fp16' needs CUDA; on CPU use 'bf16' or 'fp32'")
    return precision


class TorchBackend:
    """The scorer as a torch module: ``Normalize`` (fp32) → FCN (``precision``) → softmax (fp32).

    Reduced precision casts the convolutions' weights once (``model.to(bf16)``), not autocast on
    every call: it is faster on CPU and keeps the logits' softmax in fp32. On CUDA, fp32 turns
    TF32 off so fp32 means fp32. ``max_batch`` splits larger batches (bounds GPU memory).
    """

    name = "torch"

    def __init__(
        self,
        bundle: Bundle,
        options: BackendOptions = DEFAULT_OPTIONS,
        channels_last: bool | None = None,
    ):
        self.device = options.device or ("cuda:0" if torch.cuda.is_available() else "cpu")
        dev = torch.device(self.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"backend 'torch' on {self.device!r}: torch sees no CUDA device "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda})"
            )
        # Intra-op threads on CPU, set around each call and restored after (process-wide state).
        self.threads = options.threads if dev.type == "cpu" else None
        self.precision = resolve_precision(options.precision_or("fp32"), dev)
        if channels_last is None:
            channels_last = CHANNELS_LAST.get(dev.type, False)
        self.channels_last = channels_last
        self.max_batch = options.max_batch
        self._dtype = _DTYPES[self.precision]
        self._cuda = dev.type == "cuda"
        normalize, fcn, probability = build_scorer(bundle, self.device)
        fcn = fcn.to(self._dtype)
        if self.channels_last:
            fcn = fcn.to(memory_format=torch.channels_last)
        self._normalize, self._fcn, self._probability = normalize, fcn, probability

    def _flags(self):
        if not self._cuda:
            return contextlib.nullcontext()
        # Per call, restored on exit: fixed tile shapes suit cuDNN autotuning; no TF32 in fp32.
        tf32 = self.precision != "fp32"
        return torch.backends.cudnn.flags(enabled=True, benchmark=True, allow_tf32=tf32)

    @torch.inference_mode()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, self.name)
        with torch_threads(self.threads), self._flags():
            parts = [self._run(part) for part in chunks(x, self.max_batch)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _run(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x)
        if self._cuda:
            t = t.pin_memory().to(self.device, non_blocking=True)
        t = self._normalize(t).to(self._dtype)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        logits = self._fcn(t).float()
        return self._probability(logits).contiguous().cpu().numpy()
