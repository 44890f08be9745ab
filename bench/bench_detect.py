"""Detection benchmarks, each a side-by-side ratio measured in one run.

1. FCN vs sliding window at the same heatmap density (stride = the network's output stride).
2. End-to-end megapixels/s (read + score + peaks + NMS) vs the bare model on the same pixels.
3. CPU actor layouts on Ray: 1 actor × all cores vs one actor per core.
4. Peak memory of the whole process tree (driver + Ray + actors) vs scene size.

Usage: python -m bench.bench_detect [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.common import run_with_peak_rss, save


def _scene(root: Path, side: int, whales: int = 20) -> Path:
    from synth.scene import SceneSpec, write_scene

    path = root / f"scene-{side}.tif"
    if not path.exists():
        write_scene(path, SceneSpec(side, side, whales=whales, seed=side))
    return path


def _bundle(root: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).parent.parent))
    from tests.helpers import untrained_bundle

    path = root / "bundle"
    if not path.exists():
        untrained_bundle(path)
    return path


def _detect(bundle, scene, out, **kw) -> float:
    from jobs.detect import DetectConfig, run_detect

    t0 = time.perf_counter()
    (o,) = run_detect(
        DetectConfig(bundle=str(bundle), out=str(out), scenes=(str(scene),), progress=False, **kw)
    )
    assert o.status == "ok", o.error
    return time.perf_counter() - t0


def _tasks(detector, scene: Path, side: int, region: int):
    from jobs.worker import RegionTask
    from tiling.bands import Scaling
    from tiling.region_boxes import plan_scene_regions

    identity = Scaling((0.0,) * 3, (1.0,) * 3)
    regions = plan_scene_regions(side, side, region, detector.params)
    return [RegionTask(0, str(scene), r, (1, 2, 3), identity) for r in regions]


def _score_all(detector, pixels) -> float:
    detector.heatmap(pixels[0])  # warm-up: kernels chosen
    t0 = time.perf_counter()
    for px in pixels:
        detector.heatmap(px)
    return time.perf_counter() - t0


def fcn_vs_sliding(root: Path, side: int, region: int = 1024) -> dict:
    """Scoring the same regions at the same heatmap density (stride 8), warm, torch."""
    from jobs.worker import DetectorSettings, RegionDetector

    bundle, scene = _bundle(root), _scene(root, side)
    fcn = RegionDetector(str(bundle), DetectorSettings(backend="torch", mode="fcn"))
    sliding = RegionDetector(
        str(bundle), DetectorSettings(backend="torch", mode="sliding", stride=8, batch_size=256)
    )
    pixels = [fcn._read(t)[0] for t in _tasks(fcn, scene, side, region)]
    t_fcn, t_sliding = _score_all(fcn, pixels), _score_all(sliding, pixels)
    r = {"scene_px": side, "fcn_s": t_fcn, "sliding_s": t_sliding, "speedup": t_sliding / t_fcn}
    print(
        f"FCN vs sliding (stride 8), {side}²: {t_fcn:.2f} s vs {t_sliding:.1f} s → {r['speedup']:.1f}×"
    )
    return r


def end_to_end_vs_model(root: Path, side: int, region: int) -> dict:
    """Warm, same pixels: the region pipeline (read + score + peaks + NMS + ownership, as
    ``--workers 0`` runs it) vs the backend alone on pixels already in memory."""
    from jobs.pool import inline_pool
    from jobs.worker import DetectorSettings

    bundle, scene = _bundle(root), _scene(root, side)
    with inline_pool(str(bundle), DetectorSettings(backend="torch")) as pool:
        detector = pool.detector
        tasks = _tasks(detector, scene, side, region)
        bare = _score_all(detector, [detector._read(t)[0].copy() for t in tasks])
        detector(tasks[0])  # warm-up: first-use imports (NMS), the scene opened
        t0 = time.perf_counter()
        for t in tasks:
            while not pool.has_free():
                pool.get_next_unordered()
            pool.submit_region(t)
        while pool.has_next():
            pool.get_next_unordered()
        full = time.perf_counter() - t0
    mp = side * side / 1e6
    r = {"scene_px": side, "region": region, "model_mp_per_s": mp / bare,
         "end_to_end_mp_per_s": mp / full, "ratio": bare / full}  # fmt: skip
    print(
        f"end-to-end vs bare model ({side}², regions {region}, torch): {mp / full:.2f} vs "
        f"{mp / bare:.2f} MP/s → {r['ratio']:.2f} (target ≥ 0.85)"
    )
    return r


def cpu_layouts(root: Path, side: int) -> dict:
    """Whole jobs (actor start-up included) with the default backend, per actor layout."""
    bundle, scene = _bundle(root), _scene(root, side)
    cores = os.cpu_count() or 1
    out = {}
    for workers in sorted({1, cores}):
        s = _detect(bundle, scene, root / f"r-w{workers}", workers=workers)
        out[f"{workers}x{max(1, cores // workers)}threads_mp_per_s"] = side * side / 1e6 / s
        print(
            f"Ray CPU layout: {workers} actor(s) × {max(1, cores // workers)} thread(s): {side * side / 1e6 / s:.2f} MP/s"
        )
    return out


def memory_vs_scene(root: Path, small: int, large: int) -> dict:
    bundle = _bundle(root)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    peaks = {}
    for side in (small, large):
        scene = _scene(root, side, whales=30)
        cmd = [sys.executable, "-m", "jobs.detect", str(bundle), str(scene), "--out",
               str(root / f"r-mem-{side}"), "--no-progress", "--backend", "torch"]  # fmt: skip
        seconds, peak = run_with_peak_rss(cmd, env)
        peaks[side] = peak
        print(f"peak RSS, process tree, {side}² scene: {peak / 2**30:.2f} GiB ({seconds:.0f} s)")
    r = {"small_px": small, "large_px": large, "small_gib": peaks[small] / 2**30,
         "large_gib": peaks[large] / 2**30, "ratio": peaks[large] / peaks[small]}  # fmt: skip
    print(f"memory ratio {large}² / {small}²: {r['ratio']:.2f} (target ≤ 1.3, ≤ 4 GiB)")
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller scenes (a smoke run)")
    p.add_argument("--work", default=None, help="keep scenes here between runs")
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    root = Path(args.work or tempfile.mkdtemp(prefix="whalescan-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    big = 4096 if args.quick else 16384
    results = {
        "fcn_vs_sliding": fcn_vs_sliding(root, 1024 if args.quick else 2048),
        "end_to_end_vs_model": end_to_end_vs_model(root, 2048 if args.quick else 4096, 2048),
        "memory_vs_scene": memory_vs_scene(root, 2048 if args.quick else 4096, big),
    }
    from jobs.ray_session import ray_session

    with ray_session(None):
        results["cpu_layouts"] = cpu_layouts(root, 2048 if args.quick else 8192)
    save("detect", results)


if __name__ == "__main__":
    main()
