"""Chip datasets: ImageFolder PNGs of "face" and "not_face" for training the classifier.

Layout written under ``out_dir``::

    train/face/*.png  train/not_face/*.png  val/face/*.png  val/not_face/*.png  dataset.json

A face chip shows a whole whale whose head centre lies at the chip centre (±3 px) — the body
runs out of the chip — at any heading, sometimes with foam about. A not-face chip shows one of
the hard negatives (a whale whose head is under water, a diving whale's flukes, foam and
whitecaps, a boat and its wake, floating debris, sun glint), open water, or an OFF-CENTRE face
(head centre at least 0.35·size from the chip centre, perhaps cut by the chip edge) so that a
detector's heatmap peaks sharply on heads. Faces have the size they have in scenes
(``FACE_SIZE_PX`` ±10 %), nothing is rescaled. Each chip is a pure function of
(seed, split, index): the same seed writes the same PNG bytes.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from synth.draw import render_window, to_uint8
from synth.noise import derive_seed
from synth.objects import SceneObject
from synth.units import FACE_SIZE_PX, GSD_M, SIZE_JITTER

__all__ = ["CLASSES", "NEGATIVE_MIX", "SPLITS", "ChipsSummary", "render_chip", "write_chips"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
CLASSES = ("face", "not_face")
MIN_SIZE, MAX_SIZE = 32, 256
CENTRE_JITTER_PX = 3.0
OFF_CENTRE_MIN = 0.35
"""An off-centre face (a negative) has its head centre at least this fraction of the chip size
from the chip centre."""

NEGATIVE_MIX = {
    "body": 0.18,
    "flukes": 0.12,
    "foam": 0.14,
    "boat": 0.10,
    "debris": 0.10,
    "glint": 0.08,
    "off_centre_face": 0.18,
    "water": 0.10,
}
"""What a not-face chip shows, with probabilities."""


@dataclass(frozen=True)
class ChipsSummary:
    """What :func:`write_chips` wrote; counts per split and class."""

    out_dir: Path
    chip_size: int
    seed: int
    n_train: int
    n_val: int
    n_train_face: int
    n_train_not_face: int
    n_val_face: int
    n_val_not_face: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.out_dir}: {self.n_train} train ({self.n_train_face} face / "
            f"{self.n_train_not_face} not_face), {self.n_val} val ({self.n_val_face} face / "
            f"{self.n_val_not_face} not_face) chips of {self.chip_size} px, seed {self.seed}, "
            f"{self.seconds:.1f} s"
        )


def write_chips(
    out_dir: str | Path,
    n: int = 600,
    size: int = 64,
    seed: int = 0,
    val_fraction: float = 0.25,
) -> ChipsSummary:
    """Write an ImageFolder chip dataset; returns counts.

    ``n`` is the number of TRAIN chips (about half faces); val gets
    ``round(n * val_fraction / (1 - val_fraction))`` more. ``size`` is the chip side in pixels
    (32..256). Existing ``*.png`` in the four class folders are replaced, so a rerun leaves
    exactly this dataset.
    """
    _validate(n, size, val_fraction)
    start = time.perf_counter()
    out = Path(out_dir)
    n_val = round(n * val_fraction / (1.0 - val_fraction))
    counts: dict[tuple[str, str], int] = {}
    for split, count in (("train", n), ("val", n_val)):
        dirs = {}
        for cls in CLASSES:
            d = out / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for stale in d.glob("*.png"):
                stale.unlink()
            dirs[cls] = d
            counts[split, cls] = 0
        for index in range(count):
            face = index % 2 == 0
            rgb = render_chip(size, seed, split, index, face)
            cls = "face" if face else "not_face"
            Image.fromarray(rgb).save(dirs[cls] / f"{index:06d}.png", compress_level=3)
            counts[split, cls] += 1
    meta = {
        "chip_size": size,
        "face_size_px": FACE_SIZE_PX,
        "gsd_m": GSD_M,
        "seed": seed,
        "n_train": n,
        "n_val": n_val,
        "generator": "whalescan.synth",
        "source": f"whalescan.synth chips seed={seed} n={n} size={size} val_fraction={val_fraction}",
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    summary = ChipsSummary(
        out_dir=out,
        chip_size=size,
        seed=seed,
        n_train=n,
        n_val=n_val,
        n_train_face=counts["train", "face"],
        n_train_not_face=counts["train", "not_face"],
        n_val_face=counts["val", "face"],
        n_val_not_face=counts["val", "not_face"],
        seconds=time.perf_counter() - start,
    )
    log.info("%s", summary)
    return summary


def _validate(n: int, size: int, val_fraction: float) -> None:
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise ValueError(f"size={size!r}: chip size must be an integer in {MIN_SIZE}..{MAX_SIZE}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size={size}: chip size must be in {MIN_SIZE}..{MAX_SIZE} pixels")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 2:
        raise ValueError(f"n={n!r}: number of train chips must be an integer >= 2")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r}: expected 0 <= val_fraction < 1")


def render_chip(size: int, seed: int, split: str, index: int, face: bool) -> np.ndarray:
    """One chip as uint8 RGB (size, size, 3); a pure function of its arguments."""
    rng = np.random.default_rng(derive_seed(seed, SPLITS.index(split), index, face))
    col_off, row_off = (int(v) for v in rng.integers(0, 1 << 20, size=2))
    water_seed = int(rng.integers(1 << 31))
    centre = np.array([col_off + size / 2, row_off + size / 2])
    objects = _face_objects(rng, centre, size) if face else _negative_objects(rng, centre, size)
    canvas = render_window(col_off, row_off, size, size, objects, water_seed, channels=3)
    # illumination and sensor differences between flights: gain and offset per chip
    canvas *= np.float32(rng.uniform(0.85, 1.2))
    canvas += np.float32(rng.uniform(-0.015, 0.015))
    return np.ascontiguousarray(to_uint8(canvas).transpose(1, 2, 0))


def _obj(rng, kind: str, xy, heading: float | None = None) -> SceneObject:
    return SceneObject(
        kind=kind,
        cx=float(xy[0]),
        cy=float(xy[1]),
        heading_deg=float(rng.uniform(0, 360) if heading is None else heading),
        scale=float(rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER)),
        seed=int(rng.integers(1 << 31)),
    )


def _face_objects(rng, centre: np.ndarray, size: int) -> list[SceneObject]:
    objects = []
    if rng.random() < 0.2:  # something else in a corner of the chip
        angle = rng.uniform(0, 2 * np.pi)
        at = centre + rng.uniform(0.35, 0.6) * size * np.array([np.cos(angle), np.sin(angle)])
        objects.append(_obj(rng, str(rng.choice(("foam", "debris", "glint"))), at))
    head = centre + rng.uniform(-CENTRE_JITTER_PX, CENTRE_JITTER_PX, size=2)
    objects.append(_obj(rng, "whale", head))
    return objects


def _negative_objects(rng, centre: np.ndarray, size: int) -> list[SceneObject]:
    kinds = list(NEGATIVE_MIX)
    what = kinds[rng.choice(len(kinds), p=list(NEGATIVE_MIX.values()))]
    near = centre + rng.uniform(-size / 4, size / 4, size=2)
    objects = []
    if what == "body":
        # a point along the back (behind the cut-off head) near the chip centre
        obj = _obj(rng, "body", (0.0, 0.0))
        along = rng.uniform(-3.2, -0.8) * FACE_SIZE_PX * obj.scale
        h = np.deg2rad(obj.heading_deg)
        head = near - along * np.array([np.sin(h), -np.cos(h)])
        objects.append(_replace_xy(obj, head))
    elif what == "off_centre_face":
        angle = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(OFF_CENTRE_MIN, 0.75) * size
        objects.append(_obj(rng, "whale", centre + dist * np.array([np.cos(angle), np.sin(angle)])))
    elif what == "boat":
        objects.append(_obj(rng, "boat", centre + rng.uniform(-size / 2, size / 2, size=2)))
    elif what in ("foam", "debris"):
        for _ in range(rng.integers(1, 4)):
            objects.append(_obj(rng, what, centre + rng.uniform(-size / 3, size / 3, size=2)))
    elif what in ("flukes", "glint"):
        objects.append(_obj(rng, what, near))
    if rng.random() < 0.3:  # combinations: foam, debris or glint on top of anything
        extra = str(rng.choice(("foam", "debris", "glint")))
        objects.append(_obj(rng, extra, centre + rng.uniform(-size / 2, size / 2, size=2)))
    return objects


def _replace_xy(obj: SceneObject, xy) -> SceneObject:
    return SceneObject(obj.kind, float(xy[0]), float(xy[1]), obj.heading_deg, obj.scale, obj.seed)
