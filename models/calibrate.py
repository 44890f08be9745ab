"""Temperature scaling (Guo et al., 2017): one scalar T so that softmax(logits / T) is calibrated.

T is fitted on the ``val/`` logits by minimising the negative log-likelihood; it never changes
which class wins, only how confident the scores are. Stored as the bundle's ``temperature``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Bounded so a perfectly separated (often tiny) val set cannot drive T to 0 or ∞.
T_MIN, T_MAX = 0.1, 10.0


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """Mean cross-entropy of (N, C) ``logits`` / T against (N,) class indices."""
    return float(F.cross_entropy(logits.double() / temperature, labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, iters: int = 60) -> float:
    """Golden-section search for T in [``T_MIN``, ``T_MAX``] (log scale) minimising :func:`nll`.

    The NLL is unimodal in log T; a perfectly separated val set pushes T to ``T_MIN``.
    """
    if len(labels) == 0:
        return 1.0
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    for _ in range(iters):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(logits, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(logits, labels, math.exp(b))
    return round(math.exp((lo + hi) / 2), 6)
