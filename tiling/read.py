"""Windowed reads of a region: pixels on the 0..255 scale plus a validity mask, filled past the edges."""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioError
from rasterio.windows import Window, WindowError

from tiling.bands import Scaling
from tiling.scene import SceneError


def read_window(
    ds: rasterio.DatasetReader,
    uri: str,
    window: Window,
    bands: tuple[int, ...],
    scaling: Scaling,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``window`` (may extend past the scene) → (pixels float32 (3, h, w) 0..255, valid bool (h, w)).

    Pixels outside the scene or masked as nodata (nodata value, alpha band or mask band) are
    invalid and take ``scaling.fill``, the scene's median colour: a function of the scene alone,
    so tiled reads equal untiled ones. Zeros there made a dark edge beside water that models took
    for a whale's head on the top and left borders (issue 9); mirroring the scene instead put a
    twin beside faces near the edge and lost them (bench/bench_border.py). ``out`` reuses
    buffers of the right shape from an earlier read (a fresh 60 MB array costs more in page
    faults than the decoding: bench/bench_detect.py).
    """
    h, w = int(window.height), int(window.width)
    if out is None:
        out = np.empty((len(bands), h, w), np.float32), np.empty((h, w), bool)
    pixels, valid = out
    try:
        inner = window.intersection(Window(0, 0, ds.width, ds.height))
    except WindowError:
        _fill(pixels, scaling)
        valid.fill(False)
        return pixels, valid
    if (inner.width, inner.height) != (w, h):
        _fill(pixels, scaling)
        valid.fill(False)
    r0, c0 = int(inner.row_off - window.row_off), int(inner.col_off - window.col_off)
    rs, cs = slice(r0, r0 + int(inner.height)), slice(c0, c0 + int(inner.width))
    try:
        raw = ds.read(bands, window=inner)
        mask = None if _all_valid(ds, bands) else ds.dataset_mask(window=inner) > 0
    except RasterioError as e:
        raise SceneError(f"{uri!r}: read failed at {_fmt(inner)} ({str(e).splitlines()[0]})") from e
    if raw.dtype.kind == "f":  # NaN/inf without a declared nodata value are nodata too
        finite = np.isfinite(raw).all(axis=0)
        if not finite.all():
            mask = finite if mask is None else mask & finite
    scaling.apply(raw, out=pixels[:, rs, cs])
    if mask is None:
        valid[rs, cs] = True
    else:
        np.copyto(
            pixels[:, rs, cs], fill_colour(scaling, len(bands))[:, None, None], where=~mask[None]
        )
        valid[rs, cs] = mask
    return pixels, valid


def _all_valid(ds: rasterio.DatasetReader, bands: tuple[int, ...]) -> bool:
    """No nodata value, alpha or mask band: skip reading a mask that would be all 255."""
    return all(MaskFlags.all_valid in ds.mask_flag_enums[b - 1] for b in bands) and not any(
        MaskFlags.alpha in flags or MaskFlags.per_dataset in flags for flags in ds.mask_flag_enums
    )


def fill_colour(scaling: Scaling, n: int) -> np.ndarray:
    """float32 (n,): the 0..255 colour of pixels outside the scene and of nodata."""
    return np.asarray(scaling.fill or (0.0,) * n, np.float32)


def _fill(pixels: np.ndarray, scaling: Scaling) -> None:
    pixels[...] = fill_colour(scaling, len(pixels))[:, None, None]


def _fmt(w: Window) -> str:
    return f"col {int(w.col_off)}, row {int(w.row_off)}, {int(w.width)}×{int(w.height)} px"
