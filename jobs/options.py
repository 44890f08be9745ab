"""Options shared by several commands (rasterio's ``rio/options.py`` habit)."""

from __future__ import annotations

import sys

import click

from jobs.logs import configure_logging
from models.backends import REGISTRY

__all__ = [
    "MODES",
    "address_option",
    "backend_option",
    "mode_option",
    "progress_option",
    "verbose_option",
    "workers_option",
]

# How a region is scored (jobs.worker.RegionDetector.heatmap): "fcn", one pass of the fully
# convolutional network; "sliding", the classifier over windows.
MODES = ("fcn", "sliding", "boxes")  # boxes: the approach-3 box detector (bundle kind detector)


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value:
        configure_logging(value)
    return value


verbose_option = click.option(
    "-v",
    "--verbose",
    count=True,
    expose_value=False,
    callback=_set_verbosity,
    help="More log output (-vv for debug); also works as `python -m jobs.X -v`.",
)
address_option = click.option(
    "--address",
    default=None,
    help="Ray cluster to join (e.g. 'auto' or ray://host:10001); default: a local Ray instance.",
)
mode_option = click.option(
    "--mode",
    type=click.Choice(MODES),
    default=None,
    help="How regions are scored; default from the bundle: boxes for a box detector, else fcn.",
)
backend_option = click.option(
    "--backend",
    type=click.Choice(list(REGISTRY)),
    default="auto",
    show_default=True,
    help="Inference backend (models.backends); auto picks by hardware.",
)
workers_option = click.option(
    "--workers",
    type=int,
    default=None,
    help="Detection actors (default: one per GPU, else the CPU default); 0 = no Ray.",
)


def _progress_default(ctx: click.Context, param: click.Parameter, value: bool | None) -> bool:
    # Bars only on a terminal: under Ray jobs, Kubernetes or a pipe, stderr is a log file and a
    # bar's carriage returns would fill it with half-drawn lines.
    return sys.stderr.isatty() if value is None else value


progress_option = click.option(
    "--progress/--no-progress",
    default=None,
    callback=_progress_default,
    help="Progress bar on stderr (default: only when stderr is a terminal).",
)
