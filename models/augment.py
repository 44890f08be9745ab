"""Chip augmentation: label-preserving flips, 90° turns, photometric jitter and inversion.

Aerial imagery has no "up", so the eight flips/turns of a square chip are all valid views. Every
function is pure and takes a uint8 chip of shape (H, W, C) (numpy) and returns a new uint8 chip of
the same shape; randomness comes only from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

OPS = ("flip", "rot90", "jitter", "invert", "look")


def invert(chip: np.ndarray) -> np.ndarray:
    """255 − x, exactly (the course's inverted-images lesson)."""
    return np.subtract(255, chip, dtype=np.uint8)


def rot90(chip: np.ndarray, k: int) -> np.ndarray:
    """Turn (H, W, C) by k × 90° counter-clockwise."""
    return np.ascontiguousarray(np.rot90(chip, k, axes=(0, 1)))


def hflip(chip: np.ndarray) -> np.ndarray:
    """Mirror left ↔ right (columns)."""
    return np.ascontiguousarray(chip[:, ::-1])


def jitter(chip: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    """Scale contrast about the chip mean by ``contrast``, then brightness by ``brightness``.

    Both factors are multiplicative (1.0 = unchanged); the result is rounded and clipped to 0..255.
    """
    x = chip.astype(np.float32)
    mean = x.mean()
    x = ((x - mean) * contrast + mean) * brightness
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def parse_ops(names: str | Iterable[str], ops: tuple[str, ...] = OPS) -> tuple[str, ...]:
    """``"flip,rot90"`` or an iterable of names → validated tuple in the canonical order of
    ``ops`` (the names this model's augmentation knows; default the chips' :data:`OPS`).

    ``""`` and ``"none"`` give ()."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",")]
    wanted = {n for n in names if n and n != "none"}
    unknown = sorted(wanted - set(ops))
    if unknown:
        raise ValueError(f"augment: unknown op(s) {unknown}; expected a subset of {list(ops)}")
    return tuple(op for op in ops if op in wanted)


@dataclass(frozen=True)
class Augment:
    """A random chip transform built from ``ops`` (see :data:`OPS`).

    ``flip``: mirror with p = 0.5; ``rot90``: a uniform turn of 0/90/180/270°; ``jitter``:
    brightness and contrast factors uniform in [1 − s, 1 + s]; ``invert``: 255 − x with p = 0.5;
    ``look``: the detector's gamma, colour, haze, blur and noise changes
    (:func:`models.scene_augment.change_look`), for chips from one survey meant for others.
    """

    ops: tuple[str, ...] = ()
    jitter_strength: float = 0.25

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", parse_ops(self.ops))
        if not 0 <= self.jitter_strength < 1:
            raise ValueError(f"jitter_strength must be in [0, 1), got {self.jitter_strength}")

    def __call__(self, chip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(H, W, C) uint8 → (H, W, C) uint8; square chips only when ``rot90`` is on."""
        if "flip" in self.ops and rng.random() < 0.5:
            chip = hflip(chip)
        if "rot90" in self.ops:
            chip = rot90(chip, int(rng.integers(4)))
        if "jitter" in self.ops:
            s = self.jitter_strength
            chip = jitter(chip, rng.uniform(1 - s, 1 + s), rng.uniform(1 - s, 1 + s))
        if "invert" in self.ops and rng.random() < 0.5:
            chip = invert(chip)
        if "look" in self.ops:
            chip = look(chip, rng)
        return chip


def look(chip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 → the same with a random look (:func:`models.scene_augment.change_look`)."""
    from models.scene_augment import change_look  # torch: only where looks are wanted

    valid = np.ones(chip.shape[:2], bool)
    return np.ascontiguousarray(change_look(chip.transpose(2, 0, 1), valid, rng).transpose(1, 2, 0))
