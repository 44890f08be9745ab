"""Haze and cloud shadow over a scene: smooth fields of the global pixel, applied per window.

Haze blends the sea and everything on it toward a bright blue-grey (lower contrast); cloud
shadow darkens soft-edged patches. Both are value noise on a coarse lattice
(:func:`synth.noise.grid_noise`), so a scene written block by block gets the same pixels as a
scene drawn at once.
"""

from __future__ import annotations

import numpy as np

from synth.canvas import blend
from synth.look import SceneLook
from synth.noise import derive_seed, grid_noise

__all__ = ["apply_atmosphere"]

HAZE_COLOUR = (0.70, 0.74, 0.78, 0.60)  # R, G, B, NIR
HAZE_CELL_PX = 1500
SHADOW_CELL_PX = 700


def apply_atmosphere(
    canvas: np.ndarray, col_off: int, row_off: int, look: SceneLook, seed: int
) -> None:
    """Haze then cloud shadow on ``canvas`` (C, h, w) whose pixel [:, 0, 0] is (col_off, row_off)."""
    _, height, width = canvas.shape
    if look.haze > 0:
        field = grid_noise(col_off, row_off, width, height, HAZE_CELL_PX, derive_seed(seed, 0x4A2E))
        haze = _smoothstep(field, 0.3, 0.9) * np.float32(look.haze)
        blend(canvas, HAZE_COLOUR, haze)
    if look.shadow > 0:
        field = grid_noise(
            col_off, row_off, width, height, SHADOW_CELL_PX, derive_seed(seed, 0x5AD)
        )
        field += np.float32(0.3) * grid_noise(
            col_off, row_off, width, height, SHADOW_CELL_PX // 4, derive_seed(seed, 0x5AE)
        )
        shade = _smoothstep(field, 0.65, 0.9) * np.float32(look.shadow)
        canvas *= np.float32(1.0) - shade


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)
    return t * t * (np.float32(3.0) - np.float32(2.0) * t)
