"""models.calibrate: a separable held-out set no longer drives T to its bound (scores all 1.00);
scores on a second held-out set spread, so thresholds change recall."""

from __future__ import annotations

import pytest
import torch

from models.calibrate import T_MIN, fit_temperature, laplace_smoothing


def _separable(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 2) logits of a confident, never-wrong classifier: margins 2..14, half faces."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    margin = 2 + 12 * torch.rand(n, generator=g)
    logits = torch.zeros(n, 2)
    logits[torch.arange(n), labels] = margin
    return logits, labels


def _face_scores(logits: torch.Tensor, labels: torch.Tensor, t: float) -> torch.Tensor:
    return torch.softmax(logits / t, dim=1)[labels == 0, 0]


@pytest.mark.parametrize("n", [40, 200, 1000])
def test_separable_val_gives_informative_scores(n):
    logits, labels = _separable(n, seed=n)
    assert fit_temperature(logits, labels, smoothing=0.0) == pytest.approx(T_MIN, rel=1e-3)
    t = fit_temperature(logits, labels)
    assert t > 2 * T_MIN
    held_out, held_labels = _separable(2000, seed=n + 1)
    scores = _face_scores(held_out, held_labels, t)
    assert (scores < 0.99).float().mean() > 0.05  # not all ≥ 0.99
    recall = {thr: float((scores >= thr).float().mean()) for thr in (0.5, 0.99, 0.999)}
    assert recall[0.5] == 1.0 > recall[0.99] > recall[0.999] > 0
    # confidence follows the evidence: more error-free examples, sharper scores
    assert scores.mean() > 1 - 2 * laplace_smoothing(n) - 0.05


def test_more_evidence_gives_a_lower_temperature():
    t = [fit_temperature(*_separable(n, seed=7)) for n in (20, 200, 2000)]
    assert t[0] > t[1] > t[2]


def test_smoothing_is_laplace_by_default():
    logits, labels = _separable(100, seed=3)
    assert fit_temperature(logits, labels) == fit_temperature(
        logits, labels, smoothing=laplace_smoothing(100)
    )
    assert laplace_smoothing(98) == pytest.approx(0.02)
