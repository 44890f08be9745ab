"""Windowed reads of a region: pixels on the 0..255 scale plus a validity mask, filled past the edges."""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window, WindowError

from tiling.bands import Scaling
from tiling.scene import SceneError


def read_window(
    ds: rasterio.DatasetReader, uri: str, window: Window, bands: tuple[int, ...], scaling: Scaling
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``window`` (may extend past the scene) → (pixels float32 (3, h, w) 0..255, valid bool (h, w)).

    Pixels outside the scene or masked as nodata (nodata value, alpha band or mask band) are 0
    and invalid.
    """
    h, w = int(window.height), int(window.width)
    pixels = np.zeros((len(bands), h, w), np.float32)
    valid = np.zeros((h, w), bool)
    try:
        inner = window.intersection(Window(0, 0, ds.width, ds.height))
    except WindowError:
        return pixels, valid
    r0, c0 = int(inner.row_off - window.row_off), int(inner.col_off - window.col_off)
    rs, cs = slice(r0, r0 + int(inner.height)), slice(c0, c0 + int(inner.width))
    try:
        raw = ds.read(bands, window=inner)
        mask = ds.dataset_mask(window=inner) > 0
    except RasterioError as e:
        raise SceneError(f"{uri!r}: read failed at {_fmt(inner)} ({str(e).splitlines()[0]})") from e
    pixels[:, rs, cs] = np.where(mask, scaling.apply(raw), 0)
    valid[rs, cs] = mask
    return pixels, valid


def _fmt(w: Window) -> str:
    return f"col {int(w.col_off)}, row {int(w.row_off)}, {int(w.width)}×{int(w.height)} px"
