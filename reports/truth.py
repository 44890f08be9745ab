"""Detections scored against truth: greedy matching, precision/recall/F1, the PR curve and AP.

Detections are taken in descending score (ties in the order given) and each takes the free
truth box it is *eligible* for with the highest *preference*; each truth box matches at most
once, so a second detection on a matched face is a false positive, counted as a *duplicate*.
Three criteria build the eligibility and preference matrices:

* :func:`centre_radius_pairs` — the detection centre within ``radius`` px of the truth centre
  (nearest first);
* :func:`centre_in_box_pairs` — the detection centre inside the truth box (nearest centre first);
* :func:`iou_pairs` — IoU ≥ a threshold (highest IoU first) from an IoU matrix the caller
  computes (``torchvision.ops.box_iou`` in ``jobs``, so this module needs no torch).

Boxes are (N, 4) ``[xmin, ymin, xmax, ymax]`` scene pixels, max exclusive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Matching",
    "MatchReport",
    "centre_in_box_pairs",
    "centre_radius_pairs",
    "greedy_match",
    "iou_pairs",
    "match_centres",
    "match_report",
    "pool_matchings",
]


@dataclass(frozen=True)
class MatchReport:
    truths: int
    detections: int
    true_positives: int
    duplicates: int  # unmatched detections eligible for a face that was already matched
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


@dataclass(frozen=True)
class Matching:
    """The outcome of :func:`greedy_match`, in rank order (best score first).

    ``order`` (N,): detection indexes by rank; ``scores`` (N,): their scores; ``truth_of`` (N,):
    the truth index each matched (-1: a false positive); ``duplicate`` (N,): unmatched but
    eligible for a truth already taken; ``n_truth``: truth boxes.
    """

    order: np.ndarray
    scores: np.ndarray
    truth_of: np.ndarray
    duplicate: np.ndarray
    n_truth: int

    @property
    def tp(self) -> np.ndarray:
        """(N,) bool, rank order: the detection matched a truth box."""
        return self.truth_of >= 0

    def missed(self) -> np.ndarray:
        """Indexes of the truth boxes no detection matched, ascending."""
        return np.setdiff1d(np.arange(self.n_truth), self.truth_of[self.tp])

    def false_alarms(self) -> np.ndarray:
        """Indexes (into the detections as given) of unmatched detections, best score first."""
        return self.order[~self.tp]

    def pr_curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(score, precision, recall), each (N,): the operating point when keeping the top k + 1.

        With no truth boxes recall is 1 throughout (nothing to find).
        """
        ctp = np.cumsum(self.tp)
        precision = ctp / np.arange(1, len(ctp) + 1)
        recall = ctp / self.n_truth if self.n_truth else np.ones(len(ctp))
        return self.scores, precision, recall


def greedy_match(scores: np.ndarray, eligible: np.ndarray, preference: np.ndarray) -> Matching:
    """Match N detections (``scores`` (N,)) with M truths; ``eligible``/``preference`` (N, M).

    Ranks by descending score, ties kept in the given order (a stable sort).
    """
    scores = np.asarray(scores, np.float64).reshape(-1)
    n = len(scores)
    eligible = np.asarray(eligible, bool)
    preference = np.asarray(preference, np.float64)
    if eligible.ndim != 2 or len(eligible) != n or preference.shape != eligible.shape:
        raise ValueError(
            f"greedy_match: eligible {eligible.shape} and preference {preference.shape} for "
            f"{n} scores; expected both (N, M) with N = {n}"
        )
    order = np.argsort(-scores, kind="stable")
    taken = np.zeros(eligible.shape[1], bool)
    truth_of = np.full(n, -1, np.int64)
    duplicate = np.zeros(n, bool)
    for rank, i in enumerate(order):
        free = eligible[i] & ~taken
        if free.any():
            j = int(np.argmax(np.where(free, preference[i], -np.inf)))
            taken[j] = True
            truth_of[rank] = j
        elif eligible[i].any():
            duplicate[rank] = True
    return Matching(order, scores[order], truth_of, duplicate, eligible.shape[1])


def pool_matchings(matchings: Sequence[Matching]) -> Matching:
    """Several scenes' matchings as one ranking (stable by score: scene order breaks ties).

    ``order`` indexes the concatenated detections; ``truth_of`` the concatenated truths.
    """
    offsets_d = np.cumsum([0] + [len(m.order) for m in matchings])
    offsets_t = np.cumsum([0] + [m.n_truth for m in matchings])
    order = np.concatenate(
        [m.order + o for m, o in zip(matchings, offsets_d, strict=False)] or [[]]
    )
    scores = np.concatenate([m.scores for m in matchings] or [[]])
    truth_of = np.concatenate(
        [np.where(m.tp, m.truth_of + o, -1) for m, o in zip(matchings, offsets_t, strict=False)]
        or [[]]
    )
    duplicate = np.concatenate([m.duplicate for m in matchings] or [[]]).astype(bool)
    rank = np.argsort(-scores, kind="stable")
    return Matching(
        order[rank].astype(np.int64), scores[rank], truth_of[rank].astype(np.int64),
        duplicate[rank], int(offsets_t[-1]),
    )  # fmt: skip


def match_report(matching: Matching) -> MatchReport:
    """Counts, precision/recall/F1 over all detections, and all-point AP (PASCAL VOC 2010+)."""
    n_det, n_truth, n_tp = len(matching.order), matching.n_truth, int(matching.tp.sum())
    precision = n_tp / n_det if n_det else 1.0
    recall = n_tp / n_truth if n_truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return MatchReport(
        n_truth, n_det, n_tp, int(matching.duplicate.sum()), precision, recall, f1,
        _average_precision(matching.tp, n_truth),
    )  # fmt: skip


def centres(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) boxes → (N, 2) centres ``(x, y)``."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)


def _centre_distances(det_boxes: np.ndarray, truth_boxes: np.ndarray) -> np.ndarray:
    d, t = centres(det_boxes), centres(truth_boxes)
    return np.hypot(d[:, None, 0] - t[None, :, 0], d[:, None, 1] - t[None, :, 1])


def centre_radius_pairs(det_boxes, truth_boxes, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(eligible, preference), (N, M): centres at most ``radius`` px apart; nearest preferred."""
    dist = _centre_distances(det_boxes, truth_boxes)
    return dist <= radius, -dist


def centre_in_box_pairs(det_boxes, truth_boxes) -> tuple[np.ndarray, np.ndarray]:
    """(eligible, preference), (N, M): the detection centre in the truth box (min inclusive,
    max exclusive); the truth with the nearest centre preferred."""
    c = centres(det_boxes)
    t = np.asarray(truth_boxes, np.float64).reshape(-1, 4)
    inside = (
        (c[:, None, 0] >= t[None, :, 0])
        & (c[:, None, 0] < t[None, :, 2])
        & (c[:, None, 1] >= t[None, :, 1])
        & (c[:, None, 1] < t[None, :, 3])
    )
    return inside, -_centre_distances(det_boxes, truth_boxes)


def iou_pairs(iou: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(eligible, preference), (N, M), from an (N, M) IoU matrix: IoU ≥ ``threshold``."""
    iou = np.asarray(iou, np.float64)
    return iou >= threshold, iou


def match_centres(
    det_boxes: np.ndarray, scores: np.ndarray, truth_boxes: np.ndarray, radius: float
) -> MatchReport:
    """Match (N, 4) detections with (M, 4) truth boxes by centre distance ≤ ``radius`` px."""
    eligible, preference = centre_radius_pairs(det_boxes, truth_boxes, radius)
    return match_report(greedy_match(scores, eligible, preference))


def _average_precision(tp_ranked: np.ndarray, n_truth: int) -> float:
    """Area under the all-point interpolated precision/recall curve (PASCAL VOC 2010+)."""
    if n_truth == 0:
        return 1.0 if not len(tp_ranked) else 0.0
    ctp = np.cumsum(tp_ranked)
    recall = np.concatenate([[0.0], ctp / n_truth])
    precision = np.concatenate([[1.0], ctp / np.arange(1, len(tp_ranked) + 1)])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall) * precision[1:]))
