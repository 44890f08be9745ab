"""A second look at each approach-3 candidate: a chip classifier re-scores the detector's peaks.

The box detector finds every face but ranks some flukes, rocks and foam above faint faces
(docs/approach3.md, "A second look"). A whalenet classifier trained on chips of the same labelled
scenes looks again at a chip centred on each candidate, and the two scores are fused as
sqrt(detector × classifier): a candidate must convince both. The chips come from the region's
own read window, so a tiled run equals an untiled one as long as the halo covers half a chip
(:func:`check_halo`). The classifier's score is the mean over the chip's eight mirror / quarter
-turn views, as the detector's own test-time views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.bundle import Bundle, BundleError, load_bundle
from models.scene_window import cut_window

FOLDER = "second_look"  # the classifier bundle's folder inside the detector bundle


@dataclass(frozen=True)
class SecondLookSpec:
    """What a detector bundle's ``second_look`` entry says: the classifier's folder and the fused
    threshold tuned with it."""

    folder: str
    threshold: float

    @classmethod
    def of(cls, bundle: Bundle) -> SecondLookSpec | None:
        entry = bundle.second_look
        if not entry:
            return None
        try:
            spec = cls(str(entry["folder"]), float(entry["threshold"]))
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"{str(bundle.path)!r}: malformed second_look {entry!r} ({e})") from e
        if not 0 < spec.threshold < 1:
            raise BundleError(
                f"{str(bundle.path)!r}: second_look threshold {spec.threshold} not in (0, 1)"
            )
        return spec

    def load(self, bundle: Bundle) -> Bundle:
        """The classifier bundle inside ``bundle``."""
        second = load_bundle(Path(bundle.path) / self.folder)
        if second.kind != "classifier":
            raise BundleError(f"{str(second.path)!r}: a second look must be a classifier bundle")
        return second

    def manifest(self) -> dict[str, Any]:
        return {"folder": self.folder, "threshold": self.threshold}


def in_use(bundle: Bundle, mode: str | None, enabled: bool) -> SecondLookSpec | None:
    """The bundle's second look if a run in ``mode`` with it ``enabled`` uses it (boxes only)."""
    return SecondLookSpec.of(bundle) if mode == "boxes" and enabled else None


def candidate_threshold(threshold: float) -> float:
    """The detector score below which no candidate can pass a fused ``threshold`` (the
    classifier's score is at most 1): decoding down to it loses nothing."""
    return threshold * threshold


def fuse(detector: np.ndarray, classifier: np.ndarray) -> np.ndarray:
    """sqrt(detector × classifier), float32: both must be confident for the fused score to be."""
    return np.sqrt(detector.astype(np.float32) * classifier.astype(np.float32))


def chip_origins(boxes: np.ndarray, size: int) -> np.ndarray:
    """(N, 2) int (col, row) scene px of the ``size``² chip centred on each box's centre."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    return np.round(centre - size / 2).astype(np.int64).reshape(-1, 2)


def cut_chips(
    pixels: np.ndarray, origin: tuple[int, int], boxes: np.ndarray, size: int, fill=0
) -> np.ndarray:
    """(N, 3, size, size) float32 chips centred on ``boxes`` (scene px) from ``pixels`` (3, h, w)
    whose top-left pixel is ``origin`` (col, row) in scene px: a region's read window in
    ``detect`` (the halo keeps its chips inside: :func:`check_halo`), a whole in-memory scene
    in training, where chips past the edge take the scene's ``fill`` as ``detect`` reads it."""
    out = np.empty((len(boxes), pixels.shape[0], size, size), np.float32)
    for i, (col, row) in enumerate(chip_origins(boxes, size) - np.asarray(origin)):
        out[i], _ = cut_window(pixels, int(col), int(row), size, size, fill)
    return out


def eight_views(chips: np.ndarray) -> np.ndarray:
    """(N, C, S, S) → (8N, C, S, S): the four quarter turns, then the same mirrored."""
    turns = [np.rot90(chips, k, axes=(2, 3)) for k in range(4)]
    return np.ascontiguousarray(np.concatenate(turns + [t[..., ::-1] for t in turns]))


def view_mean(backend, chips: np.ndarray) -> np.ndarray:
    """(N,) float32: ``backend``'s face probability per chip, the mean over its eight views."""
    if not len(chips):
        return np.zeros(0, np.float32)
    scores = np.asarray(backend(eight_views(chips)), np.float32).reshape(8, len(chips))
    return scores.mean(0)


def check_halo(halo: int, size: int) -> None:
    """A region's chips stay inside its read window when the halo covers half a chip plus the
    rounding of a centre."""
    if halo < math.ceil(size / 2) + 1:
        raise ValueError(f"halo {halo} px is less than half the {size}-px second-look chip")
