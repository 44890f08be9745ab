"""Textured open sea: a pure function of global pixel coordinates and a seed.

The sea is dark blue-green with large-scale brightness patches (a few octaves of hashed value
noise), wind waves (two directional sinusoids whose amplitude drifts over the scene), fine
ripples, and a slow drift of hue between blue and green. In the near infrared (band 4) water
is almost black. Any window is an exact slice of the same infinite field, so blocks of a scene
meet without seams and a block-wise scene equals the one drawn at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from synth.noise import derive_seed, grid_noise

__all__ = ["WaterStyle", "draw_water", "water_style"]

_PERIOD = 4096  # phase table length; wave numbers are integers in cycles per _PERIOD pixels
_SINE = np.sin(2 * np.pi * np.arange(_PERIOD) / _PERIOD).astype(np.float32)


@dataclass(frozen=True)
class WaterStyle:
    """Colours (R, G, B, NIR reflectance, 0..1) and wave numbers derived from a seed."""

    blue: tuple[float, float, float, float]
    green: tuple[float, float, float, float]
    waves: tuple[tuple[int, int, float], ...]  # (kx, ky, amplitude), cycles per _PERIOD px
    seed: int


@lru_cache(maxsize=256)
def water_style(seed: int) -> WaterStyle:
    """The sea's look for ``seed``: slightly different hue, brightness and wind per seed."""
    rng = np.random.default_rng(derive_seed(seed, 0x5EA))
    gain = rng.uniform(0.85, 1.2)
    blue = (0.055 * gain, 0.150 * gain, 0.185 * gain, 0.035)
    green = (0.070 * gain, 0.185 * gain, 0.160 * gain, 0.040)
    wind = rng.uniform(0.0, 2 * np.pi)
    waves = []
    for wavelength, spread, amp in (
        (rng.uniform(22, 40), 0.0, 1.0),
        (rng.uniform(12, 20), rng.uniform(0.4, 0.8), 0.55),
    ):
        theta = wind + spread * rng.choice((-1.0, 1.0))
        k = _PERIOD / wavelength
        waves.append((int(round(k * np.cos(theta))), int(round(k * np.sin(theta))), amp))
    return WaterStyle(blue=blue, green=green, waves=tuple(waves), seed=seed)


@lru_cache(maxsize=256)
def _layer_seeds(seed: int) -> tuple[int, ...]:
    return tuple(derive_seed(seed, k) for k in range(6))


def _wave(cols: np.ndarray, rows: np.ndarray, kx: int, ky: int) -> np.ndarray:
    """sin(2π (kx·col + ky·row) / _PERIOD) as (rows, cols), exact integer phases, separable."""
    px = (kx * cols) % _PERIOD
    py = (ky * rows) % _PERIOD
    quarter = _PERIOD // 4
    sin_x, cos_x = _SINE[px], _SINE[(px + quarter) % _PERIOD]
    sin_y, cos_y = _SINE[py], _SINE[(py + quarter) % _PERIOD]
    return sin_x[None, :] * cos_y[:, None] + cos_x[None, :] * sin_y[:, None]


def draw_water(
    col_off: int, row_off: int, width: int, height: int, seed: int, channels: int = 3
) -> np.ndarray:
    """The sea in the pixel window at global ``(col_off, row_off)``: float32 (C, height, width).

    Band-planar like rasterio arrays; ``channels`` is 3 (R, G, B) or 4 (R, G, B, NIR); values
    are reflectances in about 0..0.3.
    """
    out = np.empty((channels, height, width), np.float32)
    # strips of a few hundred kB stay in cache: ~4x faster than whole 512x512 blocks
    strip = max(8, _STRIP_PIXELS // max(width, 1))
    for top in range(0, height, strip):
        rows = min(strip, height - top)
        _draw_strip(out[:, top : top + rows], col_off, row_off + top, width, rows, seed)
    return out


_STRIP_PIXELS = 64 * 1024


def _draw_strip(
    out: np.ndarray, col_off: int, row_off: int, width: int, height: int, seed: int
) -> None:
    style = water_style(seed)
    s = _layer_seeds(seed)  # one seed per noise layer
    cols = np.arange(col_off, col_off + width, dtype=np.int64)
    rows = np.arange(row_off, row_off + height, dtype=np.int64)

    patches = grid_noise(col_off, row_off, width, height, 256, s[1])
    patches *= np.float32(0.6)
    patches += np.float32(0.4) * grid_noise(col_off, row_off, width, height, 48, s[2])
    swell = grid_noise(col_off, row_off, width, height, 128, s[3])
    ripples = grid_noise(col_off, row_off, width, height, 4, s[4])

    waves = np.zeros((height, width), np.float32)
    for kx, ky, amp in style.waves:
        w = _wave(cols, rows, kx, ky)
        w *= np.float32(amp)
        waves += w
    # wave amplitude drifts over the scene: calm and choppy patches
    swell *= np.float32(0.8)
    swell += np.float32(0.2)
    waves *= swell

    lum = patches
    lum *= np.float32(0.45)
    lum += np.float32(0.78)
    waves *= np.float32(0.07)
    lum += waves
    ripples -= np.float32(0.5)
    ripples *= np.float32(0.10)
    lum += ripples

    hue = grid_noise(col_off, row_off, width, height, 512, s[5])
    for c in range(out.shape[0]):
        a, b = np.float32(style.blue[c]), np.float32(style.green[c])
        ch = out[c]
        if c == 3:  # NIR: water absorbs; only wave crests reflect a little sky
            np.multiply(waves, np.float32(0.15) * a, out=ch)
            ch += a
            continue
        np.multiply(hue, b - a, out=ch)
        ch += a
        ch *= lum
