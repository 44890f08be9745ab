"""Would a second look at each approach-3 candidate lift its accuracy? The check that led to the
second look ``train LABELS`` now builds (docs/approach3.md, "Second look"); it keeps measuring
the plain recipe (approach 1's classifier on the labels' chips alone) on any bundle.

    python -m bench.check_verifier --work W [--seeds 41,53] [--test-seeds 9091,7777] [--gamma 1.6]

``W`` is :mod:`bench.bench_approach3`'s ``--work`` (its bundles, training sets and test scenes).
Per training seed: the approach-1 classifier trained on chips cut from the same labelled scenes
(``whalescan train LABELS --arch whalenet``: faces, and near / salient / water / edge
negatives), then every candidate the seed's detector finds at threshold 0.05 re-scored as
sqrt(detector × classifier), the classifier looking at a chip centred on the candidate (mean of
its 8 mirror / quarter-turn views). The fused score's threshold is the best-F1 one on the
candidates of the training scenes (the middle of any tie, as ``train`` tunes the detector's) —
optimistic, as both models trained on them. Per test scene:
centre-F1 at the tuned thresholds, F1 at the scene's best threshold and AP over all candidates,
for the detector alone, the classifier alone and the two fused. Writes
``bench/results/verifier.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np

from bench.bench_approach3 import cli
from bench.common import save

RADIUS = 12.0  # centre-match radius, px, as `whalescan evaluate`
CANDIDATES = 0.05  # the detector threshold that keeps every face of the test scenes


def candidates(bundle: Path, scene: Path, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) px boxes and (N,) scores of ``whalescan detect --threshold 0.05``, the detector's
    own (any second look the bundle has turned off)."""
    import pyarrow.dataset as ds

    cli("detect", str(bundle), str(scene), "--out", str(out), "--workers", "0", "--no-progress",
        "--rerun", "--threshold", str(CANDIDATES), "--no-second-look")  # fmt: skip
    t = ds.dataset(out / "detections").to_table()
    boxes = np.stack([t[c].to_numpy() for c in ("px_xmin", "px_ymin", "px_xmax", "px_ymax")], 1)
    return boxes.reshape(-1, 4), t["score"].to_numpy()


def truth_boxes(labels: Path, scene: Path) -> np.ndarray:
    """The labelled boxes of ``scene`` (``labels.read``), (M, 4) px."""
    from labels.read import read_labels

    (found,) = [s for s in read_labels(labels) if Path(s.scene).name == scene.name]
    return found.boxes


def chips(scene: Path, boxes: np.ndarray, size: int) -> np.ndarray:
    """(N, 3, size, size) float32 chips centred on the boxes, read as ``detect`` reads."""
    import rasterio
    from rasterio.windows import Window

    from tiling.bands import resolve_scaling, select_bands
    from tiling.read import read_window

    out = np.empty((len(boxes), 3, size, size), np.float32)
    with rasterio.open(scene) as ds:
        bands = select_bands(ds, str(scene), None)
        scaling = resolve_scaling(ds, bands, "auto")
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            col, row = round((x0 + x1 - size) / 2), round((y0 + y1 - size) / 2)
            out[i], _ = read_window(ds, str(scene), Window(col, row, size, size), bands, scaling)
    return out


def scene_width(scene: Path) -> int:
    import rasterio

    with rasterio.open(scene) as ds:
        return ds.width


def f1_curve(boxes, scores, truth) -> tuple[np.ndarray, np.ndarray]:
    """(ranked scores, centre-F1 when keeping the detections down to each): greedy matching
    takes detections in score order, so keeping a prefix matches as a higher threshold would."""
    from reports.truth import centre_radius_pairs, greedy_match

    ranked, p, r = greedy_match(scores, *centre_radius_pairs(boxes, truth, RADIUS)).pr_curve()
    return ranked, np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=p + r > 0)


def figures(boxes, scores, truth, threshold: float) -> dict:
    from reports.truth import match_centres

    ranked, f1 = f1_curve(boxes, scores, truth)
    kept = int((ranked >= threshold).sum())
    return {
        "f1": round(float(f1[kept - 1]) if kept else 0.0, 4),
        "best_f1": round(float(f1.max()), 4),
        "ap_all": round(match_centres(boxes, scores, truth, RADIUS).average_precision, 4),
    }


def run_seed(work: Path, seed: int, tests: dict[str, tuple[Path, Path]]) -> dict:
    from models.backends import load_backend
    from models.bundle import load_bundle
    from models.detector_loop import pool_scenes
    from models.second_look import view_mean

    labels, bundle = work / f"train{seed}" / "annotations.csv", work / f"bundle{seed}"
    verifier = work / f"verifier{seed}"
    if not (verifier / "bundle.json").exists():
        cli("train", str(labels), "--arch", "whalenet", "--out", str(verifier), "--workers", "2",
            "--no-progress")  # fmt: skip
    second = load_bundle(verifier)
    classifier, size = load_backend("torch", second), second.input_size
    det_threshold = json.loads((bundle / "bundle.json").read_text())["metrics"]["threshold"]

    def scored(scene: Path, truth_csv: Path, tag: str):
        boxes, det = candidates(bundle, scene, work / f"candidates{seed}-{tag}")
        ver = view_mean(classifier, chips(scene, boxes, size))
        return boxes, det, ver, truth_boxes(truth_csv, scene)

    # One ranking over the four training scenes side by side tunes one threshold; of the
    # thresholds that tie for the best F1, the middle one, as `train` tunes the detector's.
    scenes = sorted(labels.parent.glob("scene_*.tif"))
    pooled = [scored(s, labels, s.stem) for s in scenes]
    ranked, f1 = f1_curve(*pool_scenes(
        [(b, np.sqrt(d * v)) for b, d, v, _ in pooled], [t for *_, t in pooled],
        [scene_width(s) for s in scenes],
    ))  # fmt: skip
    ties = ranked[f1 >= f1.max() - 1e-9]
    fused_threshold = float(ties[len(ties) // 2])
    run = {"seed": seed, "detector_threshold": det_threshold,
           "fused_threshold": round(fused_threshold, 4), "tests": {}}  # fmt: skip
    for name, (scene, truth_csv) in tests.items():
        boxes, det, ver, truth = scored(scene, truth_csv, f"{scene.parent.name}-{scene.stem}")
        run["tests"][name] = {
            "faces": len(truth), "candidates": len(boxes),
            "detector": figures(boxes, det, truth, det_threshold),
            "classifier": figures(boxes, ver, truth, 0.5),
            "fused": figures(boxes, np.sqrt(det * ver), truth, fused_threshold),
        }  # fmt: skip
        print(seed, name, json.dumps(run["tests"][name]), flush=True)
    return run


@click.command()
@click.option("--work", type=click.Path(path_type=Path, exists=True), required=True,
              help="bench_approach3's --work: bundle<seed>, train<seed>, test<seed>.")  # fmt: skip
@click.option("--seeds", default="41,53", show_default=True, help="Training seeds.")
@click.option("--test-seeds", default="9091,7777", show_default=True)
@click.option(
    "--gamma", type=float, default=1.6, show_default=True, help="Re-toned tests (0: none)."
)
def main(work: Path, seeds: str, test_seeds: str, gamma: float) -> None:
    tests = {}
    for t in (int(s) for s in test_seeds.split(",")):
        folder = work / f"test{t}"
        tests[f"hard seed {t}"] = (folder / "scene_000.tif", folder / "annotations.csv")
        if gamma:
            tests[f"hard seed {t}, gamma {gamma}"] = (
                folder / f"scene_000_gamma{gamma}.tif", folder / f"annotations_gamma{gamma}.csv")  # fmt: skip
    runs = [run_seed(work, int(s), tests) for s in seeds.split(",")]
    save("verifier", {"command": " ".join(sys.argv), "candidate_threshold": CANDIDATES,
                      "runs": runs})  # fmt: skip


if __name__ == "__main__":
    main()
