"""Labelled scenes loaded whole for the box detector's training, on the pixel grid it works at.

The scenes are read as ``whalescan detect`` reads them (bands, scaling, nodata fill) and on the
grid detection will use (:func:`tiling.sampling.scene_sampling`): the bundle records one ground
sample distance, ``gsd_m``, and detection brings every scene to it. That GSD is the labelled
scenes' own (the coarsest of them, so none is enlarged), unless their median face is over
``1.5 × face_px`` px there: then it is the coarser GSD at which the median face is ``face_px``.

Why: the network's receptive field (135 px) is about four face lengths at the 20–40 px faces it
was designed around — enough context to tell a face from flukes or a boat's bow. Faces of 80 px
(a drone flown low, 4 cm/px) would leave it less than two, and cost six times the pixels.
Scenes without georeferencing are read at native pixels (no GSD to carry to detection).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CLASS = "whale_face"
FACE_PX = 32.0  # the face size the detector was designed around (CentreNet's size_ref)
ENLARGED = 1.5  # faces over this × face_px are brought down to face_px


@dataclass(frozen=True)
class LabelledScenes:
    """Scenes loaded whole: uint8 (3, H, W) on the 0..255 scale on the working grid, the boxes of
    the faces' class ``label`` in its pixels, and its ground scale ``gsd_m`` (None: native pixels
    of scenes without one). ``scale``: native px per working px of each scene."""

    uris: tuple[str, ...]
    images: tuple[np.ndarray, ...]
    boxes: tuple[np.ndarray, ...]
    gsd_m: float | None
    fingerprint: str
    label: str = CLASS
    scale: tuple[float, ...] = ()


def load_labelled_scenes(
    labels_path: str | Path, face_px: float | None = FACE_PX, **reading: Any
) -> LabelledScenes:
    """Read the labels and every scene they name, whole, on the working grid (module doc).

    ``face_px``: None keeps the scenes' own GSD whatever the faces' size. ``reading``:
    ``scene_column``, ``point_box_m`` (:func:`labels.read.read_labels`) and ``label``
    (:func:`labels.read.select_class`).
    """
    labelled, label = read_scene_labels(labels_path, **reading)
    gsds = [_gsd(item.scene) for item in labelled]
    target = working_gsd(gsds, [item.boxes for item in labelled], face_px)
    h = hashlib.sha256(Path(labels_path).read_bytes())
    h.update(f"class:{label}:gsd:{target}".encode())
    images, boxes, scales = [], [], []
    for item in labelled:
        image, grid = _read_whole(item.scene, target)
        images.append(image)
        boxes.append(
            np.asarray(item.boxes, np.float64).reshape(-1, 4) / [grid.fx, grid.fy, grid.fx, grid.fy]
        )
        scales.append(grid.scale)
        mtime = os.path.getmtime(item.scene) if os.path.exists(item.scene) else ""
        h.update(f"{item.scene}:{image.shape}:{mtime}".encode())
    return LabelledScenes(tuple(i.scene for i in labelled), tuple(images), tuple(boxes), target,
                          h.hexdigest(), label, tuple(scales))  # fmt: skip


def working_gsd(gsds: list, boxes: list[np.ndarray], face_px: float | None) -> float | None:
    """The GSD (m/px) training reads the scenes at: None when a scene has none; else the
    coarsest scene's, or coarser where the median face would be over ``ENLARGED × face_px``."""
    if not gsds or any(g is None for g in gsds):
        return None
    coarsest = max(g.m for g in gsds)
    sides_m = np.concatenate(
        [
            np.concatenate([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]]) * g.m
            for b, g in zip(boxes, gsds, strict=True)
        ]
    )
    if face_px is None or not len(sides_m):
        return coarsest
    median_px = float(np.median(sides_m)) / coarsest
    if median_px <= ENLARGED * face_px:
        return coarsest
    log.info("the median labelled face is %.0f px at %.3g m/px: training and detection work at "
                "%.3g m/px, where it is %.0f px", median_px, coarsest,
                coarsest * median_px / face_px, face_px)  # fmt: skip
    return coarsest * median_px / face_px


def read_scene_labels(labels_path: str | Path, label: str | None = None, **how: Any):
    """(the labelled scenes with the faces' boxes only, the faces' class name): a DeepForest CSV
    or a vector file read as :func:`labels.read.read_labels` does (``how``: its options)."""
    from labels.read import read_labels, select_class

    return select_class(read_labels(labels_path, **how), label, labels_path)


def _gsd(uri: str):
    """The scene's :class:`tiling.gsd.Gsd`, None without georeferencing."""
    from tiling.sampling import scene_sampling
    from tiling.scene import open_scene, scene_env

    with scene_env(uri), open_scene(uri) as ds:
        return scene_sampling(ds, uri, None).gsd


def _read_whole(uri: str, target_m: float | None):
    """(uint8 (3, H, W) image of ``uri`` on its grid at ``target_m``, that ``ScoredGrid``)."""
    from rasterio.windows import Window

    from tiling.bands import resolve_scaling, select_bands
    from tiling.read import read_window
    from tiling.resample import ScoredView
    from tiling.sampling import scene_sampling
    from tiling.scene import open_scene, scene_env

    with scene_env(uri), open_scene(uri) as ds:
        grid = scene_sampling(ds, uri, target_m).grid
        bands = select_bands(ds, uri, None)
        scaling = resolve_scaling(ds, bands, "auto")
        view = ScoredView(ds, grid)
        try:
            window = Window(0, 0, grid.width, grid.height)
            pixels, _ = read_window(view.reader, uri, window, bands, scaling)
        finally:
            view.close()
    return np.rint(pixels).astype(np.uint8), grid
