"""``whalescan compact``: fold the scenes table's per-attempt objects into one segment per day."""

from __future__ import annotations

import click

from jobs.options import verbose_option


@click.command()
@click.argument("reports")
@click.option(
    "--min-objects", type=int, default=2, show_default=True,
    help="Compact a dt= partition only when it holds at least this many objects.",
)  # fmt: skip
@verbose_option
def compact(reports: str, min_objects: int) -> None:
    """Compact the scenes table (the scan ledger) under REPORTS (a directory or s3://…)."""
    from reports.compact import compact as run_compact
    from reports.store import open_store

    try:
        store = open_store(reports)
        summary = run_compact(store, min_objects=min_objects)
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    click.echo(
        f"compacted {summary.partitions} partition(s): {summary.objects_in} object(s), "
        f"{summary.rows_in} row(s) → {summary.rows_out} row(s) in {store.root}"
    )
