"""A whalescan bundle as a SAHI ``DetectionModel``: what a SAHI user would write to plug it in.

SAHI 0.12.8's contract (``sahi/models/base.py``; ``sahi/models/torchvision.py`` is the
template): ``load_model`` builds ``self.model``; ``perform_inference(image)`` gets one slice as
an (H, W, 3) RGB uint8 array and stores raw predictions; then
``_create_object_prediction_list_from_original_predictions(shift_amount_list,
full_shape_list)`` turns them into ``ObjectPrediction`` boxes that SAHI shifts into the full
image and merges across slices (GREEDYNMM by default).

The model is whalescan's own region detector (:class:`jobs.worker.RegionDetector`: the
bundle's backend — ``torch`` or ``onnxruntime`` — and decoder), run on the whole slice as one
region whose core is the slice: same scores, same peak decoding and NMS inside a slice, so the
only difference from ``whalescan detect`` is how slices are read and merged. Bench-only: sahi
is a ``bench`` extra, never imported by the package.
"""

from __future__ import annotations

import numpy as np
from rasterio.windows import Window
from sahi.models.base import DetectionModel
from sahi.prediction import ObjectPrediction

from jobs.worker import DetectorSettings, RegionDetector
from tiling.grid import Region
from tiling.region_boxes import region_boxes


class WhalescanSahiModel(DetectionModel):
    """SAHI model over a whalescan bundle; ``settings`` as ``whalescan detect`` would resolve them."""

    def __init__(self, bundle_path: str, settings: DetectorSettings, category: str = "whale_face"):
        self.settings = settings
        super().__init__(
            model_path=bundle_path,
            device="cpu",
            confidence_threshold=settings.threshold,
            category_mapping={"0": category},
        )

    def load_model(self) -> None:
        self.model = RegionDetector(self.model_path, self.settings)

    def set_model(self, model, **kwargs) -> None:
        self.model = model

    def perform_inference(self, image: np.ndarray) -> None:
        """(H, W, 3) uint8 RGB slice → (boxes (N, 4) slice px [xmin, ymin, xmax, ymax], scores (N,))."""
        height, width = image.shape[:2]
        pixels = np.ascontiguousarray(image[..., :3].transpose(2, 0, 1), dtype=np.float32)
        heat = self.model.heatmap(pixels)
        whole = Window(0, 0, width, height)
        valid = np.ones((height, width), bool)
        self._original_predictions = region_boxes(
            heat, valid, Region(0, whole, whole), self.model.params, self.model.decode
        )

    def _create_object_prediction_list_from_original_predictions(
        self, shift_amount_list=None, full_shape_list=None
    ) -> None:
        boxes, scores = self._original_predictions
        shift, full = _first(shift_amount_list) or [0, 0], _first(full_shape_list)
        name = self.category_mapping["0"]
        predictions = [
            ObjectPrediction(
                bbox=[float(v) for v in box],
                category_id=0,
                category_name=name,
                score=float(score),
                shift_amount=shift,
                full_shape=full,
            )  # fmt: skip
            for box, score in zip(boxes, scores, strict=True)
            if score >= self.confidence_threshold
        ]
        self._object_prediction_list_per_image = [predictions]


def _first(pairs):
    """SAHI passes ``[[x, y], ...]`` per image, or (its older form) one bare ``[x, y]``."""
    if not pairs:
        return None
    return list(pairs) if isinstance(pairs[0], int | float) else list(pairs[0])
