"""tiling.resample: the scored grid at a GSD, and reads on it that tile invisibly on every flavour."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.control import GroundControlPoint
from rasterio.enums import Resampling
from rasterio.windows import Window

from tests.helpers import write_tif
from tiling.bands import resolve_scaling
from tiling.gsd import Gsd
from tiling.read import read_window
from tiling.resample import ScoredGrid, ScoredView, candidate_overviews, plan_grid

UTM = "EPSG:32619"
THREE_CM = Affine(0.03, 0, 4e5, 0, -0.03, 4.6e6)


def write(path, data, transform=THREE_CM, crs=UTM, **profile):
    return write_tif(path, data, crs, transform=transform, **profile)


def noise(width, height, seed=0, dtype="uint8"):
    rng = np.random.default_rng(seed)
    return (rng.random((3, height, width)) * 200 + 30).astype(dtype)


def read(view: ScoredView, window: Window, bands=(1, 2, 3)):
    scaling = resolve_scaling(view.reader, bands, "none")
    return read_window(view.reader, "scene", window, bands, scaling)


# --- planning ---


def test_plan_grid_native_when_unknown_or_close():
    assert plan_grid(1000, 800, None, 0.1).is_native
    assert plan_grid(1000, 800, Gsd(0.1, 0.1), None).is_native
    # UTM's 0.9996 scale factor must not resample a 10 cm scene for a 10 cm model
    assert plan_grid(1000, 800, Gsd(0.10004, 0.10004), 0.1).is_native
    assert plan_grid(1000, 800, Gsd(0.1012, 0.0984), 0.1).is_native  # EPSG:4326's 1-2 %
    assert not plan_grid(1000, 800, Gsd(0.094, 0.1), 0.1).is_native


@pytest.mark.parametrize(("gsd", "target"), [(0.03, 0.1), (0.08, 0.05), (0.05, 0.05 * 1.7)])
def test_plan_grid_scales_and_covers_the_scene(gsd, target):
    g = plan_grid(1001, 777, Gsd(gsd, gsd), target)
    assert g.fx == g.fy == pytest.approx(target / gsd) and g.overview is None
    # the last scored pixel reaches the native edge, the one before does not
    assert (g.width - 1) * g.fx < 1001 <= g.width * g.fx
    assert (g.height - 1) * g.fy < 777 <= g.height * g.fy
    assert g.scale == pytest.approx(target / gsd)


def test_plan_grid_anisotropic_pixels_become_square_on_the_ground():
    g = plan_grid(900, 900, Gsd(0.02, 0.06), 0.06)  # e.g. EPSG:4326 degree pixels at 70°N
    assert (g.fx, g.fy, g.width, g.height) == (pytest.approx(3.0), 1.0, 300, 900)


def test_plan_grid_takes_a_matching_overview():
    overviews = {0: (501, 389), 1: (251, 195)}
    g = plan_grid(1001, 777, Gsd(0.05, 0.05), 0.1, overviews)
    assert (g.overview, g.width, g.height) == (0, 501, 389)
    assert g.fx == pytest.approx(1001 / 501)
    # between overviews: resampled from the coarsest one finer than the grid (as gdalwarp does)
    g = plan_grid(1001, 777, Gsd(0.05, 0.05), 0.13, overviews)
    assert (g.overview, g.width, g.height) == (0, 385, 299)
    assert g.source_scale == pytest.approx((2.6 / (1001 / 501), 2.6 / (777 / 389)))
    # finer than every overview: from the scene
    assert plan_grid(1001, 777, Gsd(0.05, 0.05), 0.08, overviews).overview is None


def test_to_native_scales_boxes():
    g = ScoredGrid(2.5, 1.25, 10, 10)
    np.testing.assert_array_equal(g.to_native(np.array([[4, 8, 6, 16]])), [[10, 10, 15, 20]])
    with pytest.raises(ValueError, match="fx"):
        ScoredGrid(0.0, 1.0, 10, 10)


# --- reads ---


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write(tmp_path_factory.mktemp("rs") / "noise.tif", noise(1003, 777))


@pytest.fixture(scope="module")
def scene_with_overviews(tmp_path_factory):
    path = write(tmp_path_factory.mktemp("rs") / "ovr.tif", noise(1003, 777, seed=1))
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2, 4], Resampling.average)
    return path


@pytest.mark.parametrize(("which", "f"), [("plain", 10 / 3), ("plain", 0.625), ("plain", 1.7),
                                          ("overviews", 3.0), ("overviews", 9.0)])  # fmt: skip
def test_region_reads_equal_the_whole_grid(scene, scene_with_overviews, which, f):
    """Any window of the scored grid (inside, across or past the edges) reads the same pixels as
    one read of the whole grid: what keeps tiled == untiled at any scale."""
    path = scene if which == "plain" else scene_with_overviews
    with rasterio.open(path) as ds:
        gsd = Gsd(0.03, 0.03)
        grid = plan_grid(ds.width, ds.height, gsd, 0.03 * f, candidate_overviews(ds, gsd, 0.03 * f))
        assert grid.overview == {"plain": None, "overviews": 0 if f < 4 else 1}[which]
        view = ScoredView(ds, grid)
        margin = 40
        whole, whole_valid = read(view, Window(-margin, -margin, grid.width + 2 * margin,
                                               grid.height + 2 * margin))  # fmt: skip
        # valid wherever the scored pixel's centre lies in the scene (enlarging, the last
        # column or row of the grid may sample past the edge: invalid, not the warp's zeros)
        cols = (np.arange(grid.width) + 0.5) * grid.fx < ds.width
        rows = (np.arange(grid.height) + 0.5) * grid.fy < ds.height
        inside = rows[:, None] & cols[None, :] if f < 1 else np.ones_like(rows[:, None] & cols)
        np.testing.assert_array_equal(whole_valid[margin:-margin, margin:-margin], inside)
        rng = np.random.default_rng(int(f * 100))
        for _ in range(6):
            c, r = (int(v) for v in rng.integers(-margin, [grid.width, grid.height]))
            w, h = (int(v) for v in rng.integers(8, 200, 2))
            w, h = min(w, grid.width + margin - c), min(h, grid.height + margin - r)
            px, valid = read(view, Window(c, r, w, h))
            sl = np.s_[r + margin : r + margin + h, c + margin : c + margin + w]
            np.testing.assert_array_equal(px, whole[(slice(None), *sl)])
            np.testing.assert_array_equal(valid, whole_valid[sl])
        view.close()


def test_shrinking_averages_the_native_pixels(tmp_path):
    data = noise(300, 200, seed=4).astype("float32")
    path = write(tmp_path / "f.tif", data)
    with rasterio.open(path) as ds:
        view = ScoredView(ds, plan_grid(300, 200, Gsd(0.05, 0.05), 0.15))
        px, valid = read(view, Window(0, 0, 100, 67))
    ref = data[:, :198, :].reshape(3, 66, 3, 100, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(px[:, :66], ref, rtol=1e-5)
    assert valid.all()


@pytest.mark.parametrize("f", [0.7, 0.45])
def test_enlarging_leaves_no_dark_edge_past_the_scene(tmp_path, f):
    """The grid's last column and row sample past the scene: invalid there, never valid zeros."""
    data = noise(300, 200, seed=5)  # 30..230 everywhere
    path = write(tmp_path / "n.tif", data)
    with rasterio.open(path) as ds:
        grid = plan_grid(300, 200, Gsd(0.05, 0.05), 0.05 * f)
        view = ScoredView(ds, grid)
        px, ok = read(view, Window(grid.width - 8, grid.height - 8, 8, 8))
        view.close()
    assert ok[:6, :6].all()
    assert (px[:, ok] >= 25).all(), px[0]


@pytest.mark.parametrize("flavour", ["nodata", "alpha", "mask", "float_nan", "uint16_mask"])
def test_invalid_pixels_stay_invalid_at_scale(tmp_path, flavour):
    data = noise(400, 300, seed=2)
    valid = np.ones((300, 400), bool)
    valid[:, :100] = False
    path = tmp_path / f"{flavour}.tif"
    if flavour == "nodata":
        write(path, data * valid, nodata=0)
    elif flavour == "alpha":
        rgba = np.concatenate([data, (valid * 255).astype("uint8")[None]])
        write(path, rgba, photometric="RGB", alpha="YES")
    elif flavour in ("mask", "uint16_mask"):
        d = data if flavour == "mask" else data.astype("uint16") * 16
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(write(path, d), "r+") as ds:
            ds.write_mask(valid)
    else:
        f32 = data.astype("float32") / 255
        f32[:, ~valid] = np.nan
        write(path, f32, nodata=float("nan"))
    with rasterio.open(path) as ds:
        view = ScoredView(ds, plan_grid(400, 300, Gsd(0.04, 0.04), 0.1))  # 2.5 px → 1
        px, ok = read(view, Window(0, 0, 160, 120))
    assert not ok[:, :40].any() and ok[:, 40:].all()
    scale = 255 if flavour == "float_nan" else 1 / 16 if flavour == "uint16_mask" else 1
    assert np.isfinite(px[:, ok]).all()  # (what invalid pixels hold is tiling.read's business)
    assert px[:, ok].mean() * scale == pytest.approx(130, rel=0.05)  # averaged noise of mean 130


def test_georeferencing_does_not_change_the_scored_pixels(tmp_path):
    data = noise(320, 240, seed=6)
    north_up = write(tmp_path / "n.tif", data)
    rotated = write(
        tmp_path / "r.tif", data, transform=Affine.rotation(30) @ Affine.scale(0.03, -0.03)
    )
    gcps = [GroundControlPoint(row=r, col=c, x=4e5 + c * 0.03, y=4.6e6 - r * 0.03)
            for c, r in ((0, 0), (320, 0), (0, 240), (320, 240))]  # fmt: skip
    gcp_only = tmp_path / "g.tif"
    with rasterio.open(gcp_only, "w", driver="GTiff", width=320, height=240, count=3,
                       dtype="uint8", gcps=gcps, crs=UTM) as ds:  # fmt: skip
        ds.write(data)
    bare = write(tmp_path / "b.tif", data, crs=None)
    reads = []
    for path in (north_up, rotated, gcp_only, bare):
        with rasterio.open(path) as ds:
            view = ScoredView(ds, plan_grid(320, 240, Gsd(0.03, 0.03), 0.08))
            reads.append(read(view, Window(-5, -5, 130, 100))[0])
    for other in reads[1:]:
        np.testing.assert_array_equal(other, reads[0])


def test_matching_overviews_are_read_as_they_are(tmp_path):
    path = write(tmp_path / "cog.tif", noise(1001, 777, seed=8))
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2, 4], Resampling.nearest)  # nearest: unlike what a warp would give
    with rasterio.open(path) as ds:
        gsd = Gsd(0.05, 0.05)
        grid = plan_grid(ds.width, ds.height, gsd, 0.2, candidate_overviews(ds, gsd, 0.2))
        assert grid.overview == 1
        view = ScoredView(ds, grid)
        px, valid = read(view, Window(0, 0, grid.width, grid.height))
    with rasterio.open(path, overview_level=1) as ov:
        np.testing.assert_array_equal(px, ov.read().astype("float32"))
    assert valid.all()


@settings(max_examples=25, deadline=None)
@given(f=st.floats(0.3, 6.0), w=st.integers(64, 5000), h=st.integers(64, 5000))
def test_scored_grid_covers_exactly_the_scene(f, w, h):
    g = plan_grid(w, h, Gsd(0.05, 0.05), 0.05 * f)
    if g.is_native:
        assert abs(f - 1) <= 0.0500001
        return
    right, bottom = g.to_native(np.array([[0, 0, g.width, g.height]]))[0, 2:]
    assert w <= right < w + g.fx and h <= bottom < h + g.fy
