"""``whalescan evaluate``: a reports root's detections scored against labelled truth.

    whalescan evaluate REPORTS LABELS [--iou 0.5] [--json]

REPORTS is a directory or ``s3://bucket/prefix``; LABELS a DeepForest CSV or a vector file
(:mod:`labels.read`). Scoring is :mod:`reports.evaluate`; IoU is ``torchvision.ops.box_iou``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from jobs.chips import labels_options
from jobs.options import verbose_option
from jobs.run_config import run_config
from reports.evaluate import check_iou_threshold
from reports.store import check_reports_root
from reports.truth import match_report

__all__ = ["EvaluateConfig", "box_iou", "evaluate", "format_evaluation", "run_evaluate"]


@dataclass(frozen=True)
class EvaluateConfig:
    """One evaluation: ``reports`` root, ``labels`` file, IoU threshold, how to read the labels."""

    reports: str  # reports root: a directory or s3://bucket/prefix
    labels: str  # DeepForest CSV or vector file (labels.read)
    iou: float = 0.5  # a detection matches a label at IoU ≥ this (also scored by centre-in-box)
    scene_column: str | None = None
    point_box_m: float | None = None
    label: str | None = None  # the faces' class(es), comma-separated; None: every box

    def __post_init__(self) -> None:
        check_reports_root(self.reports, "EvaluateConfig.reports")
        check_iou_threshold(self.iou, "EvaluateConfig.iou")


def box_iou(det_boxes: np.ndarray, truth_boxes: np.ndarray) -> np.ndarray:
    """(N, M) IoU of (N, 4) and (M, 4) ``[xmin, ymin, xmax, ymax]`` boxes (torchvision)."""
    import torch
    from torchvision.ops import box_iou as tv_box_iou

    a = torch.as_tensor(np.asarray(det_boxes, np.float64).reshape(-1, 4))
    b = torch.as_tensor(np.asarray(truth_boxes, np.float64).reshape(-1, 4))
    return tv_box_iou(a, b).numpy()


def run_evaluate(config: EvaluateConfig):
    """Read the labels and the reports and score them; returns ``reports.evaluate.Evaluation``."""
    from labels.read import read_labels
    from reports.evaluate import evaluate_reports
    from reports.store import open_store

    truth: dict[str, np.ndarray] = {}
    for s in read_labels(config.labels, scene_column=config.scene_column,
                         point_box_m=config.point_box_m, label=config.label):  # fmt: skip
        truth[s.scene] = np.concatenate([truth.get(s.scene, np.zeros((0, 4))), s.boxes])
    return evaluate_reports(open_store(config.reports), truth, box_iou, config.iou)


def format_evaluation(evaluation) -> str:
    """A readable table: one line per scene and overall, by IoU and by centre-in-box, then the
    overall PR curves at ten points along the ranking and the unscored scenes."""
    head = (
        f"{'scene':<32} {'faces':>5} {'dets':>5} │ IoU≥{evaluation.iou_threshold:<4g} "
        f"{'P':>5} {'R':>5} {'F1':>5} {'AP':>5} {'dup':>3} │ centre {'P':>5} {'R':>5} "
        f"{'F1':>5} {'AP':>5} {'dup':>3}"
    )
    lines = [head, "─" * len(head)]

    def line(name: str, by_iou, by_centre) -> str:
        i, c = match_report(by_iou), match_report(by_centre)
        cells = [
            f"{name[-32:]:<32} {i.truths:>5} {i.detections:>5} │ {'':8}",
            *(f"{v:>5.3f}" for v in (i.precision, i.recall, i.f1, i.average_precision)),
            f"{i.duplicates:>3} │ {'':6}",
            *(f"{v:>5.3f}" for v in (c.precision, c.recall, c.f1, c.average_precision)),
            f"{c.duplicates:>3}",
        ]
        return " ".join(cells)

    for s in evaluation.scenes:
        lines.append(line(Path(s.scene).name, s.by_iou, s.by_centre))
    lines.append("─" * len(head))
    lines.append(line("overall", evaluation.overall("iou"), evaluation.overall("centre")))
    for criterion in ("iou", "centre"):
        score, precision, recall = evaluation.overall(criterion).pr_curve()
        if not len(score):
            continue
        # operating points: the last rank of each distinct score, at most ten of them
        ends = np.flatnonzero(np.append(score[1:] != score[:-1], True))
        picks = ends[
            np.unique(np.linspace(0, len(ends) - 1, min(10, len(ends))).round().astype(int))
        ]
        points = ", ".join(
            f"≥{score[k]:.4g}: P {precision[k]:.2f} R {recall[k]:.2f}" for k in picks
        )
        lines.append(f"PR curve ({criterion}): {points}")
    for scene, why in evaluation.unscored:
        lines.append(f"not scored: {scene}: {why}")
    return "\n".join(lines)


@click.command("evaluate")
@click.argument("reports")
@click.argument("labels", type=click.Path(exists=True, dir_okay=False))
@click.option("--iou", type=float, default=0.5, show_default=True, help="IoU for a match.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics and PR curves as JSON.")
@labels_options
@verbose_option
def evaluate(reports, labels, iou, as_json, scene_column, point_box_m, label):
    """Score the latest detections in REPORTS (dir or s3://) against the LABELS file."""
    evaluation = run_config(
        lambda: EvaluateConfig(reports, labels, iou, scene_column, point_box_m, label),
        run_evaluate,
    )
    click.echo(
        json.dumps(evaluation.to_dict(), indent=1) if as_json else format_evaluation(evaluation)
    )


if __name__ == "__main__":
    evaluate()
