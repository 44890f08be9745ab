"""Options shared by several commands (rasterio's ``rio/options.py`` habit)."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import click

from jobs.logs import configure_logging
from jobs.region_pool import CAPACITY_WAIT_S
from models.backends import REGISTRY

__all__ = [
    "MODES",
    "address_option",
    "backend_option",
    "capacity_wait_option",
    "config_defaults",
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
    show_default=False,
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
capacity_wait_option = click.option(
    "--capacity-wait",
    "capacity_wait_s",
    type=click.FloatRange(min=0, min_open=True),
    default=CAPACITY_WAIT_S,
    show_default=True,
    metavar="SECONDS",
    help="With no live detection actor for this long (nodes lost and none can host a "
    "replacement), the remaining scenes become failed rows naming the reason instead of waiting.",
)
workers_option = click.option(
    "--workers",
    type=int,
    default=None,
    help="Detection actors (default: one per GPU, else the CPU default); 0 = no Ray.",
)


def config_defaults(config_cls: type) -> Any:
    """A ``click.option`` factory whose default (shown in ``--help``) is ``config_cls``'s field
    default, so a default is stated once, in the config: ``option("--lr", help=...)`` reads
    field ``lr``; ``type`` is the default's type unless given."""
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}

    def option(flag: str, **kwargs: Any):
        default = defaults[flag.lstrip("-").replace("-", "_")]
        kwargs.setdefault("type", type(default))
        return click.option(flag, default=default, show_default=True, **kwargs)

    return option


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
