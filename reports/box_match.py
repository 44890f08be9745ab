"""Detections scored against truth boxes by IoU (PASCAL VOC style): precision, recall, F1, AP.

Detections are taken in descending score; each takes the unmatched truth box it overlaps most if
that IoU is ≥ ``iou`` (default 0.5, "AP50"); a detection whose best overlap is an already matched
face is a duplicate (and a false positive).
"""

from __future__ import annotations

import numpy as np

from reports.truth import MatchReport, _average_precision


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of (N, 4) and (M, 4) boxes [xmin, ymin, xmax, ymax], any pixel units."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_boxes(
    det_boxes: np.ndarray, scores: np.ndarray, truth_boxes: np.ndarray, iou: float = 0.5
) -> MatchReport:
    """Match (N, 4) detections with (M, 4) truth boxes at IoU ≥ ``iou``."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    overlaps = box_iou(np.asarray(det_boxes).reshape(-1, 4)[order], truth_boxes)
    taken = np.zeros(overlaps.shape[1], bool)
    tp = np.zeros(overlaps.shape[0], bool)
    duplicates = 0
    for i, row in enumerate(overlaps):
        if not len(row):
            break
        free = np.where(taken, -1.0, row)
        j = int(np.argmax(free))
        if free[j] >= iou:
            taken[j] = tp[i] = True
        elif (row >= iou).any():
            duplicates += 1
    n_tp, n_det, n_truth = int(tp.sum()), len(tp), overlaps.shape[1]
    precision = n_tp / n_det if n_det else 1.0
    recall = n_tp / n_truth if n_truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    ap = _average_precision(tp, n_truth)
    return MatchReport(n_truth, n_det, n_tp, duplicates, precision, recall, f1, ap)
