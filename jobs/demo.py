"""``make demo``: the three approaches trained and run on the same held-out scene, on local Ray.

synth chips, labelled scenes and a held-out labelled scene → train the classifier (approaches 1
and 2) and the box detector (approach 3, a short demo-only schedule) → detect the held-out scene
three ways (sliding window, fully convolutional, boxes) → score each with ``whalescan evaluate``
→ one comparison table, the HTML reports and a DuckDB query to try.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import click

from jobs.options import verbose_option

log = logging.getLogger(__name__)

# (name, detection mode, which model); approach 1 and 2 share the classifier.
APPROACHES = (
    ("1 sliding window", "sliding", "classifier"),
    ("2 fully convolutional", "fcn", "classifier"),
    ("3 box detector", "boxes", "detector"),
)


@dataclass(frozen=True)
class DemoConfig:
    """One demo run into ``out``.

    Held-out scene: ``scene_size``² px with ``whales`` faces (seed ``scene_seed``). Classifier:
    ``chips`` training chips, ``epochs`` (None: ``whalescan train``'s default), ``workers``.
    Box detector: ``detector_scenes`` labelled scenes of ``detector_scene_size``² px with
    ``detector_whales`` whales each, validated per epoch as ``whalescan train`` holds out, trained
    for ``detector_epochs`` on ``detector_crops`` crops of ``detector_crop``² px an epoch — a
    short schedule for the demo, not ``whalescan train``'s defaults (docs/approach3.md has the
    full schedule's figures).
    ``sliding_stride``: approach 1's window step in px (None: the classifier's output stride, 8
    px for whalenet — 4× the windows of the default 16, and minutes more on two cores).
    """

    out: Path
    scene_size: int = 4096
    whales: int = 20
    scene_seed: int = 2026
    chips: int = 3000
    epochs: int | None = None
    workers: int = 2
    detector_scenes: int = 3  # labelled training scenes for approach 3
    detector_scene_size: int = 1280  # their side, px
    detector_whales: int = 12  # adult whales in each
    detector_epochs: int = 20  # a short schedule, not whalescan train's default
    detector_crops: int = 256  # crops an epoch
    detector_crop: int = 199  # crop side, px (≥ the 135-px receptive field)
    sliding_stride: int | None = 16  # approach 1's window step, px

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        for name in ("scene_size", "detector_scene_size"):
            if getattr(self, name) < 512:
                raise ValueError(f"{name} {getattr(self, name)}: expected ≥ 512 px")
        for name in ("whales", "chips", "workers", "detector_whales", "detector_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)}: expected ≥ 1")
        if self.detector_scenes < 2:
            raise ValueError(
                f"detector_scenes {self.detector_scenes}: expected ≥ 2 (one is held out)"
            )
        if self.detector_crop < 135:
            raise ValueError(
                f"detector_crop {self.detector_crop}: expected ≥ 135 px (the receptive field)"
            )
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs {self.epochs}: expected ≥ 1 or None")
        if self.sliding_stride is not None and self.sliding_stride < 1:
            raise ValueError(f"sliding_stride {self.sliding_stride}: expected ≥ 1 px or None")


def run_demo(config: DemoConfig) -> dict:
    """Run every stage into ``config.out``; returns per approach its headline numbers."""
    from jobs.compare import format_comparison, score_approach
    from jobs.evaluate import evaluate_bundle, format_report
    from jobs.ray_session import ray_session
    from synth.chips import write_chips
    from synth.labelled import write_labelled_scenes

    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    _step("1/6 synthetic chips, labelled scenes, and a held-out labelled scene")
    write_chips(out / "chips", n=config.chips, size=64, seed=0)  # many hard negatives: few FPs
    train_set = write_labelled_scenes(
        out / "scenes", config.detector_scenes, size=config.detector_scene_size, seed=7,
        whales=config.detector_whales,
    )  # fmt: skip
    heldout = write_labelled_scenes(
        out / "heldout", 1, size=config.scene_size, seed=config.scene_seed, whales=config.whales
    )
    click.echo(f"  {train_set}\n  {heldout}")
    with ray_session(None):
        _step(f"2/6 train the whale-face classifier (approaches 1 and 2; Ray Train, "
              f"{config.workers} workers)")  # fmt: skip
        classifier, classifier_s = _timed(_train_classifier, config)
        _step("3/6 evaluate the classifier on the validation chips")
        click.echo(format_report(evaluate_bundle(classifier.path, out / "chips")))
        _step(f"4/6 train the box detector (approach 3; Ray Train, {config.workers} workers; "
              f"demo schedule: {config.detector_epochs} epochs)")  # fmt: skip
        detector, detector_s = _timed(_train_detector, config, train_set.annotations)
        _step("5/6 detect whale faces in the held-out scene, three ways (tiled on Ray)")
        bundles = {"classifier": (classifier, classifier_s), "detector": (detector, detector_s)}
        detected = []
        for name, mode, model in APPROACHES:
            bundle, train_s = bundles[model]
            outcome, detect_s = _timed(_detect, config, bundle, mode, heldout.scenes[0])
            how = (
                f", window stride {config.sliding_stride or bundle.output_stride} px"
                if mode == "sliding"
                else ""
            )
            click.echo(
                f"  approach {name} ({mode}{how}): {outcome.detections} detections in "
                f"{detect_s:.1f} s"
            )
            click.echo("  " + _scale_line(outcome, bundle))
            detected.append((name, mode, train_s, detect_s, outcome))
    _step("6/6 score each approach against the scene's truth (whalescan evaluate), report")
    runs = [
        score_approach(name, mode, train_s, detect_s, out / "reports" / mode, heldout.annotations)
        for name, mode, train_s, detect_s, _ in detected
    ]
    for run in runs:
        click.echo(f"  approach {run.name}: {run.by('centre').line()}")
    click.echo("\n" + format_comparison(runs))
    htmls = {run.mode: _report(out / "reports" / run.mode, heldout.annotations) for run in runs}
    click.echo(f"\ndone in {time.perf_counter() - t0:.0f} s")
    click.echo(f"  scene:      {heldout.scenes[0]} (labels {heldout.annotations})")
    click.echo(f"  bundles:    {classifier.path} (classifier), {detector.path} (box detector)")
    for name, *_, outcome in detected:
        click.echo(f"  detections: {outcome.detections_path} (approach {name})")
    click.echo(f"  reports:    {out / 'reports'}/{{{','.join(htmls)}}}")
    for html in htmls.values():
        click.echo(f"  html:       {html.index}")
    click.echo(
        "  try it in DuckDB (in .venv: python -c 'import duckdb; duckdb.sql(\"…\").show()'):"
    )
    click.echo(
        "    SELECT mode, count(*) AS whales, round(avg(score), 3) AS mean_score "
        f"FROM read_parquet('{(out / 'reports').resolve()}/*/detections/**/*.parquet', "
        "hive_partitioning = true) GROUP BY ALL"
    )
    return {run.mode: _figures(run) for run in runs} | {"seconds": time.perf_counter() - t0}


def _timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def _train_classifier(config: DemoConfig):
    from jobs.train_classifier import TrainConfig, run_train

    opts = {"epochs": config.epochs} if config.epochs else {}
    return run_train(
        TrainConfig(data=config.out / "chips", out=config.out / "bundle",
                    workers=config.workers, **opts)
    )  # fmt: skip


def _train_detector(config: DemoConfig, labels: Path):
    from jobs.train_detector import DetectorTrainConfig, run_train_detector

    # The demo's schedule, not the defaults: few epochs and crops on small default-look scenes
    # so ``make demo`` stays within minutes on two cores.
    return run_train_detector(
        DetectorTrainConfig(
            labels=labels, out=config.out / "detector", workers=config.workers,
            epochs=config.detector_epochs, crops_per_epoch=config.detector_crops,
            crop=config.detector_crop,
        )
    )  # fmt: skip


def _detect(config: DemoConfig, bundle, mode: str, scene: Path):
    from jobs.detect import DetectConfig, run_detect

    stride = config.sliding_stride if mode == "sliding" else None
    # rerun: a demo run again into the same folder times and shows its own detection
    (outcome,) = run_detect(
        DetectConfig(bundle=str(bundle.path), out=str(config.out / "reports" / mode),
                     scenes=(str(scene),), mode=mode, stride=stride, rerun=True)
    )  # fmt: skip
    if outcome.status != "ok":
        raise RuntimeError(f"{scene}: approach {mode} failed: {outcome.error}")
    return outcome


def _figures(run) -> dict:
    i, c = run.by("iou"), run.by("centre")
    return {
        "train_s": run.train_s, "detect_s": run.detect_s, "detections": c.detections,
        "faces": c.truths, "precision": c.precision, "recall": c.recall,
        "ap_iou": i.average_precision, "ap_centre": c.average_precision,
        "duplicates": c.duplicates,
    }  # fmt: skip


def _scale_line(outcome, bundle) -> str:
    """Where the scene was scored: its GSD, the model's, and the resampling between them."""
    from jobs.detect import format_scale

    model = "an unknown GSD" if bundle.gsd_m is None else f"{bundle.gsd_m * 100:.1f} cm/px"
    return f"scale: model trained at {model}; scene {format_scale(outcome)}"


def _report(reports: Path, labels: Path):
    """Write the HTML report (scored against ``labels``) and run the example query
    ``whales_per_scene`` with DuckDB."""
    import duckdb

    from jobs.report import ReportConfig, run_report
    from reports.sql import load_query

    html = run_report(ReportConfig(str(reports), labels=str(labels)))
    click.echo(f"\nwhales per scene in {reports} (reports/queries/whales_per_scene.sql, DuckDB):")
    result = duckdb.sql(load_query("whales_per_scene", reports=reports))
    for row in result.fetchall():
        click.echo("  " + " | ".join(str(v) for v in row))
    return html


def _step(text: str) -> None:
    click.secho(f"\n== {text}", bold=True)


@click.command()
@click.option("--out", default="demo-out", show_default=True, type=click.Path(path_type=Path))
@click.option(
    "--scene-size",
    default=DemoConfig.scene_size,
    show_default=True,
    help="Held-out scene side, px.",
)
@click.option(
    "--whales", default=DemoConfig.whales, show_default=True, help="Faces in the held-out scene."
)
@click.option("--epochs", type=int, default=None, help="Classifier epochs (default: train's).")
@click.option(
    "--detector-epochs",
    default=DemoConfig.detector_epochs,
    show_default=True,
    help="Box detector epochs.",
)
@click.option("--workers", default=DemoConfig.workers, show_default=True, help="Training workers.")
@click.option("--sliding-stride", type=int, default=DemoConfig.sliding_stride, show_default=True,
              help="Approach 1's window step, px (the classifier's output stride is 8).")  # fmt: skip
@verbose_option
def demo(out, scene_size, whales, epochs, detector_epochs, workers, sliding_stride) -> None:
    """The three approaches on one held-out synthetic scene, scored in one table (local Ray)."""
    from jobs.run_config import run_config

    run_config(
        lambda: DemoConfig(
            out, scene_size=scene_size, whales=whales, epochs=epochs, workers=workers,
            detector_epochs=detector_epochs, sliding_stride=sliding_stride,
        ),
        run_demo,
    )  # fmt: skip


if __name__ == "__main__":
    demo()
