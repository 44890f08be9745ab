"""False alarms on the scene border: held-out synthetic scenes through a trained bundle, per side.

    python -m bench.bench_border BUNDLE [--seeds 5150,6060,7070,8080] [--width 1203 --height 997]
        [--gamma 1.8]

A false alarm (a detection with no truth face centre within half a box) counts as "on the
border" of a side when its centre lies within half a window of that side: the cells whose window
reaches past the scene. ``--gamma`` darkens the mid-tones: scenes that are not the generator's
default look.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import numpy as np
import pyarrow.parquet as pq

SIDES = ("top", "left", "bottom", "right")


def _boxes(table) -> np.ndarray:
    return np.stack([table[c].to_numpy() for c in ("px_xmin", "px_ymin", "px_xmax", "px_ymax")], 1)


def far_from_truth(det: np.ndarray, truth: np.ndarray, radius: float) -> np.ndarray:
    """Centres (N, 2) of detections with no truth face centre within ``radius`` px."""
    dc = (det[:, :2] + det[:, 2:]) / 2
    tc = (truth[:, :2] + truth[:, 2:]) / 2
    d = np.hypot(dc[:, None, 0] - tc[None, :, 0], dc[:, None, 1] - tc[None, :, 1])
    return dc[~(d <= radius).any(axis=1)] if len(tc) else dc


def border_counts(centres: np.ndarray, width: int, height: int, margin: float) -> dict:
    x, y = centres[:, 0], centres[:, 1]
    near = {
        "top": y < margin,
        "left": x < margin,
        "bottom": y >= height - margin,
        "right": x >= width - margin,
    }
    return {side: int(near[side].sum()) for side in SIDES}


def relook(path: Path, gamma: float) -> None:
    """Rewrite a uint8 scene with darker (gamma > 1) or lighter mid-tones: not our default look."""
    import rasterio

    with rasterio.open(path) as ds:
        data, profile = ds.read(), ds.profile
    out = np.clip((data / 255.0) ** gamma * 255.0, 1, 255).astype(np.uint8)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(out)


def run(bundle: str, seeds, width: int, height: int, whales: int, gamma: float) -> list[dict]:
    from jobs.detect import DetectConfig, run_detect
    from models.bundle import load_bundle
    from reports.truth import match_centres
    from synth.scene import SceneSpec, write_scene

    b = load_bundle(bundle)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            scene = Path(tmp) / f"s{seed}.tif"
            write_scene(scene, SceneSpec(width, height, whales=whales, seed=seed))
            if gamma != 1.0:
                relook(scene, gamma)
            (o,) = run_detect(
                DetectConfig(
                    bundle=bundle, out=f"{tmp}/r{seed}", scenes=(str(scene),), workers=0,
                    backend="torch", progress=False,
                )
            )  # fmt: skip
            det = pq.read_table(o.detections_path)
            truth = _boxes(pq.read_table(scene.with_suffix(".truth.parquet")))
            boxes, scores = _boxes(det), det["score"].to_numpy()
            fa = far_from_truth(boxes, truth, b.box_size_px / 2)
            m = match_centres(boxes, scores, truth, radius=b.box_size_px / 2)
            row = {
                "seed": seed, "gamma": gamma, "size": f"{width}x{height}", "faces": m.truths,
                "detections": m.detections, "found": m.true_positives,
                "false_alarms": len(fa),
                "border": border_counts(fa, width, height, b.input_size / 2),
                "precision": round(m.precision, 3), "recall": round(m.recall, 3),
            }  # fmt: skip
            click.echo(row)
            rows.append(row)
    return rows


@click.command()
@click.argument("bundle")
@click.option("--seeds", default="5150,6060,7070,8080", show_default=True)
@click.option("--width", default=1203, show_default=True)
@click.option("--height", default=997, show_default=True)
@click.option("--whales", default=6, show_default=True)
@click.option("--gamma", default=1.8, show_default=True, help="Scene look: 1 = the default.")
@click.option("--save-as", default=None, help="Write bench/results/NAME.json.")
def main(bundle, seeds, width, height, whales, gamma, save_as):
    rows = run(bundle, [int(s) for s in seeds.split(",")], width, height, whales, gamma)
    if save_as:
        from bench.common import save
        from models.bundle import load_bundle

        sha = load_bundle(bundle).weights_sha256
        save(save_as, {"bundle_sha256": sha, "gamma": gamma, "scenes": rows})


if __name__ == "__main__":
    main()
