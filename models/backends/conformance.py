"""How far a backend's heatmaps are from the torch fp32 reference: probabilities and detections.

A detection here is a peak: a heatmap cell above ``threshold`` that is the maximum of its 3×3
neighbourhood — what the detector turns into a box. Used by the conformance tests and benches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Max |Δprobability| against torch fp32 that each arithmetic is held to (tests and benches).
# fp32 backends differ only in summation order (measured ≤ 3e-6). bf16 keeps 8 mantissa bits:
# logits move by ~0.4 %, which moved probabilities by up to 1.8e-2 on a trained whalenet (logits
# ±30) with every detection unchanged (bench/bench_backends.py). fp16 has 3 more bits (~8×
# finer). int8 (Q/DQ, MinMax-calibrated) is coarse where the heatmap is steep: max 0.32, mean
# 1e-3, 1 of 249 detections lost on that net — it is for TensorRT throughput, not for CPUs.
TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2, "bf16": 3e-2, "int8": 0.35}


@dataclass(frozen=True)
class Agreement:
    """``max_abs``: max |p − p_ref|; peak counts (all maps) of the reference and the backend;
    how many reference peaks the backend misses and how many it adds (see :func:`agreement`)."""

    max_abs: float
    peaks_ref: int
    peaks: int
    missing: int
    extra: int

    @property
    def same_detections(self) -> bool:
        return self.missing == 0 and self.extra == 0

    def to_dict(self) -> dict:
        return {**asdict(self), "same_detections": self.same_detections}


def peaks(heatmaps: np.ndarray, threshold: float = 0.5, margin: float = 0.0) -> np.ndarray:
    """Boolean (N, H', W'): cells above ``threshold`` that are the max of their 3×3 neighbourhood.

    With ``margin`` > 0 only clear peaks count: above ``threshold + margin`` and at least
    ``2·margin`` above each of their 8 neighbours — exactly the peaks that any heatmap within
    ``margin`` of this one (max |Δp| ≤ margin) must also have, at the same cell.
    """
    h = np.asarray(heatmaps, dtype=np.float32)
    padded = np.pad(h, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    rows, cols = h.shape[1], h.shape[2]
    neighbours = np.max(
        [
            padded[:, i : i + rows, j : j + cols]
            for i in range(3)
            for j in range(3)
            if (i, j) != (1, 1)
        ],
        axis=0,
    )
    return (h > threshold + margin) & (h >= neighbours + 2 * margin)


def agreement(
    reference: np.ndarray, heatmaps: np.ndarray, threshold: float = 0.5, margin: float = 0.0
) -> Agreement:
    """Compare (N, H', W') ``heatmaps`` with ``reference`` of the same shape.

    ``missing``: clear reference peaks (see :func:`peaks`) with no backend peak within one cell;
    ``extra``: clear backend peaks with no reference peak within one cell. ``margin`` 0 is the
    strict count (benches); tests pass the precision's documented bound, so only detections that
    the bound cannot explain count as disagreements.
    """
    if reference.shape != heatmaps.shape:
        raise ValueError(f"heatmap shape {heatmaps.shape}, reference {reference.shape}")
    ref_all, out_all = peaks(reference, threshold), peaks(heatmaps, threshold)
    ref_clear, out_clear = peaks(reference, threshold, margin), peaks(heatmaps, threshold, margin)
    return Agreement(
        max_abs=float(np.max(np.abs(reference.astype(np.float64) - heatmaps))),
        peaks_ref=int(ref_all.sum()),
        peaks=int(out_all.sum()),
        missing=int((ref_clear & ~_dilate(out_all)).sum()),
        extra=int((out_clear & ~_dilate(ref_all)).sum()),
    )


def _dilate(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    rows, cols = mask.shape[1], mask.shape[2]
    return np.any(
        [padded[:, i : i + rows, j : j + cols] for i in range(3) for j in range(3)], axis=0
    )
