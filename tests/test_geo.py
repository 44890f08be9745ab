"""tiling.geo: pixel boxes → map → lon/lat, checked against pyproj and exact affine arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio.transform
from affine import Affine
from pyproj import Transformer

from tiling.geo import (
    box_corners,
    boxes_to_lonlat_polygons,
    boxes_to_map,
    crs_string,
    to_lonlat,
)

# UTM 19N, 0.5 m pixels, north-up, upper-left corner at (400000, 4640000).
UTM19N = "EPSG:32619"
NORTH_UP = Affine(0.5, 0.0, 400000.0, 0.0, -0.5, 4640000.0)


def pyproj_lonlat(xs, ys, crs=UTM19N):
    """Independent reference: pyproj with x=lon order forced."""
    return Transformer.from_crs(crs, "OGC:CRS84", always_xy=True).transform(xs, ys)


def test_pixel_integer_is_upper_left_corner_and_centre_is_half_pixel():
    # Pixel (0, 0) as a box: its map envelope starts exactly at the transform origin.
    m = boxes_to_map(NORTH_UP, np.array([[0.0, 0.0, 1.0, 1.0]]))
    np.testing.assert_array_equal(m, [[400000.0, 4639999.5, 400000.5, 4640000.0]])
    # The pixel (3, 2) as a box equals rasterio's corners with offset="ul" ...
    m = boxes_to_map(NORTH_UP, np.array([[3.0, 2.0, 4.0, 3.0]]))
    ul = rasterio.transform.xy(NORTH_UP, 2, 3, offset="ul")
    lr = rasterio.transform.xy(NORTH_UP, 3, 4, offset="ul")
    np.testing.assert_array_equal(m[0], [ul[0], lr[1], lr[0], ul[1]])
    # ... and its centre is rasterio's default offset="center" of pixel (3, 2): +0.5 px.
    cx, cy = rasterio.transform.xy(NORTH_UP, 2, 3)  # offset="center"
    assert (m[0, 0] + m[0, 2]) / 2 == cx == 400000.0 + 3.5 * 0.5
    assert (m[0, 1] + m[0, 3]) / 2 == cy == 4640000.0 - 2.5 * 0.5


def test_boxes_to_map_north_up_exact():
    px = np.array([[10.0, 20.0, 60.0, 70.5], [0.25, 0.0, 1.75, 8.0]])
    m = boxes_to_map(NORTH_UP, px)
    expected = np.array(
        [
            [400000 + 10 * 0.5, 4640000 - 70.5 * 0.5, 400000 + 60 * 0.5, 4640000 - 20 * 0.5],
            [400000 + 0.25 * 0.5, 4640000 - 8 * 0.5, 400000 + 1.75 * 0.5, 4640000.0],
        ]
    )
    np.testing.assert_array_equal(m, expected)
    assert boxes_to_map(NORTH_UP, np.zeros((0, 4))).shape == (0, 4)


@pytest.mark.parametrize(
    "transform",
    [
        Affine(0.5, 0.0, 100.0, 0.0, 0.5, 200.0),  # south-up (positive pixel height)
        Affine(-0.5, 0.0, 100.0, 0.0, -0.5, 200.0),  # mirrored in x
        Affine.translation(100.0, 200.0) @ Affine.rotation(30.0) @ Affine.scale(0.5, -0.5),
    ],
    ids=["south-up", "mirrored", "rotated"],
)
def test_boxes_to_map_flipped_or_rotated_is_corner_envelope(transform):
    px = np.array([[2.0, 3.0, 12.0, 7.0]])
    m = boxes_to_map(transform, px)
    corners = [transform @ (c, r) for c, r in [(2, 3), (12, 3), (12, 7), (2, 7)]]
    xs, ys = zip(*corners, strict=True)
    np.testing.assert_allclose(m[0], [min(xs), min(ys), max(xs), max(ys)], rtol=0, atol=1e-9)
    assert m[0, 0] < m[0, 2] and m[0, 1] < m[0, 3]


def test_to_lonlat_utm19n_matches_pyproj_and_is_lon_first():
    xs = np.array([400000.0, 500000.0])
    ys = np.array([4640000.0, 4640000.0])
    lon, lat = to_lonlat(UTM19N, xs, ys)
    ref_lon, ref_lat = pyproj_lonlat(xs, ys)
    np.testing.assert_allclose(lon, ref_lon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(lat, ref_lat, rtol=0, atol=1e-9)
    assert -70.3 < lon[0] < -70.1 and 41.8 < lat[0] < 42.0  # x is lon (west of Boston)
    assert lon[1] == pytest.approx(-69.0, abs=1e-9)  # central meridian of zone 19
    # Shape is preserved; empty in → empty out.
    lon2, lat2 = to_lonlat(UTM19N, xs.reshape(2, 1), ys.reshape(2, 1))
    assert lon2.shape == (2, 1)
    assert to_lonlat(UTM19N, np.zeros(0), np.zeros(0))[0].shape == (0,)


def test_boxes_to_lonlat_polygons_corners_centre_and_orientation():
    px = np.array([[10.0, 20.0, 60.0, 70.0], [500.0, 400.0, 550.0, 450.0]])
    ll = boxes_to_lonlat_polygons(UTM19N, NORTH_UP, px)
    assert ll.corner_lon.shape == ll.corner_lat.shape == (2, 4)
    cols, rows = box_corners(px)
    mx, my = NORTH_UP @ (cols, rows)
    ref_lon, ref_lat = pyproj_lonlat(mx.ravel(), my.ravel())
    # Same corner set (the ring may be reversed for counterclockwise orientation).
    got = {
        (round(a, 10), round(b, 10))
        for a, b in zip(ll.corner_lon.ravel(), ll.corner_lat.ravel(), strict=True)
    }
    ref = {(round(a, 10), round(b, 10)) for a, b in zip(ref_lon, ref_lat, strict=True)}
    assert got == ref
    # Centre = pixel-space centre transformed.
    cx, cy = NORTH_UP @ ((px[:, 0] + px[:, 2]) / 2, (px[:, 1] + px[:, 3]) / 2)
    ref_clon, ref_clat = pyproj_lonlat(cx, cy)
    np.testing.assert_allclose(ll.lon, ref_clon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ll.lat, ref_clat, rtol=0, atol=1e-9)
    # Counterclockwise (positive shoelace area) for north-up and mirrored transforms alike.
    for t in (NORTH_UP, Affine(-0.5, 0.0, 400000.0, 0.0, -0.5, 4640000.0)):
        ll = boxes_to_lonlat_polygons(UTM19N, t, px)
        x, y = ll.corner_lon, ll.corner_lat
        area2 = np.sum(x * np.roll(y, -1, 1) - np.roll(x, -1, 1) * y, axis=1)
        assert np.all(area2 > 0)


def test_crs_string_and_bad_input():
    from rasterio.crs import CRS

    assert crs_string(CRS.from_epsg(32619)) == "EPSG:32619"
    assert crs_string(32619) == "EPSG:32619"
    assert crs_string(None) is None
    with pytest.raises(ValueError, match="not-a-crs"):
        crs_string("not-a-crs")
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        boxes_to_map(NORTH_UP, np.zeros((3, 3)))
