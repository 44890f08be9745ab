"""Scale and look changes of a detector training crop, so the detector holds on imagery not seen.

The labelled scenes come from one survey (one camera, altitude and sea state); the scenes to
search may not. ``scale`` zooms the crop by a log-uniform factor in :data:`SCALE_RANGE` (other
altitudes, bigger and smaller whales); ``look`` changes gamma, colour balance and haze, and
adds blur and sensor noise (other cameras, light and weather). The pointwise changes act on the
whole crop, so the flat colour past the scene edge changes with the scene as its median would;
blur and noise only inside the scene, as :func:`tiling.read.read_window` keeps that colour flat.
Randomness comes only from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

DETECTOR_OPS = ("flip", "rot90", "jitter", "scale", "look")  # the names ``augment`` may use
SCALE_RANGE = (0.8, 1.25)
GAMMA_RANGE = (0.55, 1.8)
COLOUR_GAIN = 0.15  # per-channel gain in 1 ± this
HAZE_P, HAZE_MAX = 0.3, 0.35  # how often, and the largest blend towards a bright veil
BLUR_P, BLUR_SIGMA = 0.25, (0.5, 1.2)  # px
NOISE_P, NOISE_SIGMA = 0.5, 5.0  # grey levels


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A factor in [low, high] whose logarithm is uniform (a zoom and its inverse equally likely)."""
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def resize_crop(image: np.ndarray, valid: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (3, S, S) and bool (S, S) → the same resampled to (3, side, side) / (side, side).

    Pixels: bilinear with antialiasing; the in-scene mask: nearest, so the edge stays sharp.
    """
    x = torch.from_numpy(np.ascontiguousarray(image)).float()[None]
    x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    m = torch.from_numpy(np.ascontiguousarray(valid)).float()[None, None]
    m = F.interpolate(m, size=(side, side), mode="nearest")
    out = np.clip(np.rint(x[0].numpy()), 0, 255).astype(np.uint8)
    return out, m[0, 0].numpy() > 0.5


def change_look(image: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (3, C, C) → uint8 (3, C, C): gamma, per-channel gain and haze (each drawn from
    ``rng``) on every pixel; blur and noise on the pixels where ``valid`` (bool (C, C))."""
    # The pointwise changes as one lookup table per channel: (3, 256) float32 on the 0..1 scale.
    lut = (np.arange(256) / 255) ** log_uniform(rng, *GAMMA_RANGE)
    lut = lut[None] * (1 + COLOUR_GAIN * (2 * rng.random((3, 1)) - 1))
    if rng.random() < HAZE_P:
        a, veil = rng.uniform(0, HAZE_MAX), rng.uniform(0.6, 0.9)
        lut = lut * (1 - a) + a * veil
    flat = np.take_along_axis(lut.astype(np.float32), image.reshape(3, -1), 1)
    x = flat = flat.reshape(image.shape)
    if rng.random() < BLUR_P:
        x = blur(x, float(rng.uniform(*BLUR_SIGMA)))
    if rng.random() < NOISE_P:
        x = x + rng.normal(0, rng.uniform(0, NOISE_SIGMA) / 255, x.shape).astype(np.float32)
    return np.clip(np.rint(np.where(valid, x, flat) * 255), 0, 255).astype(np.uint8)


def blur(x: np.ndarray, sigma: float, radius: int = 2) -> np.ndarray:
    """float (C, H, W) → the same smoothed by a separable Gaussian of ``sigma`` px (edges
    replicated). Shifted sums in numpy: on a 263² crop faster than a framework convolution."""
    k = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma**2)).astype(np.float32)
    k /= k.sum()
    for axis in (1, 2):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        p = np.pad(x, pad, mode="edge")
        n = x.shape[axis]
        x = sum(w * np.take(p, range(i, i + n), axis=axis) for i, w in enumerate(k))
    return x
