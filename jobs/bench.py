"""``whalescan bench``: latency and throughput of one backend per batch size (the batch lever).

    whalescan bench BUNDLE [--backend auto] [--batch-sizes 1,4,16,64] [--tile N] [--iters N]
                           [--json FILE]

Tiles default to the bundle's chip size, where batching matters most: per-call overhead is
amortised over the batch, so throughput rises with batch size while each batch's latency rises
too — small batches for latency, large ones for throughput.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click

from jobs.options import verbose_option


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark. ``tile`` None: the bundle's input size; ``iters`` None: ≥ 10 timed calls
    and ≥ ``min_seconds`` per batch size, after ``warmup`` untimed calls."""

    bundle: Path
    backend: str = "auto"
    batch_sizes: tuple[int, ...] = (1, 4, 16, 64)
    tile: int | None = None
    iters: int | None = None
    warmup: int = 3
    min_seconds: float = 1.0
    threads: int | None = None
    device: str | None = None
    precision: str | None = None

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch_sizes {self.batch_sizes}: expected positive integers")
        if self.tile is not None and self.tile < 1:
            raise ValueError(f"tile {self.tile}: must be ≥ 1 px")
        if self.iters is not None and self.iters < 1:
            raise ValueError(f"iters {self.iters}: must be ≥ 1")
        if self.warmup < 0:
            raise ValueError(f"warmup {self.warmup}: must be ≥ 0")


def run_bench(config: BenchConfig):
    """Load the backend once and measure every batch size; return the rows (BenchRow)."""
    from models.backends import load_backend
    from models.backends.timing import measure
    from models.bundle import load_bundle

    bundle = load_bundle(config.bundle)
    options = {"precision": config.precision} if config.precision else {}
    backend = load_backend(
        config.backend, bundle, device=config.device, threads=config.threads, **options
    )
    tile = config.tile or bundle.input_size
    if tile < bundle.input_size:
        raise ValueError(f"tile {tile}: smaller than the model's {bundle.input_size} px chip")
    return measure(
        backend,
        list(config.batch_sizes),
        (tile, tile),
        iters=config.iters,
        min_seconds=config.min_seconds,
        warmup=config.warmup,
    )


def _batch_sizes(ctx, param, value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated integers") from None


@click.command()
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option("--backend", default="auto", show_default=True,
              help="auto, torch, onnxruntime, openvino or tensorrt.")  # fmt: skip
@click.option("--batch-sizes", default="1,4,16,64", show_default=True, callback=_batch_sizes)
@click.option("--tile", type=int, default=None, help="Tile side in px (default: the chip size).")
@click.option("--iters", type=int, default=None,
              help="Timed calls per batch size (default: ≥ 10 and ≥ 1 s).")  # fmt: skip
@click.option("--warmup", type=int, default=3, show_default=True)
@click.option("--precision", default=None, help="Backend precision, e.g. fp32, bf16, fp16.")
@click.option("--threads", type=int, default=None, help="Intra-op CPU threads.")
@click.option("--device", default=None, help="e.g. cpu, cuda:0 (default: the backend's).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write the rows as a JSON list.")  # fmt: skip
@verbose_option
def bench(bundle, backend, batch_sizes, tile, iters, warmup, precision, threads, device, json_path):
    """Measure BUNDLE's latency (p50/p95 per batch) and throughput per batch size."""
    from models.backends import BackendUnavailableError
    from models.backends.timing import format_table
    from models.bundle import BundleError

    try:
        config = BenchConfig(
            bundle=bundle, backend=backend, batch_sizes=batch_sizes, tile=tile, iters=iters,
            warmup=warmup, threads=threads, device=device, precision=precision,
        )  # fmt: skip
        rows = run_bench(config)
    except (ValueError, BundleError, BackendUnavailableError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(format_table(rows))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps([r.to_dict() for r in rows], indent=2) + "\n")


if __name__ == "__main__":
    bench()
