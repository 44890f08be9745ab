"""Detections of a reports root scored against labelled truth, per scene and overall.

Each labelled scene is paired with the latest attempt on the same scene in the reports (same
resolved path or URI; else the same file name, when that is unambiguous). Detections match
truth by IoU ≥ a threshold and, separately, by centre-in-box (:mod:`reports.truth`). Boxes are
``[xmin, ymin, xmax, ymax]`` native scene pixels, max exclusive. The IoU matrix comes from the
caller (``iou_fn``: (N, 4), (M, 4) → (N, M)), so this module needs no torch.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from reports.latest import detection_relpaths, latest_rows, read_detections
from reports.store import Store
from reports.truth import (
    Matching,
    centre_in_box_pairs,
    greedy_match,
    iou_pairs,
    match_report,
    pool_matchings,
)

__all__ = [
    "CRITERIA",
    "Evaluation",
    "SceneEval",
    "check_iou_threshold",
    "evaluate_reports",
    "metrics",
    "pair_scenes",
]

IouFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
CRITERIA = ("iou", "centre")
_PX = ["px_xmin", "px_ymin", "px_xmax", "px_ymax"]


@dataclass(frozen=True)
class SceneEval:
    """One scored scene: ``scene`` as the reports name it (its attempt's ``scene_key``),
    ``labels_scene`` as the labels do;
    detections ``det_boxes`` (N, 4) and ``scores`` (N,) best first; ``truth_boxes`` (M, 4);
    the matchings by IoU and by centre-in-box."""

    scene: str
    scene_key: str
    labels_scene: str
    det_boxes: np.ndarray
    scores: np.ndarray
    truth_boxes: np.ndarray
    by_iou: Matching
    by_centre: Matching

    def matching(self, criterion: str) -> Matching:
        return {"iou": self.by_iou, "centre": self.by_centre}[criterion]


@dataclass(frozen=True)
class Evaluation:
    """Scored scenes (sorted by scene), the IoU threshold, and labelled scenes left unscored
    as ``(labels scene, reason)``."""

    iou_threshold: float
    scenes: tuple[SceneEval, ...]
    unscored: tuple[tuple[str, str], ...] = ()

    def overall(self, criterion: str) -> Matching:
        """All scenes' detections ranked together (ties: scene order, then rank)."""
        return pool_matchings([s.matching(criterion) for s in self.scenes])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: overall and per-scene metrics and PR curves per criterion."""
        return {
            "iou_threshold": self.iou_threshold,
            "overall": {c: metrics(self.overall(c)) for c in CRITERIA},
            "scenes": [
                {"scene": s.scene, "scene_key": s.scene_key, "labels_scene": s.labels_scene}
                | {c: metrics(s.matching(c)) for c in CRITERIA}
                for s in self.scenes
            ],
            "unscored": [{"scene": scene, "reason": why} for scene, why in self.unscored],
        }


def metrics(matching: Matching) -> dict[str, Any]:
    """Counts, precision/recall/F1/AP and the PR curve of one matching, JSON-ready."""
    r = match_report(matching)
    score, precision, recall = matching.pr_curve()
    return {
        "truths": r.truths,
        "detections": r.detections,
        "true_positives": r.true_positives,
        "false_positives": r.detections - r.true_positives,
        "misses": r.truths - r.true_positives,
        "duplicates": r.duplicates,
        "precision": r.precision,
        "recall": r.recall,
        "f1": r.f1,
        "average_precision": r.average_precision,
        "pr_curve": {
            "score": score.tolist(),
            "precision": precision.tolist(),
            "recall": recall.tolist(),
        },
    }


def _normal(scene: str) -> str:
    return scene if "://" in scene else os.path.abspath(os.path.expanduser(scene))


def _name(scene: str) -> str:
    return PurePosixPath(scene.replace("\\", "/")).name


def pair_scenes(labels_scenes: Sequence[str], report_scenes: Sequence[str]) -> dict[str, str]:
    """Labels scene → reports scene: the same resolved path/URI, else the same file name.

    A file name shared by several unpaired scenes on either side is a ``ValueError`` naming
    them; a labels scene with no partner is left out.
    """
    by_path = {_normal(r): r for r in report_scenes}
    pairs = {s: by_path[_normal(s)] for s in labels_scenes if _normal(s) in by_path}
    rest_labels = [s for s in labels_scenes if s not in pairs]
    used = set(pairs.values())
    rest_reports: dict[str, list[str]] = {}
    for r in report_scenes:
        if r not in used:
            rest_reports.setdefault(_name(r), []).append(r)
    label_names: dict[str, list[str]] = {}
    for s in rest_labels:
        label_names.setdefault(_name(s), []).append(s)
    for name, scenes in label_names.items():
        candidates = rest_reports.get(name, [])
        if not candidates:
            continue
        if len(candidates) > 1 or len(scenes) > 1:
            raise ValueError(
                f"scene file name {name!r} is ambiguous: labels {scenes}, reports {candidates}; "
                "give the labels the scenes' full paths or URIs as detect recorded them"
            )
        pairs[scenes[0]] = candidates[0]
    return pairs


def check_iou_threshold(iou: float, field: str) -> None:
    """``ValueError`` naming ``field`` unless ``iou`` is a finite number in (0, 1]."""
    if isinstance(iou, bool) or not isinstance(iou, numbers.Real) or not 0 < iou <= 1:
        raise ValueError(f"{field}={iou!r}: expected a number in (0, 1]")


def evaluate_reports(
    store: Store, truth: Mapping[str, np.ndarray], iou_fn: IouFn, iou_threshold: float = 0.5
) -> Evaluation:
    """Score the latest attempt on each labelled scene of ``truth`` (scene → (M, 4) boxes).

    Scenes with no attempt in ``store``, or whose latest attempt did not succeed, are unscored
    (with the reason); detected scenes without labels are ignored. ``ValueError`` when no
    labelled scene could be scored or the threshold is outside (0, 1].
    """
    check_iou_threshold(iou_threshold, "iou_threshold")
    rows = {r["scene_uri"]: r for r in latest_rows(store)}
    pairs = pair_scenes(list(truth), list(rows))
    det_paths = detection_relpaths(store)
    scenes, unscored = [], []
    for labels_scene in sorted(truth, key=lambda s: pairs.get(s, s)):
        if labels_scene not in pairs:
            unscored.append((labels_scene, f"no attempt under {store.root}"))
            continue
        row = rows[pairs[labels_scene]]
        if row["status"] != "ok":
            reason = f"latest attempt {row['status']}: {row['error'] or 'no reason recorded'}"
            unscored.append((labels_scene, reason))
            continue
        det = read_detections(
            store, det_paths.get(row["scene_key"]), [*_PX, "score", "detection_id"]
        )
        boxes = np.stack([det.column(c).to_numpy() for c in _PX], axis=1).reshape(-1, 4)
        scores = det.column("score").to_numpy().astype(np.float64)
        scenes.append(_score_scene(row, labels_scene, boxes, scores,
                                   truth[labels_scene], iou_fn, iou_threshold))  # fmt: skip
    if not scenes:
        reasons = "; ".join(f"{s}: {why}" for s, why in unscored) or "no labelled scenes"
        raise ValueError(f"{store.root!r}: no labelled scene has detections to score ({reasons})")
    return Evaluation(iou_threshold, tuple(scenes), tuple(unscored))


def _score_scene(row, labels_scene, boxes, scores, truth_boxes, iou_fn, iou_threshold):
    truth_boxes = np.asarray(truth_boxes, np.float64).reshape(-1, 4)
    iou = np.asarray(iou_fn(boxes, truth_boxes), np.float64).reshape(len(boxes), len(truth_boxes))
    return SceneEval(
        row["scene_uri"], row["scene_key"], labels_scene, boxes, scores, truth_boxes,
        by_iou=greedy_match(scores, *iou_pairs(iou, iou_threshold)),
        by_centre=greedy_match(scores, *centre_in_box_pairs(boxes, truth_boxes)),
    )  # fmt: skip
