"""Ground sample distance: metres on the ground per pixel step, from a scene's own georeferencing.

A step of one column is the transform's column vector ``(a, d)``, one row its row vector
``(b, e)``, both in CRS units. Their lengths on the ground at the scene centre are the GSD. PROJ
takes points a few pixels apart at the centre to longitude/latitude on the CRS's own datum (so
metres, international and US survey feet, degrees or grads are the CRS's business), and the
differences become ground metres with the ellipsoid's radii of curvature (N·cos φ along the
parallel, M along the meridian). One rule then covers:

* projected CRSs, whose map metres are not ground metres: UTM's scale factor (0.9996–1.001), Web
  Mercator's 1/cos(latitude) (which on the ellipsoid is not even the same east and north);
* geographic CRSs (a degree of longitude shrinks with cos(latitude));
* rotated or sheared transforms (each vector's east and north parts);
* GCP-only files, through the affine transform fitted to the GCPs (``rasterio.transform.from_gcps``).

Local (engineering) CRSs have no ellipsoid: their units times ``crs.linear_units_factor``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import rasterio
import rasterio.transform
from affine import Affine
from rasterio.crs import CRS

__all__ = ["Gsd", "GsdError", "gsd_from_gcps", "gsd_from_transform", "scene_gsd"]


class GsdError(ValueError):
    """A ground sample distance cannot be derived from the georeferencing given."""


@dataclass(frozen=True)
class Gsd:
    """A scene's ground sample distance: ``x_m`` per column step, ``y_m`` per row step (metres).

    ``source`` says where it came from: ``"crs"`` (transform + CRS), ``"gcps"`` or ``"given"``
    (a user's ``--gsd``).
    """

    x_m: float
    y_m: float
    source: str = "crs"

    def __post_init__(self):
        for name in ("x_m", "y_m"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise GsdError(f"{name} {v!r}: a ground sample distance must be finite and > 0 m")

    @property
    def m(self) -> float:
        """One scalar: the geometric mean of ``x_m`` and ``y_m`` (the side of a square pixel of
        the same ground area)."""
        return math.sqrt(self.x_m * self.y_m)

    @classmethod
    def given(cls, m: float) -> Gsd:
        """A square pixel of ``m`` metres, as a user states it."""
        return cls(float(m), float(m), "given")


def scene_gsd(ds: rasterio.DatasetReader) -> Gsd | None:
    """The GSD of an open scene from its CRS + transform, else its GCPs; None when it has neither."""
    w, h = ds.width, ds.height
    if ds.crs and not ds.transform.is_identity:
        return gsd_from_transform(ds.crs, ds.transform, w, h)
    gcps, gcp_crs = ds.gcps
    if gcps and gcp_crs:
        return gsd_from_gcps(gcps, gcp_crs, w, h)
    return None


def gsd_from_gcps(gcps, crs: CRS | str, width: int, height: int) -> Gsd:
    """GSD from ground control points (``rasterio.control.GroundControlPoint``s in ``crs``).

    The affine transform that best fits the GCPs (least squares) stands for the scene's; a
    GCP-only file is georeferenced by a warp that a polynomial fits, so this is its mean GSD.
    """
    if len(gcps) < 3:
        raise GsdError(f"{len(gcps)} GCP(s): at least 3 are needed to fit a transform")
    fitted = rasterio.transform.from_gcps(gcps)
    g = gsd_from_transform(crs, fitted, width, height)
    return Gsd(g.x_m, g.y_m, "gcps")


def gsd_from_transform(crs: CRS | str, transform: Affine, width: int, height: int) -> Gsd:
    """GSD of a ``width``×``height`` px scene with pixel → CRS ``transform``, at its centre."""
    import pyproj

    crs = crs if isinstance(crs, CRS) else CRS.from_user_input(crs)
    if transform.is_degenerate:
        raise GsdError(f"transform {tuple(transform)[:6]}: not invertible (zero-size pixels)")
    pcrs = pyproj.CRS.from_user_input(crs.to_wkt())
    if not (pcrs.is_geographic or pcrs.is_projected):  # engineering/local: its units are all
        _, to_metres = crs.linear_units_factor
        x_m = math.hypot(transform.a, transform.d) * to_metres
        return Gsd(x_m, math.hypot(transform.b, transform.e) * to_metres, "crs")
    geodetic = pcrs.geodetic_crs
    to_geodetic = pyproj.Transformer.from_crs(pcrs, geodetic, always_xy=True)
    rad = geodetic.axis_info[0].unit_conversion_factor  # radians per angle unit
    cx, cy, h = width / 2, height / 2, _STEP_PX / 2
    cols = (cx - h, cx + h, cx, cx)
    rows = (cy, cy, cy - h, cy + h)
    xs, ys = zip(*(transform @ (c, r) for c, r in zip(cols, rows, strict=True)), strict=True)
    lons, lats = to_geodetic.transform(xs, ys)
    lam = [v * rad for v in lons]
    phi = [v * rad for v in lats]
    east, north = _metres_per_radian(geodetic.ellipsoid, (phi[0] + phi[1]) / 2)
    x_m = math.hypot(_wrap(lam[1] - lam[0]) * east, (phi[1] - phi[0]) * north) / _STEP_PX
    y_m = math.hypot(_wrap(lam[3] - lam[2]) * east, (phi[3] - phi[2]) * north) / _STEP_PX
    return Gsd(x_m, y_m, "crs")


_STEP_PX = 8.0
"""Pixels between the points whose lon/lat differences give the GSD (a centred difference:
second-order accurate, and far above the rounding of lon/lat in degrees)."""


def _metres_per_radian(ellipsoid, phi: float) -> tuple[float, float]:
    """Ground metres per radian of longitude (N·cos φ) and of latitude (M) at latitude ``phi``."""
    if not abs(phi) < math.pi / 2:
        raise GsdError(f"scene centre latitude {math.degrees(phi)!r}°: not between the poles")
    a, inv_f = ellipsoid.semi_major_metre, ellipsoid.inverse_flattening
    e2 = (2 - 1 / inv_f) / inv_f if inv_f else 0.0
    w = 1 - e2 * math.sin(phi) ** 2
    meridian = a * (1 - e2) / w**1.5  # M: radius of curvature along the meridian
    normal = a / math.sqrt(w)  # N: radius of curvature in the prime vertical
    return normal * math.cos(phi), meridian


def _wrap(d_lam: float) -> float:
    """A longitude difference in (-π, π]: scenes that straddle the antimeridian stay small."""
    return (d_lam + math.pi) % (2 * math.pi) - math.pi
