"""A command's two steps, config then job, with their errors turned into click errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

__all__ = ["run_config"]

C = TypeVar("C")
R = TypeVar("R")


def run_config(
    make_config: Callable[[], C],
    run: Callable[[C], R],
    errors: tuple[type[Exception], ...] = (ValueError, FileNotFoundError),
) -> R:
    """``run(make_config())``: the config's ``ValueError`` (a bad option) becomes a
    ``click.UsageError``; the job's ``errors`` (a bad input file or root, whose message names it)
    a ``click.ClickException``, so the user sees the message without a traceback."""
    try:
        config = make_config()
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    try:
        return run(config)
    except errors as e:
        raise click.ClickException(str(e)) from e
