"""Training crops for the box detector, cut on the fly from whole labelled scenes.

Each epoch draws ``crops_per_epoch`` crops: a ``positive_fraction`` centred near a random label
(its centre anywhere in the supervised area), a ``hard_fraction`` centred on mined hard
negatives (false alarms of an earlier model on the training scenes), the rest anywhere — sea,
distractors and the scene border, where pixels past the edge take the scene's ``fills`` colour,
as detection's :func:`tiling.read.read_window` gives them. Views (``augment``): the eight
flips/turns (boxes follow), brightness/contrast ``jitter``, and the ``scale`` and ``look``
changes of :mod:`models.scene_augment`.

A crop is a pure function of (seed, epoch, index), so any number of data-parallel workers and
any resume see the same crops.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from models.augment import jitter
from models.detector import output_cells
from models.scene_augment import SCALE_RANGE, change_look, log_uniform, resize_crop
from models.scene_window import cut_window
from models.targets import encode_targets


class SceneCrops(Dataset):
    """``scenes``: uint8 (3, H, W) arrays (0..255 after band scaling); ``boxes``: (N, 4) float
    [xmin, ymin, xmax, ymax] scene px per scene; ``fills``: (3,) colour past each scene's edge
    (default 0). Items: (uint8 (3, C, C), heat (r, c), boxes
    (4, r, c), weight (r, c)) tensors with C = ``crop`` and r = c = output cells of the crop."""

    def __init__(
        self, scenes, boxes, *, crop: int, receptive_field: int, stride: int,
        crops_per_epoch: int, positive_fraction: float = 0.5, hard_fraction: float = 0.0,
        augment: tuple[str, ...] = ("flip", "rot90", "jitter"), seed: int = 0, fills=None,
    ):  # fmt: skip
        self.scenes = scenes
        fills = [np.zeros(3)] * len(scenes) if fills is None else fills
        self.fills = [np.clip(np.rint(f), 0, 255).astype(np.uint8) for f in fills]
        self.boxes = [np.asarray(b, np.float64).reshape(-1, 4) for b in boxes]
        self.crop, self.rf, self.stride = crop, receptive_field, stride
        self.cells = output_cells(crop, receptive_field, stride)
        if self.cells < 1:
            raise ValueError(
                f"crop {crop} px is smaller than the receptive field {receptive_field}"
            )
        self.n, self.augment, self.seed = crops_per_epoch, tuple(augment), seed
        self.positive_fraction, self.hard_fraction = positive_fraction, hard_fraction
        self.hard: np.ndarray = np.zeros((0, 3))  # (scene, x, y) rows of mined hard negatives
        self.epoch = 0
        self._label_index = np.array(
            [(s, k) for s, b in enumerate(self.boxes) for k in range(len(b))], np.int64
        ).reshape(-1, 2)
        areas = np.array([s.shape[1] * s.shape[2] for s in scenes], np.float64)
        self._area_p = areas / areas.sum()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        rng = np.random.default_rng((self.seed, self.epoch, i))
        scene, x0, y0 = self._origin(rng)
        side = self.crop
        if "scale" in self.augment:  # cut crop/zoom px about the same centre, then resize
            side = max(2, round(self.crop / log_uniform(rng, *SCALE_RANGE)))
            x0, y0 = x0 + (self.crop - side) // 2, y0 + (self.crop - side) // 2
        image, valid = self._cut(scene, x0, y0, side)
        boxes = self.boxes[scene] - [x0, y0, x0, y0]
        inside = (boxes[:, 2] > 0) & (boxes[:, 3] > 0) & (boxes[:, 0] < side)
        boxes = boxes[inside & (boxes[:, 1] < side)]
        if side != self.crop:
            image, valid = resize_crop(image, valid, self.crop)
            boxes = boxes * (self.crop / side)
        image, valid, boxes = self._view(image, valid, boxes, rng)
        t = encode_targets(boxes, self.cells, self.cells, self.rf, self.stride)
        return (
            torch.from_numpy(np.ascontiguousarray(image)),
            torch.from_numpy(t.heat),
            torch.from_numpy(t.boxes),
            torch.from_numpy(t.weight),
        )

    def _origin(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """(scene, x0, y0) of the crop's top-left pixel (may lie outside the scene)."""
        u = rng.random()
        supervised = (self.cells - 1) * self.stride
        if u < self.positive_fraction and len(self._label_index):
            scene, k = self._label_index[rng.integers(len(self._label_index))]
            b = self.boxes[scene][k]
            cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        elif u < self.positive_fraction + self.hard_fraction and len(self.hard):
            scene, cx, cy = self.hard[rng.integers(len(self.hard))]
            scene = int(scene)
        else:
            scene = int(rng.choice(len(self.scenes), p=self._area_p))
            _, h, w = self.scenes[scene].shape
            m = self.rf // 2  # let the supervised area reach the scene edge
            x0 = int(rng.integers(-m, max(-m + 1, w - self.crop + m + 1)))
            y0 = int(rng.integers(-m, max(-m + 1, h - self.crop + m + 1)))
            return scene, x0, y0
        # Put the centre anywhere in the supervised area (the cell anchors' span).
        ox, oy = self.rf / 2 + rng.random(2) * supervised
        return int(scene), int(round(cx - ox)), int(round(cy - oy))

    def _cut(self, scene: int, x0: int, y0: int, c: int) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (3, c, c) pixels at (x0, y0) of ``scene`` (its fill past the edge) and the
        in-scene mask."""
        return cut_window(self.scenes[scene], x0, y0, c, c, self.fills[scene], np.uint8)

    def _view(self, image, valid, boxes, rng):
        """Random flip/turn (boxes follow), jitter and look."""
        c = self.crop
        if "rot90" in self.augment:
            for _ in range(int(rng.integers(4))):  # 90° counter-clockwise: (x, y) → (y, c − x)
                image, valid = np.rot90(image, 1, (1, 2)), np.rot90(valid, 1, (0, 1))
                boxes = np.stack([boxes[:, 1], c - boxes[:, 2], boxes[:, 3], c - boxes[:, 0]], 1)
        if "flip" in self.augment and rng.random() < 0.5:
            image, valid = image[:, :, ::-1], valid[:, ::-1]
            boxes = np.stack([c - boxes[:, 2], boxes[:, 1], c - boxes[:, 0], boxes[:, 3]], 1)
        if "jitter" in self.augment:
            b, k = 1 + 0.25 * (2 * rng.random(2) - 1)
            image = jitter(image, b, k)
        if "look" in self.augment:
            image = change_look(image, valid, rng)
        return image, valid, boxes.reshape(-1, 4)
