"""A window of an in-memory scene that may reach past its edge: what training and validation cut.

The in-memory twin of :func:`tiling.read.read_window` (which reads files): pixels past the edge
take the scene's fill colour and are marked invalid, so crops, validation and detection see the
same pixels there.
"""

from __future__ import annotations

import numpy as np


def cut_window(
    scene: np.ndarray, x0: int, y0: int, width: int, height: int, fill=0, dtype=np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """(C, H, W) ``scene`` → (pixels (C, height, width) of ``dtype``, in-scene mask (height, width))
    for the window whose top-left pixel is (x0, y0); ``fill``: the (C,) colour (or one value)
    past the edge."""
    _, h, w = scene.shape
    pixels = np.empty((scene.shape[0], height, width), dtype)
    pixels[...] = np.reshape(fill, (-1, 1, 1))
    valid = np.zeros((height, width), bool)
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + width, w), min(y0 + height, h)
    if xa < xb and ya < yb:
        inner = np.s_[ya - y0 : yb - y0, xa - x0 : xb - x0]
        pixels[(slice(None), *inner)] = scene[:, ya:yb, xa:xb]
        valid[inner] = True
    return pixels, valid
