"""``make demo``: the whole job on an embedded default, on a local Ray instance.

synth chips + an 8192² scene → train (2 workers) → eval → detect → score against the truth →
report, then print where everything is and a DuckDB query to try.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click

from jobs.options import verbose_option

log = logging.getLogger(__name__)


def run_demo(out: Path, scene_size: int, whales: int, epochs: int | None, workers: int) -> dict:
    """Run every stage into ``out``; returns the headline numbers."""
    from jobs.detect import DetectConfig, run_detect
    from jobs.evaluate import evaluate_bundle, format_report
    from jobs.ray_session import ray_session
    from jobs.train import TrainConfig, run_train
    from synth.chips import write_chips
    from synth.scene import SceneSpec, write_scene

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    _step("1/5 synthetic chips and a held-out scene")
    write_chips(out / "chips", n=3000, size=64, seed=0)  # more hard negatives: fewer false alarms
    scene = out / "scene.tif"
    write_scene(scene, SceneSpec(scene_size, scene_size, whales=whales, seed=2026))
    with ray_session(None):
        _step("2/5 train the whale-face classifier (Ray Train, 2 workers)")
        train_opts = {"epochs": epochs} if epochs else {}
        bundle = run_train(
            TrainConfig(data=out / "chips", out=out / "bundle", workers=workers, **train_opts)
        )
        _step("3/5 evaluate on the validation chips")
        click.echo(format_report(evaluate_bundle(bundle.path, out / "chips")))
        _step("4/5 detect whale faces in the scene (fully convolutional, tiled on Ray)")
        reports = out / "reports"
        (outcome,) = run_detect(
            DetectConfig(bundle=str(bundle.path), out=str(reports), scenes=(str(scene),))
        )
    click.echo(_scale_line(outcome, bundle))
    _step("5/5 score against the truth, report")
    match = _score(outcome, scene, bundle)
    click.echo(match.line())
    html = _report(reports)
    click.echo(f"\ndone in {time.perf_counter() - t0:.0f} s")
    click.echo(f"  bundle:     {bundle.path}")
    click.echo(f"  detections: {outcome.detections_path}")
    click.echo(f"  reports:    {reports}")
    click.echo(f"  html:       {html.index}")
    click.echo(
        "  try it in DuckDB (in .venv: python -c 'import duckdb; duckdb.sql(\"…\").show()'):"
    )
    click.echo(
        "    SELECT scene_uri, count(*) AS whales, round(avg(score), 3) AS mean_score "
        f"FROM read_parquet('{reports.resolve()}/detections/**/*.parquet', "
        "hive_partitioning = true) GROUP BY ALL"
    )
    return {"precision": match.precision, "recall": match.recall, "ap": match.average_precision}


def _scale_line(outcome, bundle) -> str:
    """Where the scene was scored: its GSD, the model's, and the resampling between them."""
    from jobs.detect import format_scale

    model = "an unknown GSD" if bundle.gsd_m is None else f"{bundle.gsd_m * 100:.1f} cm/px"
    return f"scale: model trained at {model}; scene {format_scale(outcome)}"


def _score(outcome, scene: Path, bundle):
    import numpy as np
    import pyarrow.parquet as pq

    from reports.truth import match_centres

    det = pq.read_table(outcome.detections_path)
    boxes = np.stack([det[c].to_numpy() for c in ("px_xmin", "px_ymin", "px_xmax", "px_ymax")], 1)
    truth = pq.read_table(scene.with_suffix(".truth.parquet"))
    tboxes = np.stack(
        [truth[c].to_numpy() for c in ("px_xmin", "px_ymin", "px_xmax", "px_ymax")], 1
    )
    return match_centres(boxes, det["score"].to_numpy(), tboxes, radius=bundle.box_size_px / 2)


def _report(reports: Path):
    """Write the HTML report and run the example query ``whales_per_scene`` with DuckDB."""
    import duckdb

    from jobs.report import ReportConfig, run_report
    from reports.sql import load_query

    html = run_report(ReportConfig(str(reports)))
    click.echo("\nwhales per scene (reports/queries/whales_per_scene.sql, DuckDB):")
    result = duckdb.sql(load_query("whales_per_scene", reports=reports))
    for row in result.fetchall():
        click.echo("  " + " | ".join(str(v) for v in row))
    return html


def _step(text: str) -> None:
    click.secho(f"\n== {text}", bold=True)


@click.command()
@click.option("--out", default="demo-out", show_default=True, type=click.Path(path_type=Path))
@click.option("--scene-size", default=8192, show_default=True, help="Scene side in pixels.")
@click.option("--whales", default=40, show_default=True)
@click.option("--epochs", type=int, default=None, help="Training epochs (default: train's).")
@click.option("--workers", default=2, show_default=True, help="Training workers.")
@verbose_option
def demo(out: Path, scene_size: int, whales: int, epochs: int | None, workers: int) -> None:
    """Synthetic chips and scene → train → detect → report, on a local Ray instance."""
    run_demo(out, scene_size, whales, epochs, workers)


if __name__ == "__main__":
    demo()
