"""A labelled set: synthetic GeoTIFF scenes plus ``annotations.csv`` in DeepForest's layout.

Layout written under ``out_dir``::

    scene_000.tif  scene_000.truth.parquet  scene_001.tif ...  annotations.csv

``annotations.csv`` has DeepForest's columns ``image_path,xmin,ymin,xmax,ymax,label``: one row
per face, the face box of the scene's truth (scene pixels, exclusive max), label
:data:`LABEL`, ``image_path`` relative to the CSV. A scene without faces gets DeepForest's
empty-image row (all coordinates 0). Scene ``i`` is drawn with seed ``derive_seed(seed, i)``.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from synth.look import DEFAULT_LOOK, HARD_LOOK
from synth.noise import derive_seed
from synth.scene import SceneSpec, write_scene

__all__ = [
    "ANNOTATIONS", "LABEL", "LabelledSet", "face_rows", "whales_for", "write_annotations",
    "write_labelled_scenes",
]  # fmt: skip

log = logging.getLogger(__name__)

ANNOTATIONS = "annotations.csv"
LABEL = "whale_face"
WHALES_PER_MP = 1.2


@dataclass(frozen=True)
class LabelledSet:
    """What :func:`write_labelled_scenes` wrote."""

    annotations: Path
    scenes: tuple[Path, ...]
    n_faces: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.annotations}: {len(self.scenes)} scenes, {self.n_faces} labelled faces, "
            f"{self.seconds:.1f} s"
        )


def whales_for(size: int) -> int:
    """Adult whales in a ``size`` x ``size`` scene: :data:`WHALES_PER_MP` per megapixel, >= 1."""
    return max(1, round(WHALES_PER_MP * size * size / 1e6))


def write_labelled_scenes(
    out_dir: str | Path,
    n: int,
    size: int = 2048,
    seed: int = 0,
    hard: bool = False,
    whales: int | None = None,
) -> LabelledSet:
    """Write ``n`` square scenes of ``size`` px and their DeepForest ``annotations.csv``.

    ``whales``: adults per scene (default :func:`whales_for`); ``hard`` draws with
    :data:`~synth.look.HARD_LOOK` (calves add faces beyond ``whales``).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}: expected an integer >= 1 scenes")
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, scenes = [], []
    for i in range(n):
        path = out / f"scene_{i:03d}.tif"
        spec = SceneSpec(
            size,
            size,
            whales=whales_for(size) if whales is None else whales,
            seed=derive_seed(seed, i),
            look=HARD_LOOK if hard else DEFAULT_LOOK,
        )
        summary = write_scene(path, spec)
        scenes.append(path)
        rows += face_rows(path, summary.truth_path)
        log.info("%s", summary)
    annotations = write_annotations(out / ANNOTATIONS, rows)
    n_faces = sum(1 for r in rows if r[3] != 0)
    return LabelledSet(annotations, tuple(scenes), n_faces, time.perf_counter() - start)


def face_rows(scene: Path, truth: Path) -> list[list]:
    """DeepForest rows of ``scene``'s faces from its truth sidecar ``truth`` (``image_path`` is
    the scene's file name); DeepForest's empty-image row for a scene without faces."""
    t = pq.read_table(truth).to_pydict()
    boxes = zip(*(t[c] for c in ("px_xmin", "px_ymin", "px_xmax", "px_ymax")), strict=True)
    faces = [[scene.name, *(round(v, 3) for v in box), LABEL] for box in boxes]
    return faces or [[scene.name, 0, 0, 0, 0, LABEL]]


def write_annotations(path: Path, rows: list[list]) -> Path:
    """Write DeepForest ``rows`` (with the header) to ``path``; returns it."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_path", "xmin", "ymin", "xmax", "ymax", "label"])
        writer.writerows(rows)
    return path
