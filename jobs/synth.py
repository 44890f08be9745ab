"""``whalescan synth``: write synthetic chip datasets and aerial scenes (see :mod:`synth`).

    whalescan synth chips OUT --n 600 --size 64 --seed 0 [--val-fraction 0.25]
    whalescan synth scene OUT.tif --width 8192 --height 8192 --whales 10 --seed 0 \\
        [--dtype uint8|uint16] [--bands 3|4] [--nodata-border] [--no-crs]
    whalescan synth scenes OUT --n 4 [--size 2048] [--seed 0] [--hard] [--whales W]

Also runs as ``python -m jobs.synth ...``.
"""

from __future__ import annotations

from pathlib import Path

import click

from jobs.options import verbose_option


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def synth() -> None:
    """Deterministic synthetic data: chip datasets and GeoTIFF scenes with truth."""


@synth.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "n", type=int, default=600, help="Train chips.")
@click.option("--size", type=int, default=64, help="Chip side, 32..256 px.")
@click.option("--seed", type=int, default=0)
@click.option("--val-fraction", type=float, default=0.25, help="Share of val chips in train + val.")
@verbose_option
def chips(out: Path, n: int, size: int, seed: int, val_fraction: float) -> None:
    """Write an ImageFolder chip dataset (face / not_face) under OUT."""
    from synth.chips import write_chips

    try:
        summary = write_chips(out, n=n, size=size, seed=seed, val_fraction=val_fraction)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    click.echo(str(summary))


@synth.command()
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--width", type=int, required=True, help="Scene width, px.")
@click.option("--height", type=int, required=True, help="Scene height, px.")
@click.option("--whales", type=int, default=10, help="Whales with faces.")
@click.option("--seed", type=int, default=0)
@click.option(
    "--dtype",
    type=click.Choice(["uint8", "uint16"]),
    default="uint8",
    help="uint16 holds 12-bit data (uint8 value x 16).",
)
@click.option("--bands", type=click.Choice(["3", "4"]), default="3", help="3 = RGB, 4 = RGB + NIR.")
@click.option("--nodata-border", is_flag=True, help="Ragged nodata (0) along two edges.")
@click.option("--no-crs", "no_crs", is_flag=True, help="No CRS and no geotransform.")
@verbose_option
def scene(
    out: Path,
    width: int,
    height: int,
    whales: int,
    seed: int,
    dtype: str,
    bands: str,
    nodata_border: bool,
    no_crs: bool,
) -> None:
    """Write a synthetic scene GeoTIFF OUT and its truth sidecar OUT.truth.parquet."""
    from synth.scene import SceneSpec, write_scene

    try:
        spec = SceneSpec(
            width, height, whales=whales, seed=seed, dtype=dtype, bands=int(bands),
            nodata_border=nodata_border, crs=not no_crs,
        )  # fmt: skip
        summary = write_scene(out, spec)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    click.echo(str(summary))


@synth.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "n", type=int, required=True, help="Number of scenes.")
@click.option("--size", type=int, default=2048, help="Scene side, px.")
@click.option("--seed", type=int, default=0)
@click.option(
    "--hard",
    is_flag=True,
    help="Whales 0.8-1.25x, calves beside adults, haze, cloud shadow, twice the distractors.",
)
@click.option(
    "--whales", type=int, default=None, help="Adult whales per scene [default: 1.2 per MP]."
)
@verbose_option
def scenes(out: Path, n: int, size: int, seed: int, hard: bool, whales: int | None) -> None:
    """Write N labelled GeoTIFF scenes and OUT/annotations.csv (DeepForest layout)."""
    from synth.labelled import write_labelled_scenes

    try:
        summary = write_labelled_scenes(out, n, size=size, seed=seed, hard=hard, whales=whales)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err
    click.echo(str(summary))


if __name__ == "__main__":
    synth()
