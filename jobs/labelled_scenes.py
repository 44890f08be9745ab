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

FACE_PX = 32.0  # the face size the detector was designed around (CentreNet's size_ref)
ENLARGED = 1.5  # faces over this × face_px are brought down to face_px


@dataclass(frozen=True)
class LabelledScenes:
    """Scenes loaded whole: uint8 (3, H, W) on the 0..255 scale on the working grid, the faces'
    boxes in its pixels, each scene's ``fills`` (float32 (3,): the colour ``detect`` gives pixels
    past its edge), the name the faces go by (``label``), and the grid's ground scale ``gsd_m``
    (None: native pixels of scenes without one)."""

    uris: tuple[str, ...]
    images: tuple[np.ndarray, ...]
    boxes: tuple[np.ndarray, ...]
    fills: tuple[np.ndarray, ...]
    gsd_m: float | None
    fingerprint: str
    label: str


def load_labelled_scenes(
    labels_path: str | Path, face_px: float | None = FACE_PX, **reading: Any
) -> LabelledScenes:
    """Read the labels and every scene they name, whole, on the working grid (module doc).

    ``face_px``: None keeps the scenes' own GSD whatever the faces' size. ``reading``:
    ``scene_column``, ``point_box_m`` and ``label`` (:func:`labels.read.read_labels`).
    """
    from labels.read import face_class, read_labels

    labelled = read_labels(labels_path, **reading)
    label = face_class(labelled)
    gsds = [_gsd(item.scene) for item in labelled]  # headers only: the grid needs them all
    target = working_gsd(gsds, [item.boxes for item in labelled], face_px)
    h = hashlib.sha256(Path(labels_path).read_bytes())
    h.update(f"classes:{reading.get('label')}:gsd:{target}".encode())
    images, boxes, fills = [], [], []
    for item in labelled:
        image, grid, fill = _read_whole(item.scene, target)
        images.append(image)
        fills.append(fill)
        boxes.append(item.boxes / np.array([grid.fx, grid.fy] * 2))  # native px → grid px
        mtime = os.path.getmtime(item.scene) if os.path.exists(item.scene) else ""
        h.update(f"{item.scene}:{image.shape}:{mtime}".encode())
    uris = tuple(i.scene for i in labelled)
    return LabelledScenes(
        uris, tuple(images), tuple(boxes), tuple(fills), target, h.hexdigest(), label
    )


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
    target = coarsest * median_px / face_px
    log.info("median labelled face %.0f px at %.3g m/px: training and detection work at %.3g "
             "m/px, where it is %.0f px", median_px, coarsest, target, face_px)  # fmt: skip
    return target


def _gsd(uri: str):
    """The scene's :class:`tiling.gsd.Gsd`, None without georeferencing."""
    from tiling.sampling import scene_sampling
    from tiling.scene import open_scene, scene_env

    with scene_env(uri), open_scene(uri) as ds:
        return scene_sampling(ds, uri, None).gsd


def _read_whole(uri: str, target_m: float | None):
    """(uint8 (3, H, W) image of ``uri`` on its grid at ``target_m``, that ``ScoredGrid``, the
    float32 (3,) colour of pixels past its edge)."""
    from rasterio.windows import Window

    from tiling.bands import resolve_scaling, select_bands
    from tiling.read import fill_colour, read_window
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
    return np.rint(pixels).astype(np.uint8), grid, fill_colour(scaling, len(pixels))
