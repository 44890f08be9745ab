"""Score thresholds tuned as detection will score: a detector's candidates on in-memory scenes,
and the threshold with the best centre-F1 over them pooled (the detector's, and its second
look's fused score)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Tuning(NamedTuple):
    """The scenes (or parts) thresholds are tuned on: uint8 (3, H, W) images, (M, 4) px truth
    boxes, past-edge colours."""

    images: tuple[np.ndarray, ...]
    boxes: tuple[np.ndarray, ...]
    fills: tuple[np.ndarray, ...]


def scene_candidates(model, loop, scenes: Tuning, flips: int = 1) -> list[tuple]:
    """Per scene, the (boxes, scores) the detector finds at 0.05, scored as detection will
    (averaged over ``flips`` views)."""
    from models.detector import BoxOutputs, FlipAverage
    from models.scene_predict import predict_scene
    from models.scorer import Normalize

    norm, outputs = Normalize(loop.mean, loop.std), BoxOutputs(model.output_stride, model.size_ref)
    model = FlipAverage(model, flips) if flips > 1 else model
    return [
        predict_scene(model, norm, outputs, img, receptive_field=model.receptive_field,
                      threshold=0.05, max_box_px=loop.max_box_px, fill=fill)
        for img, fill in zip(scenes.images, scenes.fills, strict=True)
    ]  # fmt: skip


def best_threshold(found, scenes: Tuning, radius: float) -> tuple[float, float | None]:
    """The score threshold with the best centre-F1 over ``found`` ((boxes, scores) per scene)
    pooled (0.3 without any scene). Of thresholds that tie for the best, the middle one: the
    F1 curve is flat over a range, and its middle transfers better than its low end."""
    from models.detector_loop import pool_scenes, scene_metrics

    if not found:
        return 0.3, None
    pooled = pool_scenes(found, scenes.boxes, [img.shape[2] for img in scenes.images])
    grid = np.round(np.arange(0.1, 0.75, 0.05), 2)
    f1 = np.array([scene_metrics(*pooled, t, radius)["val_f1"] for t in grid])
    ties = grid[f1 >= f1.max() - 1e-9]
    return float(ties[len(ties) // 2]), float(f1.max())
