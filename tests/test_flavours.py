"""Every GeoTIFF a survey delivers, detected with no flags: one painted scene in many file flavours.

Each flavour is the same pixels (south-up: flipped) written the way other software writes
orthomosaics: JPEG/YCbCr, COG with an internal mask and overviews, RGBA, 12-bit in uint16
(packed NBITS=12 or not), float32 reflectance with NaN nodata, striped, band-interleaved,
BigTIFF, EPSG:4326, Web Mercator, US survey feet, south-up, rotated, GCP-only. For each: the
scene is ok, every whale is found, nothing else is, and each detection's lon/lat is what the
file's own georeferencing (GDAL's GCP transformer for GCP-only files) gives for its centre, within
a centimetre, and within half a face of the true centre's.
"""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as pads
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from pyproj import Geod
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.warp import transform as warp_points

from jobs.detect import DetectConfig, run_detect
from synth.scene import SceneSpec, write_scene
from tests.helpers import read_scene_rows
from tiling.bands import metadata_bits, resolve_scaling
from tiling.geo import scene_georef

W, H = 448, 384
WHALES = [(120.0, 110.0, 30.0), (300.0, 250.0, 200.0), (350.0, 90.0, 120.0)]  # (cx, cy, heading)
GSD = 0.10  # m per pixel in every flavour
UTM = CRS.from_epsg(32619)
UL = (400000.0, 4640000.0)  # upper-left corner, UTM 19N (Cape Cod Bay)
UTM_T = Affine(GSD, 0, UL[0], 0, -GSD, UL[1])
GEOREF_M = 0.01  # a detection's lon/lat vs the file's own georeferencing of its pixel centre
FOUND_PX = 16  # a face is found by a detection whose centre is within half a face of it


@pytest.fixture(scope="module")
def painted(tmp_path_factory):
    """(3, H, W) uint8 pixels of one scene of whales, no distractors, and the face centres (px)."""
    path = tmp_path_factory.mktemp("painted") / "base.tif"
    write_scene(path, SceneSpec(W, H, whale_positions=WHALES, seed=4711, distractors=False))
    with rasterio.open(path) as ds:
        return ds.read(), np.array([(x, y) for x, y, _ in WHALES])


def _write(path, data, *, crs=UTM, transform=UTM_T, gcps=None, **profile):
    count, height, width = data.shape
    geo = {} if gcps else {"crs": crs, "transform": transform}
    kw = {"driver": "GTiff", "width": width, "height": height, "count": count}
    kw.update(dtype=data.dtype, **geo, **profile)
    with rasterio.open(path, "w", **kw) as ds:
        ds.write(data)
        if gcps:
            ds.gcps = (gcps, UTM)
    return path


def _crs_transform(crs: CRS) -> Affine:
    """A north-up transform in ``crs`` whose pixels are ~GSD m on the ground at the scene."""
    (x0,), (y0,) = warp_points(UTM, crs, [UL[0]], [UL[1]])
    (x1,), (y1,) = warp_points(UTM, crs, [UL[0] + W * GSD], [UL[1] - H * GSD])
    return Affine((x1 - x0) / W, 0, x0, 0, (y1 - y0) / H, y0)


def _flavours(tmp, data):
    """name → (path, pixel-centre flip) for every flavour; flip: rows counted from the bottom."""
    rgb = data
    u12 = data.astype(np.uint16) * 16  # 16..4080: 12-bit data
    refl = (data / 255.0).astype(np.float32)
    refl[:, :, -24:] = np.nan  # a NaN nodata strip, away from the whales
    alpha = np.full((1, H, W), 255, np.uint8)
    alpha[:, -20:, :] = 0
    f = {}
    f["jpeg_ycbcr"] = _write(tmp / "jpeg.tif", rgb, compress="jpeg", photometric="ycbcr",
                             jpeg_quality=92, tiled=True, blockxsize=128, blockysize=128)  # fmt: skip
    f["cog_mask_overviews"] = _cog(tmp, rgb)
    rgba = _write(tmp / "rgba.tif", np.concatenate([rgb, alpha]), photometric="rgb")
    with rasterio.open(rgba, "r+") as ds:
        ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    f["rgba"] = rgba
    f["uint16_nbits12_packed"] = _write(tmp / "nbits.tif", u12, nbits=12)
    f["uint16_12bit"] = _write(tmp / "u12.tif", u12)
    f["float32_nan"] = _write(tmp / "refl.tif", refl, nodata=float("nan"))
    f["striped"] = _write(tmp / "striped.tif", rgb, tiled=False, interleave="pixel")
    f["band_interleaved"] = _write(tmp / "band.tif", rgb, tiled=False, interleave="band")
    f["bigtiff"] = _write(tmp / "big.tif", rgb, bigtiff="yes", tiled=True)
    for name, epsg in (("epsg4326", 4326), ("web_mercator", 3857), ("us_feet", 2249)):
        crs = CRS.from_epsg(epsg)
        f[name] = _write(tmp / f"{name}.tif", rgb, crs=crs, transform=_crs_transform(crs))
    f["south_up"] = _write(tmp / "south.tif", rgb[:, ::-1, :].copy(),
                           transform=Affine(GSD, 0, UL[0], 0, GSD, UL[1] - H * GSD))  # fmt: skip
    turn = Affine.rotation(25.0)
    f["rotated"] = _write(tmp / "rot.tif", rgb, transform=Affine.translation(*UL) @ turn
                          @ Affine.scale(GSD, -GSD))  # fmt: skip
    corners = [(0, 0), (W, 0), (W, H), (0, H), (W / 2, H / 2)]
    gcps = [GroundControlPoint(r, c, *(UTM_T @ (c, r))) for c, r in corners]
    f["gcp_only"] = _write(tmp / "gcp.tif", rgb, gcps=gcps)
    return {name: (path, name == "south_up") for name, path in f.items()}


def _cog(tmp, rgb):
    """A Cloud-Optimized GeoTIFF with an internal mask (a strip masked out) and overviews."""
    src = tmp / "masked.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        _write(src, rgb, tiled=True)
        with rasterio.open(src, "r+") as ds:
            mask = np.full((H, W), 255, np.uint8)
            mask[:, :18] = 0
            ds.write_mask(mask)
    dst = tmp / "cog.tif"
    rasterio.shutil.copy(
        src, dst, driver="COG", compress="deflate", blocksize=128, overview_resampling="average"
    )
    with rasterio.open(dst) as ds:
        assert ds.overviews(1) and ds.driver == "GTiff"
        assert ds.dataset_mask()[:, :18].max() == 0  # the mask survived
    return dst


def _expected_lonlat(path, centres):
    """The file's own georeferencing of pixel centres: geotransform, else GDAL's GCP transformer."""
    with rasterio.open(path) as ds:
        if ds.crs:
            crs, ref = ds.crs, ds.transform
        else:
            ref, crs = ds.gcps
    xs, ys = rasterio.transform.xy(ref, centres[:, 1], centres[:, 0], offset="ul")
    lon, lat = warp_points(crs, CRS.from_epsg(4326), xs, ys)
    return np.array(lon), np.array(lat)


@pytest.fixture(scope="module")
def detected(trained, painted, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flavours")
    flavours = _flavours(tmp, painted[0])
    scenes = tuple(str(path) for path, _ in flavours.values())
    config = DetectConfig(bundle=str(trained), out=str(tmp / "reports"), scenes=scenes,
                          workers=0, progress=False)  # fmt: skip
    outcomes = {o.uri: o for o in run_detect(config)}
    return flavours, outcomes, tmp / "reports"


FLAVOURS = [
    "jpeg_ycbcr", "cog_mask_overviews", "rgba", "uint16_nbits12_packed", "uint16_12bit",
    "float32_nan", "striped", "band_interleaved", "bigtiff", "epsg4326", "web_mercator",
    "us_feet", "south_up", "rotated", "gcp_only",
]  # fmt: skip


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_flavour_detects_every_whale_at_its_true_lonlat(detected, painted, flavour):
    flavours, outcomes, reports = detected
    path, flipped = flavours[flavour]
    outcome = outcomes[str(path)]
    assert outcome.status == "ok", outcome.error
    table = pads.dataset(outcome.detections_path, format="parquet").to_table()
    boxes = np.stack([table[c].to_numpy() for c in ("px_xmin", "px_ymin", "px_xmax", "px_ymax")], 1)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    truth = painted[1].astype(float)
    if flipped:
        truth[:, 1] = H - truth[:, 1]
    dist = np.hypot(*(centres[:, None, :] - truth[None]).transpose(2, 0, 1))
    missed, extra = dist.min(axis=0) > FOUND_PX, dist.min(axis=1) > FOUND_PX
    assert not missed.any(), f"{flavour}: missed {truth[missed]}"
    assert not extra.any(), f"{flavour}: false alarms {centres[extra]}"
    assert len(centres) == len(truth)
    lon, lat = table["lon"].to_numpy(), table["lat"].to_numpy()
    assert np.isfinite(lon).all() and np.isfinite(lat).all()
    geod = Geod(ellps="WGS84")
    want_lon, want_lat = _expected_lonlat(path, centres)
    _, _, off = geod.inv(lon, lat, want_lon, want_lat)
    assert off.max() <= GEOREF_M, f"{flavour}: lon/lat {off.max():.4f} m from the file's own"
    true_lon, true_lat = _expected_lonlat(path, truth[dist.argmin(axis=1)])
    _, _, off = geod.inv(lon, lat, true_lon, true_lat)
    assert off.max() <= FOUND_PX * GSD + GEOREF_M, f"{flavour}: {off.max():.2f} m from the face"


def test_every_flavour_is_in_the_scenes_table_as_ok(detected):
    flavours, _, reports = detected
    rows = read_scene_rows(reports).to_pylist()
    status = {r["scene_uri"]: r["status"] for r in rows}
    assert {str(p) for p, _ in flavours.values()} <= set(status)
    assert all(status[str(p)] == "ok" for p, _ in flavours.values())


def test_bit_depth_comes_from_the_files_metadata_before_its_content(tmp_path):
    """A dark 12-bit scene (all values < 1024) would pass for 10-bit by its content."""
    dark = (np.arange(3 * 64 * 64).reshape(3, 64, 64) % 1000).astype(np.uint16)
    tagged = _write(tmp_path / "tagged.tif", dark, nbits=12)
    untagged = _write(tmp_path / "untagged.tif", dark)
    with rasterio.open(tagged) as ds:
        assert metadata_bits(ds, (1, 2, 3)) == 12
        assert resolve_scaling(ds, (1, 2, 3), "auto").gain[0] == pytest.approx(255 / 4095)
    with rasterio.open(untagged) as ds:
        assert metadata_bits(ds, (1, 2, 3)) is None
        assert resolve_scaling(ds, (1, 2, 3), "auto").gain[0] == pytest.approx(255 / 1023)


def test_a_file_that_cannot_be_used_is_a_failed_row_naming_why(trained, painted, tmp_path):
    two_band = _write(tmp_path / "two.tif", painted[0][:2])
    corners = [(0, 0), (W, 0), (W, H), (0, H)]
    warped = [GroundControlPoint(r, c, *(UTM_T @ (c, r))) for c, r in corners]
    warped[2] = GroundControlPoint(H, W, warped[2].x + 2.0, warped[2].y)  # 20 px off the affine
    warped_gcps = _write(tmp_path / "warped.tif", painted[0], gcps=warped)
    ungeoreferenced_ok = tmp_path / "plain.tif"
    with rasterio.open(
        ungeoreferenced_ok, "w", driver="GTiff", width=W, height=H, count=3, dtype="uint8"
    ) as ds:
        ds.write(painted[0])
    config = DetectConfig(bundle=str(trained), out=str(tmp_path / "r"),
                          scenes=(str(two_band), str(warped_gcps), str(ungeoreferenced_ok)),
                          workers=0, progress=False)  # fmt: skip
    by_uri = {o.uri: o for o in run_detect(config)}
    assert by_uri[str(two_band)].status == "failed"
    assert "2 band(s)" in by_uri[str(two_band)].error
    assert by_uri[str(warped_gcps)].status == "failed"
    assert "px from the best affine fit" in by_uri[str(warped_gcps)].error
    assert by_uri[str(ungeoreferenced_ok)].status == "ok"  # pixel boxes only, no lon/lat
    assert by_uri[str(ungeoreferenced_ok)].detections == len(WHALES)


@pytest.mark.parametrize(
    ("points", "reason"),
    [
        ([(0, 0), (W, 0)], "at least 3"),
        ([(0, 0), (W / 2, H / 2), (W, H)], "fix no affine"),  # collinear
    ],
)
def test_gcps_that_fix_no_affine_are_refused_by_name(painted, tmp_path, points, reason):
    gcps = [GroundControlPoint(r, c, *(UTM_T @ (c, r))) for c, r in points]
    path = _write(tmp_path / "few.tif", painted[0], gcps=gcps)
    with rasterio.open(path) as ds, pytest.raises(ValueError, match=reason):
        scene_georef(ds)
