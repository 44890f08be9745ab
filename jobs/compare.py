"""Several approaches' detections of the same labelled scenes, scored and printed as one table.

Each approach's detections sit in their own reports root (the evaluator scores the latest attempt
per scene, so two modes on one scene in one root would hide each other). Scoring is
:func:`jobs.evaluate_detections.run_evaluate` — the same as ``whalescan evaluate``.
"""

from __future__ import annotations

from dataclasses import dataclass

from reports.truth import match_report

__all__ = ["ApproachRun", "format_comparison", "score_approach"]


@dataclass(frozen=True)
class ApproachRun:
    """One approach scored: its ``name`` and detection ``mode``, ``train_s`` (seconds spent
    training its model, which approaches may share) and ``detect_s`` (wall seconds of the detect
    job), and the ``evaluation`` (``reports.evaluate.Evaluation``)."""

    name: str
    mode: str
    train_s: float
    detect_s: float
    evaluation: object

    def __post_init__(self) -> None:
        if not self.train_s >= 0:
            raise ValueError(f"train_s {self.train_s!r}: expected seconds ≥ 0")
        if not self.detect_s >= 0:
            raise ValueError(f"detect_s {self.detect_s!r}: expected seconds ≥ 0")

    def by(self, criterion: str):
        """The overall ``reports.truth.MatchReport`` by ``"iou"`` or ``"centre"``."""
        return match_report(self.evaluation.overall(criterion))


def score_approach(name: str, mode: str, train_s, detect_s, reports: str, labels: str):
    """Score the detections in ``reports`` against ``labels`` as ``whalescan evaluate`` does."""
    from jobs.evaluate_detections import EvaluateConfig, run_evaluate

    evaluation = run_evaluate(EvaluateConfig(str(reports), str(labels)))
    return ApproachRun(name, mode, train_s, detect_s, evaluation)


def format_comparison(runs: list[ApproachRun]) -> str:
    """One row per approach: train and detect seconds, faces, detections, precision and recall
    by centre-in-box, AP by IoU ≥ the evaluation's threshold and by centre-in-box, duplicates
    (second detections on a face matched by centre)."""
    iou = runs[0].evaluation.iou_threshold if runs else 0.5
    head = (
        f"{'approach':<22} {'mode':<8} {'train s':>7} {'detect s':>8} {'faces':>5} {'dets':>5} "
        f"{'P':>5} {'R':>5} {f'AP@IoU{iou:g}':>9} {'AP@ctr':>7} {'dup':>4}"
    )
    lines = [head, "─" * len(head)]
    for run in runs:
        i, c = run.by("iou"), run.by("centre")
        lines.append(
            f"{run.name[:22]:<22} {run.mode:<8} {run.train_s:>7.0f} {run.detect_s:>8.1f} {c.truths:>5} "
            f"{c.detections:>5} {c.precision:>5.3f} {c.recall:>5.3f} "
            f"{i.average_precision:>9.3f} {c.average_precision:>7.3f} {c.duplicates:>4}"
        )
    lines.append("P, R, dup: by centre-in-box")
    return "\n".join(lines)
