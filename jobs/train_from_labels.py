"""``whalescan train LABELS``: a labels file in, a bundle out — through chips or the detector.

With a classifier ``--arch`` the labels are cut into chips (:mod:`labels.chips`) in
``<out>.chips`` beside the bundle, and the classifier trains on them as on any chip folder;
its detection box is the labels' median face size (``dataset.json``'s ``face_size_px``).
Without ``--arch`` the approach-3 box detector trains on the labelled scenes directly
(``jobs.train_detector.train_detector``); its second look trains on chips cut here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

__all__ = ["DETECTOR_OPTIONS", "chips_dir", "cut_training_chips"]

DETECTOR_OPTIONS = (
    "epochs", "workers", "batch_size", "lr", "augment", "storage", "resume", "address", "seed",
    "cpus_per_worker", "progress", "scene_column", "point_box_m", "label", "face_px",
    "second_look",
)  # fmt: skip
"""``train`` options the detector takes too; the others are the classifier's."""


def chips_dir(out: Path) -> Path:
    """Where ``train LABELS --arch A --out OUT`` cuts its chips: ``OUT.chips`` beside the bundle."""
    return out.parent / f"{out.name}.chips"


def cut_training_chips(labels: Path, out: Path, **chip_opts: Any) -> Path:
    """Cut the chips for bundle ``out`` from ``labels``; returns the chip folder."""
    from jobs.run_config import run_config
    from labels.chips import ChipsConfig, cut_chips

    # LabelsError (a ValueError) names the file, row and problem
    summary = run_config(
        lambda: ChipsConfig(labels=labels, out=chips_dir(out), **chip_opts),
        cut_chips,
        errors=(ValueError,),
    )
    click.echo(str(summary), err=True)
    return summary.out
