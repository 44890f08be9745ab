"""Centre matching and AP against hand-counted cases."""

import numpy as np
import pytest

from reports.truth import match_centres


def box(cx, cy, s=10):
    return [cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2]


def test_perfect_detection():
    truth = np.array([box(10, 10), box(50, 50)])
    r = match_centres(truth.copy(), np.array([0.9, 0.8]), truth, radius=5)
    assert (r.precision, r.recall, r.f1, r.average_precision) == (1, 1, 1, 1)


def test_duplicate_is_a_false_positive():
    truth = np.array([box(10, 10)])
    dets = np.array([box(10, 10), box(12, 10)])
    r = match_centres(dets, np.array([0.9, 0.8]), truth, radius=5)
    assert r.true_positives == 1 and r.duplicates == 1 and r.precision == 0.5
    assert r.average_precision == 1.0  # the top-ranked detection already found everything


def test_ranking_sets_average_precision():
    truth = np.array([box(10, 10), box(50, 50)])
    dets = np.array([box(90, 90), box(10, 10), box(50, 51)])  # a false positive ranked first
    r = match_centres(dets, np.array([0.95, 0.9, 0.5]), truth, radius=5)
    # precision at recall 0.5 is 1/2, at recall 1.0 it is 2/3 → interpolated: 0.5·2/3 + 0.5·2/3
    assert r.average_precision == pytest.approx(2 / 3)
    assert r.recall == 1 and r.precision == pytest.approx(2 / 3)


def test_no_detections():
    r = match_centres(np.zeros((0, 4)), np.zeros(0), np.array([box(1, 1)]), radius=5)
    assert r.recall == 0 and r.average_precision == 0
