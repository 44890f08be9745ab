"""``whalescan export``: a bundle's scorer as ONNX (fp32/fp16/int8) or a cached TensorRT engine.

    whalescan export BUNDLE --format onnx [--precision fp32|fp16|int8] [--calib-chips DIR]
    whalescan export BUNDLE --format tensorrt [--precision …] [--tile N] [--max-batch B]

Artefacts are written into the bundle directory (``model*.onnx``, ``engines/``) and recorded
in ``bundle.json``; a ``.tar`` bundle is exported in its unpacked cache copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from jobs.options import verbose_option

FORMATS = ("onnx", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_PRECISION = {"onnx": "fp32", "tensorrt": "fp16"}


@dataclass(frozen=True)
class ExportConfig:
    """One export. ``tile``/``max_batch``/``device``: the TensorRT profile and GPU (tensorrt only).

    ``tile`` is the side of the region tiles the engine is tuned for (the detect job's region
    with its halo); ``max_batch`` None sizes the batch range from the tile (see
    :func:`models.backends.tensorrt_backend.batch_for_tile`).
    """

    bundle: Path
    format: str = "onnx"
    precision: str | None = None
    tile: int = 2048
    max_batch: int | None = None
    calib_chips: Path | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format {self.format!r}: expected one of {FORMATS}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: expected one of {PRECISIONS}")
        if self.tile < 1:
            raise ValueError(f"tile {self.tile}: must be ≥ 1 px")
        if self.max_batch is not None and self.max_batch < 1:
            raise ValueError(f"max_batch {self.max_batch}: must be ≥ 1")
        if self.resolved_precision == "int8" and self.calib_chips is None:
            raise ValueError(
                "precision int8 needs calibration chips: pass --calib-chips DIR (e.g. the "
                "training set's train/ folder)"
            )

    @property
    def resolved_precision(self) -> str:
        return self.precision or DEFAULT_PRECISION[self.format]


def run_export(config: ExportConfig) -> list[Path]:
    """Do the export; return the files written or found up to date (ONNX, then engine), the
    second look's after the detector's when the bundle has one (it runs on the same backend)."""
    from models.bundle import load_bundle
    from models.second_look import SecondLookSpec

    bundle = load_bundle(config.bundle)
    paths = _export(bundle, config, config.tile)
    spec = SecondLookSpec.of(bundle)
    if spec is not None:
        second = spec.load(bundle)
        paths += _export(second, config, second.input_size)  # it scores chips, not regions
    return paths


def _export(bundle, config: ExportConfig, tile: int) -> list[Path]:
    from models.export import export_onnx, onnx_path

    precision = config.resolved_precision
    if precision == "int8":
        onnx = export_onnx(bundle, "int8", calib_chips=config.calib_chips)
    elif config.format == "onnx":
        onnx = export_onnx(bundle, precision)
    else:
        onnx = onnx_path(bundle, precision)
    if config.format == "onnx":
        return [onnx]
    from models.backends import load_backend

    backend = load_backend(
        "tensorrt",
        bundle,
        device=config.device,
        precision=precision,
        tile=tile,
        max_batch=config.max_batch,
    )
    return [onnx, *backend.engine_paths]


@click.command()
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="onnx", show_default=True)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=None,
    help="fp32, fp16 or int8 (Q/DQ; needs --calib-chips). Default: fp32 onnx, fp16 tensorrt.",
)
@click.option("--tile", type=int, default=2048, show_default=True,
              help="TensorRT: region tile side (px) the profile is tuned for.")  # fmt: skip
@click.option("--max-batch", type=int, default=None,
              help="TensorRT: largest batch of tiles (default: from the tile size).")  # fmt: skip
@click.option("--calib-chips", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="int8: chip images (found recursively) to calibrate on.")  # fmt: skip
@click.option("--device", default=None, help="TensorRT: CUDA device, e.g. cuda:1 (default cuda:0).")
@verbose_option
def export(bundle, fmt, precision, tile, max_batch, calib_chips, device) -> None:
    """Export BUNDLE's scorer as ONNX or a TensorRT engine, stored in the bundle."""
    from models.backends import BackendUnavailableError
    from models.bundle import BundleError, sha256_file
    from models.export import ExportError

    try:
        config = ExportConfig(
            bundle=bundle, format=fmt, precision=precision, tile=tile,
            max_batch=max_batch, calib_chips=calib_chips, device=device,
        )  # fmt: skip
        paths = run_export(config)
    except (ValueError, BundleError, ExportError, BackendUnavailableError) as e:
        raise click.ClickException(str(e)) from e
    for p in paths:
        click.echo(f"{p}  sha256 {sha256_file(p)[:16]}…")


if __name__ == "__main__":
    export()
