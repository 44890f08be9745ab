"""Latency and throughput of a backend per batch size: the batch-size lever, measured.

Used by ``whalescan bench``, ``bench/bench_backends.py`` and ``bench/gpu_checks.py``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from models.backends import Backend


@dataclass(frozen=True)
class BenchRow:
    """One batch size's figures. Latency is per batch (one backend call, input copy included);
    throughput counts tiles (``tile_h``×``tile_w`` px each) and megapixels per second at the
    median call time (steady state; robust to bursts of other processes on a shared machine)."""

    batch_size: int
    latency_p50_ms: float
    latency_p95_ms: float
    throughput_tiles_per_s: float
    throughput_mp_per_s: float
    backend: str
    device: str
    precision: str
    tile_h: int
    tile_w: int
    iters: int

    def to_dict(self) -> dict:
        return asdict(self)


def random_tiles(n: int, tile_hw: tuple[int, int], seed: int = 0) -> np.ndarray:
    """(n, 3, H, W) float32 pixels, uniform on 0..255 (the same for every backend per ``seed``)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, size=(n, 3, *tile_hw)).astype(np.float32)


def time_calls(
    backend: Backend, x: np.ndarray, iters: int | None, min_seconds: float, warmup: int
) -> np.ndarray:
    """Seconds of each timed ``backend(x)`` call, after ``warmup`` untimed calls.

    ``iters`` None: at least 10 calls and at least ``min_seconds`` of them.
    """
    for _ in range(warmup):
        backend(x)
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        backend(x)
        times.append(time.perf_counter() - t)
        if iters is not None:
            if len(times) >= iters:
                break
        elif len(times) >= 10 and time.perf_counter() - start >= min_seconds:
            break
    return np.asarray(times)


def measure(
    backend: Backend,
    batch_sizes: list[int],
    tile_hw: tuple[int, int],
    iters: int | None = None,
    min_seconds: float = 1.0,
    warmup: int = 3,
    seed: int = 0,
) -> list[BenchRow]:
    """One :class:`BenchRow` per batch size, each measured on the same random tiles."""
    tiles = random_tiles(max(batch_sizes), tile_hw, seed)
    rows = []
    for b in batch_sizes:
        times = time_calls(backend, tiles[:b], iters, min_seconds, warmup)
        tiles_per_s = b / float(np.median(times))
        rows.append(
            BenchRow(
                batch_size=b,
                latency_p50_ms=float(np.percentile(times, 50) * 1e3),
                latency_p95_ms=float(np.percentile(times, 95) * 1e3),
                throughput_tiles_per_s=tiles_per_s,
                throughput_mp_per_s=tiles_per_s * tile_hw[0] * tile_hw[1] / 1e6,
                backend=backend.name,
                device=backend.device,
                precision=getattr(backend, "precision", "fp32"),
                tile_h=int(tile_hw[0]),
                tile_w=int(tile_hw[1]),
                iters=len(times),
            )
        )
    return rows


def format_table(rows: list[BenchRow]) -> str:
    """A fixed-width text table of ``rows``."""
    head = (
        f"{'backend':<12} {'device':<8} {'prec':<5} {'tile':>9} {'batch':>5} "
        f"{'p50 ms':>9} {'p95 ms':>9} {'tiles/s':>9} {'MP/s':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.backend:<12} {r.device:<8} {r.precision:<5} {f'{r.tile_h}x{r.tile_w}':>9} "
            f"{r.batch_size:>5} {r.latency_p50_ms:>9.2f} {r.latency_p95_ms:>9.2f} "
            f"{r.throughput_tiles_per_s:>9.1f} {r.throughput_mp_per_s:>8.2f}"
        )
    return "\n".join(lines)
