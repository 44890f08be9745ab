"""Scored pixels: a scene resampled to the model's ground sample distance, and the reader for them.

The scored grid is the native pixel grid scaled by ``(fx, fy)`` native px per scored px: scored
pixel (col, row) covers native ``[col·fx, (col+1)·fx) × [row·fy, (row+1)·fy)``. Regions, read
windows, heatmaps and boxes all live on it (so the stride alignment that keeps tiling invisible
holds at any scale); boxes go back to native pixels by ``×(fx, fy)``.

How its pixels are read, cheapest first:

* native (``fx = fy = 1`` within :data:`SCALE_TOLERANCE`): the scene itself;
* an overview whose size matches the scale (COGs carry ×2, ×4, …): that overview, read as is;
* otherwise a ``rasterio.vrt.WarpedVRT`` whose transform is the pixel-space ``Affine.scale``
  from the source to the grid (average resampling to shrink, bilinear to enlarge). The source is
  the coarsest overview still finer than the grid, else the scene (as ``gdalwarp`` picks its
  overview), so the time grows with the pixels scored rather than with the native ones. The
  warped VRT is block-based: every window read is assembled from the same warped blocks,
  whatever its origin and size, so a region read equals the same pixels of a whole-scene read
  and tiled == untiled holds exactly. ``out_shape`` reads of fractional native windows would
  not: each read resamples its own source window and the kernel's edge pixels depend on where
  the window starts.

The warp is done in pixel space (the same placeholder CRS on both sides, the identity as source
transform): it ignores the scene's georeferencing, so rotated, south-up, GCP-only and
unreferenced scenes resample alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT

from tiling.gsd import Gsd
from tiling.scene import SceneError

__all__ = ["SCALE_TOLERANCE", "ScoredGrid", "ScoredView", "candidate_overviews", "plan_grid"]

SCALE_TOLERANCE = 0.05
"""Scales within 5 % of a candidate (native, an overview) use it as it is: training jitters face
sizes by ±10 % (synth.units.SIZE_JITTER), while a warp costs a pass over every source pixel. So
UTM's 0.9996 scale factor, or the 1–2 % anisotropy of a scene reprojected to EPSG:4326, never
makes a 10 cm scene resample for a 10 cm model."""

_PIXEL_CRS = "EPSG:3857"  # a label only: the same on both sides, so the warp is the affine alone


@dataclass(frozen=True)
class ScoredGrid:
    """The pixel grid a scene is scored on (see the module docstring).

    ``fx``/``fy``: native px per scored px along a row / down a column; ``width``/``height``:
    the grid's size in scored px; ``overview``: the GDAL overview level (0 = the first overview)
    its pixels are read or resampled from, None for the scene itself; ``overview_fx``/``_fy``:
    native px per pixel of that overview.
    """

    fx: float  # native px per scored px, along columns
    fy: float  # native px per scored px, along rows
    width: int  # scored px
    height: int  # scored px
    overview: int | None = None
    overview_fx: float = 1.0
    overview_fy: float = 1.0

    def __post_init__(self):
        for name in ("fx", "fy"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} {v!r}: native px per scored px must be finite and > 0")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"grid {self.width}×{self.height} px: must be at least 1×1")

    @classmethod
    def native(cls, width: int, height: int) -> ScoredGrid:
        return cls(1.0, 1.0, width, height)

    @property
    def is_native(self) -> bool:
        return self.fx == 1.0 and self.fy == 1.0 and self.overview is None

    @property
    def scale(self) -> float:
        """One number for reports: native px per scored px (geometric mean of fx and fy)."""
        return math.sqrt(self.fx * self.fy)

    @property
    def source_scale(self) -> tuple[float, float]:
        """Source px (of the overview, or native) per scored px: (1, 1) means read as is."""
        return self.fx / self.overview_fx, self.fy / self.overview_fy

    @property
    def resampling(self) -> Resampling:
        """Average when shrinking (every native pixel counts, no aliasing), bilinear to enlarge."""
        return Resampling.average if min(self.fx, self.fy) >= 1.0 else Resampling.bilinear

    def to_native(self, px_boxes: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) ``[xmin, ymin, xmax, ymax]`` in scored px → native px (float64)."""
        return np.asarray(px_boxes, np.float64) * np.array([self.fx, self.fy, self.fx, self.fy])


def plan_grid(
    width: int,
    height: int,
    scene: Gsd | None,
    target_m: float | None,
    overviews: dict[int, tuple[int, int]] | None = None,
) -> ScoredGrid:
    """The grid that shows a ``width``×``height`` px scene of GSD ``scene`` at ``target_m``.

    Native when either GSD is unknown or the scale is within :data:`SCALE_TOLERANCE` of 1;
    an overview (``overviews``: level → its (width, height)) whose scale is that close to the
    wanted one; else ``ceil(width/fx)`` × ``ceil(height/fy)`` pixels resampled from the coarsest
    overview finer than them, or from the scene.
    """
    if scene is None or target_m is None:
        return ScoredGrid.native(width, height)
    fx, fy = target_m / scene.x_m, target_m / scene.y_m
    if _close(fx, 1.0) and _close(fy, 1.0):
        return ScoredGrid.native(width, height)
    finer = []
    for level, (ow, oh) in sorted((overviews or {}).items()):
        ofx, ofy = width / ow, height / oh
        if _close(ofx, fx) and _close(ofy, fy):
            return ScoredGrid(ofx, ofy, ow, oh, level, ofx, ofy)
        if ofx < fx and ofy < fy:
            finer.append((ofx * ofy, level, ofx, ofy))
    w, h = math.ceil(width / fx), math.ceil(height / fy)
    if finer:
        _, level, ofx, ofy = max(finer)
        return ScoredGrid(fx, fy, w, h, level, ofx, ofy)
    return ScoredGrid(fx, fy, w, h)


def candidate_overviews(ds: rasterio.DatasetReader, scene: Gsd | None, target_m: float | None):
    """{level: (width, height)} of ``ds``'s overviews a grid at ``target_m`` could read (those
    not coarser than it), opened to know their exact sizes."""
    if scene is None or target_m is None or not ds.overviews(1):
        return {}
    want = target_m / scene.m
    near = [i for i, k in enumerate(ds.overviews(1)) if k <= want * 1.1]
    shapes = {}
    for level in near:
        with rasterio.open(ds.name, overview_level=level) as ov:
            shapes[level] = (ov.width, ov.height)
    return shapes


class ScoredView:
    """A reader of a scene's scored grid: ``.reader`` is a dataset (the scene itself, an overview
    or a warped VRT) whose pixel (col, row) is scored pixel (col, row). Close it after use; the
    scene ``ds`` stays open (the caller owns it)."""

    def __init__(self, ds: rasterio.DatasetReader, grid: ScoredGrid):
        self.grid = grid
        self._own = self._vrt = None  # an overview opened, a warped VRT made: closed by close()
        try:
            self.reader = self._open(ds, grid)
        except RasterioError as e:
            msg = str(e).splitlines()[0][:300]
            raise SceneError(f"{ds.name!r}: cannot read it on a {_fmt(grid)} grid ({msg})") from e
        if (self.reader.width, self.reader.height) != (grid.width, grid.height):
            got = f"{self.reader.width}×{self.reader.height}"
            self.close()
            raise SceneError(f"{ds.name!r}: scored grid is {got} px, planned {_fmt(grid)}")

    def _open(self, ds, grid: ScoredGrid):
        if grid.is_native:
            return ds
        source = ds
        if grid.overview is not None:
            source = self._own = rasterio.open(ds.name, overview_level=grid.overview)
        sx, sy = grid.source_scale
        if (sx, sy) == (1.0, 1.0):
            return source
        self._vrt = WarpedVRT(
            source,
            src_crs=_PIXEL_CRS,
            src_transform=Affine.identity(),
            crs=_PIXEL_CRS,
            transform=Affine.scale(sx, sy),
            width=grid.width,
            height=grid.height,
            resampling=grid.resampling,
            **_validity_options(source, grid),
        )
        return self._vrt

    def close(self) -> None:
        for name in ("_vrt", "_own"):
            handle = getattr(self, name)
            if handle is not None:
                handle.close()
                setattr(self, name, None)


def _validity_options(ds: rasterio.DatasetReader, grid: ScoredGrid) -> dict:
    """How the warped VRT marks pixels without data, so ``dataset_mask`` still finds them.

    An alpha band travels as the VRT's alpha; a nodata value stays its nodata (float scenes get
    NaN: GDAL makes masks from byte/uint16 alpha bands only); a mask band becomes an added alpha
    band. A scene that is valid everywhere needs nothing when the grid shrinks it (every scored
    pixel averages some of it); when it enlarges, the last column and row of the grid sample
    past the scene's edge, and the warp's zeros there would be valid pixels — a dark edge line
    a model takes for a head — so an alpha band marks them.
    """
    flags = ds.mask_flag_enums
    if ColorInterp.alpha in ds.colorinterp:
        return {}
    if all(MaskFlags.all_valid in f for f in flags):
        return {} if grid.resampling == Resampling.average else {"add_alpha": True}
    if np.dtype(ds.dtypes[0]).kind == "f":
        return {"nodata": float("nan")}
    if ds.nodata is not None:
        return {"nodata": ds.nodata}
    return {"add_alpha": True}


def _fmt(grid: ScoredGrid) -> str:
    return f"{grid.width}×{grid.height} px (×{grid.fx:.4g}, ×{grid.fy:.4g})"


def _close(a: float, b: float) -> bool:
    return abs(a / b - 1.0) <= SCALE_TOLERANCE
