"""Detections scored against truth: centre matching, precision/recall/F1 and average precision.

A detection matches a truth box when its centre lies within ``radius`` px of the truth centre;
detections are taken in descending score and each truth box matches at most once (so a second
detection on the same face is a false positive).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MatchReport:
    truths: int
    detections: int
    true_positives: int
    duplicates: int  # detections within the radius of a face that was already matched
    precision: float
    recall: float
    f1: float
    average_precision: float

    def line(self) -> str:
        return (
            f"{self.true_positives}/{self.truths} faces found, {self.detections} detections: "
            f"precision {self.precision:.3f}, recall {self.recall:.3f}, F1 {self.f1:.3f}, "
            f"AP {self.average_precision:.3f}, duplicates {self.duplicates}"
        )


def match_centres(
    det_boxes: np.ndarray, scores: np.ndarray, truth_boxes: np.ndarray, radius: float
) -> MatchReport:
    """Match (N, 4) detections with (M, 4) truth boxes, both [xmin, ymin, xmax, ymax] scene px."""
    order = np.argsort(-scores, kind="stable")
    dc = _centres(det_boxes)[order]
    tc = _centres(truth_boxes)
    taken = np.zeros(len(tc), bool)
    tp = np.zeros(len(dc), bool)
    duplicates = 0
    for i, c in enumerate(dc):
        if not len(tc):
            break
        d = np.hypot(*(tc - c).T)
        free = np.where(taken, np.inf, d)
        j = int(np.argmin(free))
        if free[j] <= radius:
            taken[j] = tp[i] = True
        elif (d <= radius).any():
            duplicates += 1
    n_tp = int(tp.sum())
    precision = n_tp / len(dc) if len(dc) else 1.0
    recall = n_tp / len(tc) if len(tc) else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return MatchReport(
        len(tc), len(dc), n_tp, duplicates, precision, recall, f1, _average_precision(tp, len(tc))
    )


def _centres(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)


def _average_precision(tp_ranked: np.ndarray, n_truth: int) -> float:
    """Area under the all-point interpolated precision/recall curve (PASCAL VOC 2010+)."""
    if n_truth == 0:
        return 1.0 if not len(tp_ranked) else 0.0
    ctp = np.cumsum(tp_ranked)
    recall = np.concatenate([[0.0], ctp / n_truth])
    precision = np.concatenate([[1.0], ctp / np.arange(1, len(tp_ranked) + 1)])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall) * precision[1:]))
