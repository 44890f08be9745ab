"""``whalescan chips``: labelled scenes → the ImageFolder chip dataset ``train`` takes.

    whalescan chips LABELS OUT --size 64 [--gsd M] [--seed S] [--val-fraction F]

LABELS is a DeepForest CSV or a vector file (see :mod:`labels.read`); what is cut is described
in :mod:`labels.chips`. Also runs as ``python -m jobs.chips ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from jobs.options import config_defaults, verbose_option
from jobs.run_config import run_config
from labels.chips import ChipsConfig, cut_chips

default_option = config_defaults(ChipsConfig)


def labels_options(fn):
    """``--scene-column`` and ``--point-box-m``: how to read a vector labels file; ``--label``:
    which classes are the whale faces."""
    fn = click.option(
        "--label",
        default=None,
        help="The faces' class(es) in the labels, comma-separated (adult,calf); default every box.",
    )(fn)
    fn = click.option(
        "--point-box-m",
        type=float,
        default=None,
        help="Box side (ground metres) for point labels; default the median labelled box.",
    )(fn)
    return click.option(
        "--scene-column",
        default=None,
        help="Column naming the scene in a vector labels file (default: image_path, scene, ...).",
    )(fn)


@click.command("chips")
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@default_option("--size", help="Chip side, px.")
@click.option(
    "--gsd", "gsd_m", type=float, default=None,
    help="Cut chips at this ground sample distance (m/px); default the scenes' own pixels.",
)  # fmt: skip
@default_option("--seed")
@default_option("--val-fraction", help="Share of the SCENES whose chips go to val/.")
@default_option("--per-face", help="Positive chips per labelled face (each with its own jitter).")
@default_option("--negatives", help="Negative chips per positive chip.")
@labels_options
@verbose_option
def chips(labels: Path, out: Path, **opts: Any) -> None:
    """Cut face / not_face chips from the scenes LABELS names into OUT (train/ and val/)."""
    # LabelsError (a ValueError) names the file, row and problem
    summary = run_config(
        lambda: ChipsConfig(labels=labels, out=out, **opts), cut_chips, errors=(ValueError,)
    )
    click.echo(str(summary))


if __name__ == "__main__":
    chips()
