"""Options shared by several commands (rasterio's ``rio/options.py`` habit)."""

from __future__ import annotations

import click

from jobs.cli import configure_logging


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
