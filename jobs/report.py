"""``whalescan report``: a static HTML page of a reports root — boxes, scores, failures."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import click

from jobs.chips import labels_options
from jobs.options import verbose_option
from jobs.run_config import run_config
from reports.evaluate import check_iou_threshold
from reports.store import check_reports_root
from storage.uri import S3Uri, is_s3

__all__ = ["ReportConfig", "default_out", "report", "run_report"]

log = logging.getLogger(__name__)


def default_out(reports: str) -> str:
    """``REPORTS/html`` for a local reports root; ``./<bucket>-<prefix>-html`` for ``s3://``."""
    if is_s3(reports):
        root = S3Uri.parse(reports)
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{root.bucket}/{root.key}".strip("/"))
        return f"{name}-html"
    return str(Path(reports.removeprefix("file://")) / "html")


@dataclass(frozen=True)
class ReportConfig:
    """One HTML report run.

    reports: reports root (a directory or ``s3://bucket/prefix``).
    out: local directory for ``index.html`` and ``img/`` (default: see ``default_out``).
    scenes: scene URIs to show (default: every scene in the ledger).
    heatmap: add a detection-density overlay per scene.
    top_n: chips of the best detections per scene. overview_px: overview long side, 512..1600.
    labels: a labels file (DeepForest CSV or vector file) to score the detections against:
    adds metrics, PR curves and thumbnails of misses and false alarms. iou: IoU for a match.
    scene_column, point_box_m: how to read a vector labels file; label: the faces' class (see
    ``labels.read``).
    """

    reports: str
    out: str | None = None
    scenes: tuple[str, ...] = ()
    heatmap: bool = False
    top_n: int = 12
    overview_px: int = 1024
    labels: str | None = None
    iou: float = 0.5
    scene_column: str | None = None
    point_box_m: float | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        check_reports_root(self.reports, "ReportConfig.reports")
        if self.out is not None and "://" in self.out:
            raise ValueError(
                f"ReportConfig.out={self.out!r}: the HTML report is written to a local directory"
            )
        if not 0 <= self.top_n <= 100:
            raise ValueError(f"ReportConfig.top_n={self.top_n}: expected 0..100")
        check_iou_threshold(self.iou, "ReportConfig.iou")
        if not 512 <= self.overview_px <= 1600:
            raise ValueError(f"ReportConfig.overview_px={self.overview_px}: expected 512..1600")

    @property
    def out_dir(self) -> str:
        return self.out or default_out(self.reports)


def run_report(config: ReportConfig):
    """Write the report; returns ``reports.html.HtmlReport``."""
    from reports.html import write_html_report
    from reports.store import open_store

    evaluation = None
    if config.labels is not None:
        from jobs.evaluate_detections import EvaluateConfig, run_evaluate

        how = {"scene_column": config.scene_column, "point_box_m": config.point_box_m,
               "label": config.label}  # fmt: skip
        evaluation = run_evaluate(EvaluateConfig(config.reports, config.labels, config.iou, **how))
    store = open_store(config.reports)
    return write_html_report(
        store, config.out_dir, config.scenes, heatmap=config.heatmap, top_n=config.top_n,
        overview_px=config.overview_px, evaluation=evaluation,
    )  # fmt: skip


@click.command()
@click.argument("reports")
@click.option(
    "--out",
    default=None,
    help="Output directory [default: REPORTS/html; ./<bucket>-<prefix>-html for s3://].",
)
@click.option("--scene", "scenes", multiple=True, help="Only this scene URI (repeatable).")
@click.option("--heatmap", is_flag=True, help="Add a detection-density overlay per scene.")
@click.option(
    "--top",
    "top_n",
    type=int,
    default=12,
    show_default=True,
    help="Chips of the best detections per scene.",
)
@click.option(
    "--overview-px",
    type=int,
    default=1024,
    show_default=True,
    help="Overview long side in px (512..1600).",
)
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Labels (DeepForest CSV or vector file): add metrics, PR curves, misses, false alarms.",
)
@click.option("--iou", type=float, default=0.5, show_default=True, help="IoU for a match.")
@labels_options
@verbose_option
def report(reports, out, scenes, **opts):
    """Write a static HTML report (index.html + images) of the reports root REPORTS (dir or s3://)."""
    result = run_config(
        lambda: ReportConfig(reports=reports, out=out, scenes=tuple(scenes), **opts), run_report
    )
    click.echo(
        f"{result.index}: {result.scenes} scene(s) ({result.ok} ok, {result.failed} failed, "
        f"{result.skipped} skipped), {result.detections} whale face(s)"
    )


if __name__ == "__main__":
    report()
