"""Scale-aware detection: held-out scenes re-flown at other GSDs, found by a bundle at its own GSD.

For each seed: a synthetic scene (whales painted at the synth default, 0.10 m/px) is written
resampled to each ``--gsd`` (synth.regsd), detected with no detect flags by BUNDLE (which must
record its ``gsd_m``), and scored by centre matching against the scaled truth. Prints centre
precision/recall/F1, native and scored megapixels and the time, and writes bench/results/scale.json
(bench/results/scale-overviews.json with ``--overviews``).

Usage: python -m bench.bench_scale BUNDLE [--seeds 9101,9102] [--size 2000] [--gsd 0.03,0.08,0.10]
       [--overviews] [--control]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import save


def run(bundle: str, seeds: list[int], size: int, gsds: list[float], whales: int, root: Path,
        overviews: bool = False, control: bool = False):  # fmt: skip
    from models.bundle import load_bundle, update_manifest
    from synth.regsd import write_at_gsd
    from synth.scene import SceneSpec, write_scene
    from synth.units import GSD_M

    b = load_bundle(bundle)
    if b.gsd_m is None:
        raise SystemExit(f"{bundle}: the bundle records no gsd_m; train it with --gsd")
    bundles = {"at the bundle's GSD": b}
    if control:  # the same weights, told nothing about their GSD: scenes scored at native pixels
        import shutil

        shutil.copytree(b.path, root / "no-gsd", dirs_exist_ok=True)
        bundles["native pixels (no gsd_m)"] = update_manifest(
            load_bundle(root / "no-gsd"), gsd_m=None
        )
    rows = []
    warm = write_scene(root / "warm-up.tif", SceneSpec(256, 256, whales=1, seed=1)).path
    _detect(bundle, warm, root / "warm")  # imports and caches out of the timings
    for seed in seeds:
        painted = root / f"painted-{seed}.tif"
        write_scene(painted, SceneSpec(size, size, whales=whales, seed=seed))
        for gsd in gsds:
            scene = write_at_gsd(painted, root / f"scene-{seed}-{gsd * 100:g}cm.tif", gsd, GSD_M)
            if overviews:  # as a COG carries them
                _add_overviews(scene)
            face_px = b.box_size_px * b.gsd_m / gsd  # a face in the scene's own pixels
            for how, used in bundles.items():
                row = _score(used, scene, root / "reports", face_px)
                rows.append({"seed": seed, "gsd_m": gsd, "scored": how, **row})
                print(
                    f"seed {seed} at {gsd * 100:4.1f} cm, {how}: ×{1 / row['px_scale']:.2f} → "
                    f"{row['native_mp']:.2f} native MP, {row['scored_mp']:.2f} scored MP, "
                    f"{row['seconds']:5.1f} s; F1 {row['f1']:.3f} (P {row['precision']:.3f}, "
                    f"R {row['recall']:.3f}, {row['duplicates']} duplicates)"
                )
    return rows


def _score(bundle, scene: Path, out: Path, face_px: float) -> dict:
    """Detect ``scene`` with ``bundle``, time it, and match it to its truth (radius half a face)."""
    import numpy as np
    import pyarrow.parquet as pq

    from reports.truth import match_centres
    from synth.truth import truth_path

    cols = ("px_xmin", "px_ymin", "px_xmax", "px_ymax")
    t0 = time.perf_counter()
    o = _detect(str(bundle.path), scene, out)
    seconds = time.perf_counter() - t0
    assert o.status == "ok", o.error
    det, truth = pq.read_table(o.detections_path), pq.read_table(truth_path(scene))
    boxes = np.stack([det[c].to_numpy() for c in cols], 1)
    m = match_centres(boxes, det["score"].to_numpy(),
                      np.stack([truth[c].to_numpy() for c in cols], 1), face_px / 2)  # fmt: skip
    return {
        "scene_gsd_m": o.gsd_m, "px_scale": o.px_scale, "native_mp": o.megapixels,
        "scored_mp": o.megapixels / o.px_scale**2, "seconds": round(seconds, 2),
        "faces": m.truths, "detections": m.detections, "precision": m.precision,
        "recall": m.recall, "f1": m.f1, "duplicates": m.duplicates,
    }  # fmt: skip


def _add_overviews(path: Path) -> None:
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2, 4, 8], Resampling.average)


def _detect(bundle: str, scene: Path, out: Path):
    from jobs.detect import DetectConfig, run_detect

    config = DetectConfig(bundle=bundle, out=str(out), scenes=(str(scene),), workers=0,
                          progress=False, backend="torch")  # fmt: skip
    (o,) = run_detect(config)
    return o


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("--seeds", default="9101,9102")
    p.add_argument("--size", type=int, default=2000, help="Painted scene side, px at 0.10 m.")
    p.add_argument("--whales", type=int, default=12)
    p.add_argument("--gsd", default="0.03,0.08,0.10", help="GSDs to re-fly at, m/px.")
    p.add_argument("--keep", type=Path, default=None, help="Keep scenes and reports here.")
    p.add_argument("--overviews", action="store_true", help="Give the scenes ×2, ×4, ×8 overviews.")
    p.add_argument("--control", action="store_true", help="Also score at native pixels.")
    a = p.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    gsds = [float(g) for g in a.gsd.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = a.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        rows = run(a.bundle, seeds, a.size, gsds, a.whales, root, a.overviews, a.control)
    name = "scale-overviews" if a.overviews else "scale"
    save(name, {"bundle": a.bundle, "size": a.size, "overviews": a.overviews, "rows": rows})


if __name__ == "__main__":
    main()
