"""``whalescan export-detections``: the latest detections of a reports root as a GIS file.

    whalescan export-detections REPORTS OUT.gpkg|OUT.geojson|OUT.csv

REPORTS is a directory or ``s3://bucket/prefix``; each scene's latest attempt counts. QGIS opens
the GeoPackage directly; the layout is described in :mod:`reports.gis`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from jobs.options import verbose_option
from jobs.run_config import run_config
from reports.store import check_reports_root

__all__ = ["ExportDetectionsConfig", "export_detections", "run_export_detections"]


@dataclass(frozen=True)
class ExportDetectionsConfig:
    """One export: the ``reports`` root and the local ``out`` file (its suffix picks the format)."""

    reports: str
    out: str

    def __post_init__(self) -> None:
        from reports.gis import FORMATS

        check_reports_root(self.reports, "ExportDetectionsConfig.reports")
        if "://" in self.out or Path(self.out).suffix.lower() not in FORMATS:
            raise ValueError(
                f"ExportDetectionsConfig.out={self.out!r}: expected a local file ending in "
                f"{', '.join(FORMATS)}"
            )


def run_export_detections(config: ExportDetectionsConfig) -> tuple[Path, int]:
    """Write the file; returns its path and the number of detections in it."""
    from reports.gis import write_gis
    from reports.latest import latest_detections
    from reports.store import open_store

    table = latest_detections(open_store(config.reports))
    return write_gis(table, config.out), len(table)


@click.command("export-detections")
@click.argument("reports")
@click.argument("out")
@verbose_option
def export_detections(reports, out):
    """Write the latest detections in REPORTS (dir or s3://) to OUT (.gpkg, .geojson or .csv)."""
    path, n = run_config(lambda: ExportDetectionsConfig(reports, out), run_export_detections)
    click.echo(f"{path}: {n} detection(s)")


if __name__ == "__main__":
    export_detections()
