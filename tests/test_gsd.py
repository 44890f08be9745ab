"""tiling.gsd: ground sample distance against an independent reference — pyproj Geod distances
between points a few pixels apart, each pixel taken to lon/lat by pyproj."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Geod, Transformer
from rasterio.control import GroundControlPoint

from tiling.gsd import Gsd, GsdError, gsd_from_gcps, gsd_from_transform, scene_gsd

W, H = 4000, 3000
GEOD = Geod(ellps="WGS84")


def geod_reference(crs, transform: Affine, width=W, height=H, n=4.0) -> tuple[float, float]:
    """Ground metres per column and per row step: Geod length of ``n`` steps across the centre."""
    to_lonlat = Transformer.from_crs(crs, "OGC:CRS84", always_xy=True)
    cx, cy = width / 2, height / 2

    def ground(dc, dr):
        (x1, y1), (x2, y2) = (
            transform @ (cx - dc / 2, cy - dr / 2),
            transform @ (cx + dc / 2, cy + dr / 2),
        )
        (lon1, lon2), (lat1, lat2) = to_lonlat.transform([x1, x2], [y1, y2])
        return GEOD.inv(lon1, lat1, lon2, lat2)[2] / n

    return ground(n, 0), ground(0, n)


def utm_origin(lat: float, lon: float, epsg: int) -> tuple[float, float]:
    return Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True).transform(lon, lat)


def check(crs, transform, rel=2e-5, **kw):
    got = gsd_from_transform(crs, transform, W, H)
    ref_x, ref_y = geod_reference(crs, transform, **kw)
    assert got.x_m == pytest.approx(ref_x, rel=rel)
    assert got.y_m == pytest.approx(ref_y, rel=rel)
    return got


@pytest.mark.parametrize("lon", [-69.0, -71.5, -66.2])  # on, west of and east of the meridian
def test_utm_metres_are_ground_metres_times_the_point_scale(lon):
    x0, y0 = utm_origin(41.5, lon, 32619)
    got = check("EPSG:32619", Affine(0.05, 0, x0, 0, -0.05, y0))
    # map metres differ from ground metres by UTM's scale factor (0.9996 on the central meridian)
    assert got.x_m == pytest.approx(0.05, rel=2e-3) and got.source == "crs"


@pytest.mark.parametrize("lat", [0.0, 45.0, 70.0, -62.5])
def test_geographic_degrees_become_ground_metres_at_the_scene_latitude(lat):
    deg = 1e-6
    transform = Affine(deg, 0, 10.0, 0, -deg, lat + H / 2 * deg)
    got = check("EPSG:4326", transform)
    # a degree of longitude shrinks with cos(latitude); one of latitude does not
    assert got.x_m / got.y_m == pytest.approx(math.cos(math.radians(lat)), rel=1e-2)


@pytest.mark.parametrize("lat", [0.0, 45.0, 70.0, -55.0])
def test_web_mercator_map_metres_scale_by_cos_latitude(lat):
    x0, y0 = utm_origin(lat, 20.0, 3857)
    transform = Affine(0.1, 0, x0, 0, -0.1, y0 + H / 2 * 0.1)
    got = check("EPSG:3857", transform, rel=1e-4)
    assert got.x_m == pytest.approx(0.1 * math.cos(math.radians(lat)), rel=5e-3)
    # EPSG:3857 applies the sphere's formulas to ellipsoidal latitudes: north ≠ east by M/N
    e2 = 0.00669437999014
    m_over_n = (1 - e2) / (1 - e2 * math.sin(math.radians(lat)) ** 2)
    assert got.y_m / got.x_m == pytest.approx(m_over_n, rel=1e-5)


@pytest.mark.parametrize(
    ("epsg", "foot", "lat", "lon"),
    [
        (2263, 1200 / 3937, 40.75, -73.5),
        (3435, 1200 / 3937, 41.8, -87.9),
        (2222, 0.3048, 33.4, -110.5),
    ],
)
def test_foot_crs_units_become_metres(epsg, foot, lat, lon):
    x0, y0 = utm_origin(lat, lon, epsg)
    transform = Affine(0.25, 0, x0, 0, -0.25, y0)  # a quarter foot per pixel
    got = check(f"EPSG:{epsg}", transform, rel=1e-4)
    assert got.m == pytest.approx(0.25 * foot, rel=1e-3)


@pytest.mark.parametrize("degrees", [30.0, -75.0, 180.0])
def test_rotated_transforms_use_the_pixel_vectors(degrees):
    x0, y0 = utm_origin(-33.9, 18.4, 32734)
    north_up = Affine(0.04, 0, x0, 0, -0.06, y0)
    rotated = Affine.translation(x0, y0) @ Affine.rotation(degrees) @ Affine.scale(0.04, -0.06)
    got = check("EPSG:32734", rotated)
    plain = gsd_from_transform("EPSG:32734", north_up, W, H)
    # rotation keeps the pixel's sides; UTM is conformal, so their ground lengths too
    assert got.x_m == pytest.approx(plain.x_m, rel=1e-3)
    assert got.y_m == pytest.approx(plain.y_m, rel=1e-3)


def test_rotated_geographic_pixels():
    rotated = Affine.translation(-60.0, -45.0) @ Affine.rotation(20.0) @ Affine.scale(1e-6, -1e-6)
    check("EPSG:4326", rotated, rel=1e-4)


def _gcps_from(transform: Affine, width=W, height=H) -> list[GroundControlPoint]:
    pts = [(0, 0), (width, 0), (0, height), (width, height), (width / 3, height / 2)]
    return [GroundControlPoint(row=r, col=c, x=(transform @ (c, r))[0], y=(transform @ (c, r))[1])
            for c, r in pts]  # fmt: skip


@pytest.mark.parametrize(
    ("crs", "transform"),
    [
        ("EPSG:32619", Affine(0.03, 0, 400000, 0, -0.03, 4640000)),
        ("EPSG:4326", Affine(3e-7, 0, -64.0, 0, -3e-7, 44.0)),
        (
            "EPSG:3857",
            Affine.translation(-7e6, 5e6) @ Affine.rotation(12) @ Affine.scale(0.08, -0.08),
        ),
    ],
)
def test_gcp_only_georeferencing(tmp_path, crs, transform):
    path = tmp_path / "gcps.tif"
    gcps = _gcps_from(transform)
    profile = {"driver": "GTiff", "width": W, "height": H, "count": 3, "dtype": "uint8"}
    with rasterio.open(path, "w", **profile, gcps=gcps, crs=crs) as ds:
        ds.write(np.zeros((3, H, W), "uint8"))
    with rasterio.open(path) as ds:
        assert ds.crs is None and ds.gcps[0]  # really GCP-only
        got = scene_gsd(ds)
    ref_x, ref_y = geod_reference(crs, transform)
    assert got.source == "gcps"
    assert got.x_m == pytest.approx(ref_x, rel=1e-4) and got.y_m == pytest.approx(ref_y, rel=1e-4)


def test_scene_gsd_reads_the_file_and_none_without_georeferencing(tmp_path):
    data = np.zeros((3, 64, 80), "uint8")
    profile = {"driver": "GTiff", "width": 80, "height": 64, "count": 3, "dtype": "uint8"}
    geo = tmp_path / "geo.tif"
    transform = Affine(0.08, 0, 500000, 0, -0.08, 0)
    with rasterio.open(geo, "w", **profile, crs="EPSG:32633", transform=transform) as ds:
        ds.write(data)
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", **profile) as ds:
        ds.write(data)
    with rasterio.open(geo) as ds:
        assert scene_gsd(ds) == gsd_from_transform("EPSG:32633", transform, 80, 64)
        assert scene_gsd(ds).m == pytest.approx(
            0.08 / 0.9996, rel=1e-6
        )  # on the equator, central meridian
    with rasterio.open(plain) as ds:
        assert scene_gsd(ds) is None


def test_bad_inputs_name_the_problem():
    with pytest.raises(GsdError, match="x_m"):
        Gsd(0.0, 0.05)
    with pytest.raises(GsdError, match="y_m"):
        Gsd(0.05, float("nan"))
    with pytest.raises(GsdError, match="not invertible"):
        gsd_from_transform("EPSG:32619", Affine(0, 0, 0, 0, 0, 0), 10, 10)
    with pytest.raises(GsdError, match="2 GCP"):
        gsd_from_gcps(_gcps_from(Affine.identity())[:2], "EPSG:4326", 10, 10)
    assert isinstance(GsdError("x"), ValueError)
    assert Gsd.given(0.05) == Gsd(0.05, 0.05, "given")
