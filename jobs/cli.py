"""The ``whalescan`` command: a thin click group; each command lives in its own ``jobs`` module.

Commands are imported only when invoked, so ``whalescan --help`` stays fast and torch/ray load
only for the commands that need them.
"""

from __future__ import annotations

import importlib

import click

from jobs.logs import configure_logging

# name -> "module:attribute" of a click command or group.
COMMANDS = {
    "synth": "jobs.synth:synth",
    "chips": "jobs.chips:chips",
    "train": "jobs.train:train",
    "eval": "jobs.evaluate:evaluate",
    "evaluate": "jobs.evaluate_detections:evaluate",
    "export-detections": "jobs.export_detections:export_detections",
    "detect": "jobs.detect:detect",
    "export": "jobs.export:export",
    "bench": "jobs.bench:bench",
    "scan": "jobs.scan:scan",
    "report": "jobs.report:report",
    "compact": "jobs.compact:compact",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="whalescan")
def main(verbose: int) -> None:
    """Find whale faces in huge aerial scenes: train, detect on Ray, report as GeoParquet."""
    configure_logging(verbose)


if __name__ == "__main__":
    main()
