"""Spatial hold-out: the bottom strip of each labelled scene is kept back for validation.

Holding out whole scenes costs a quarter of four scenes' labels and one scene's look (light,
sea state, haze) from training; a strip of every scene keeps all looks in training and still
validates on pixels the network never saw. The strip starts at a row that no labelled box
crosses, so every face is wholly in training or wholly in validation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SceneSplit:
    """One scene cut at row ``cut``: rows ``[0, cut)`` train, rows ``[cut, H)`` validate.

    Images are uint8 (3, rows, W) views of the scene; boxes (N, 4) float [xmin, ymin, xmax,
    ymax] px of their own part (the validation boxes shifted up by ``cut``).
    """

    cut: int
    train_image: np.ndarray
    train_boxes: np.ndarray
    val_image: np.ndarray
    val_boxes: np.ndarray


def strip_start(boxes: np.ndarray, height: int, fraction: float) -> int:
    """The first held-out row: ``fraction`` of ``height`` from the bottom, moved up to the
    nearest row that no box (N, 4) [xmin, ymin, xmax, ymax] px crosses."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction: got {fraction}, expected 0 < fraction < 1")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    for cut in range(round(height * (1 - fraction)), 0, -1):
        if not np.any((boxes[:, 1] < cut) & (boxes[:, 3] > cut)):
            return cut
    raise ValueError(f"no row of a {height}-row scene is free of boxes to cut a strip at")


def split_scene(image: np.ndarray, boxes: np.ndarray, fraction: float) -> SceneSplit:
    """uint8 (3, H, W) scene and its (N, 4) px boxes → :class:`SceneSplit` (strip ≈ ``fraction``)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    cut = strip_start(boxes, image.shape[1], fraction)
    below = boxes[:, 1] >= cut
    return SceneSplit(
        cut, image[:, :cut], boxes[~below], image[:, cut:], boxes[below] - [0, cut, 0, cut]
    )
