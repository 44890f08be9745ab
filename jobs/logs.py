"""Logging setup for the command line: quiet by default; only the CLI configures logging."""

from __future__ import annotations

import logging

__all__ = ["configure_logging"]


def configure_logging(verbose: int) -> None:
    """Quiet by default (warnings); -v info, -vv debug."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
