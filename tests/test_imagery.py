"""Painted whales through the tiler: invisible seams, and non-8-bit imagery read as 8-bit RGB."""

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.windows import Window

from jobs.detect import DetectConfig, run_detect
from reports.truth import match_centres
from synth.scene import SceneSpec, write_scene
from tests.helpers import px_boxes, read_detections, truth_boxes, untrained_bundle
from tiling.bands import resolve_scaling, select_bands
from tiling.read import read_window


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return untrained_bundle(tmp_path_factory.mktemp("bundle") / "b", seed=3)


def detections(bundle, scene, out, region_size, threshold=0.5):
    config = DetectConfig(
        bundle=str(bundle), out=str(out), scenes=(str(scene),), backend="torch", workers=0,
        region_size=region_size, progress=False, threshold=threshold,
    )  # fmt: skip
    (o,) = run_detect(config)
    assert o.status == "ok", o.error
    t = read_detections(out)
    return px_boxes(t), t["score"].to_numpy()


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    region=st.integers(96, 400),
    offsets=st.lists(st.tuples(st.integers(-3, 3), st.integers(-3, 3)), min_size=2, max_size=4),
)
def test_whales_on_region_borders_are_found_once(trained_bundle, tmp_path_factory, region, offsets):
    """Whales placed exactly on (or a few px off) the region seams: each found exactly once,
    and tiled == one region."""
    root = tmp_path_factory.mktemp("seams")
    core = region // 8 * 8  # the planner aligns cores to the stride
    side = 3 * core + 40
    positions = []
    for i, (dx, dy) in enumerate(offsets):
        k = 1 + i % 2
        positions.append((k * core + dx, (1 + (i // 2) % 2) * core + dy, 45.0 * i))
    scene = root / "seams.tif"
    write_scene(
        scene, SceneSpec(side, side, whale_positions=positions, seed=region, distractors=False)
    )
    ref_boxes, ref_scores = detections(trained_bundle, scene, root / "one", region_size=4096)
    boxes, scores = detections(trained_bundle, scene, root / "tiled", region_size=region)
    match = match_centres(boxes, scores, truth_boxes(scene), radius=16)
    assert match.truths == len(positions)
    assert match.true_positives == len(positions) and match.duplicates == 0, match.line()
    assert boxes.shape == ref_boxes.shape
    np.testing.assert_allclose(boxes, ref_boxes, atol=0.5)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-3)


def _pixels(path, window):
    with rasterio.open(path) as ds:
        bands = select_bands(ds, str(path), None)
        scaling = resolve_scaling(ds, bands, "auto")
        return read_window(ds, str(path), window, bands, scaling)


def test_12_bit_in_16_bit_and_4_band_imagery_read_like_the_8_bit_scene(tmp_path):
    kw = {"whales": 3, "seed": 7}
    rgb = write_scene(tmp_path / "rgb.tif", SceneSpec(600, 500, **kw)).path
    u16 = write_scene(tmp_path / "u16.tif", SceneSpec(600, 500, dtype="uint16", **kw)).path
    nir = write_scene(tmp_path / "nir.tif", SceneSpec(600, 500, bands=4, **kw)).path
    window = Window(-20, 100, 300, 300)  # partly outside: filled and invalid
    ref, ref_valid = _pixels(rgb, window)
    for path, tol in ((u16, 1.0), (nir, 0.0)):
        px, valid = _pixels(path, window)
        assert (valid == ref_valid).all()
        assert np.abs(px - ref).max() <= tol, path
    with rasterio.open(u16) as ds:
        assert resolve_scaling(ds, (1, 2, 3), "auto").gain[0] == pytest.approx(255 / 4095)


def test_explicit_bands_and_scale(tmp_path):
    path = write_scene(tmp_path / "nir.tif", SceneSpec(300, 300, bands=4, whales=1, seed=1)).path
    with rasterio.open(path) as ds:
        assert select_bands(ds, str(path), (3, 2, 1)) == (3, 2, 1)
        with pytest.raises(OSError, match="--bands"):
            select_bands(ds, str(path), (1, 2, 5))
        s = resolve_scaling(ds, (1, 2, 3), "range:0,127.5")
        assert s.gain == (2.0, 2.0, 2.0)


def test_nodata_border_scene_detects_only_on_data(bundle, tmp_path):
    path = write_scene(
        tmp_path / "nd.tif", SceneSpec(700, 700, whales=4, seed=9, nodata_border=True)
    ).path
    boxes, _ = detections(bundle, path, tmp_path / "r", region_size=256, threshold=0.3)
    with rasterio.open(path) as ds:
        mask = ds.dataset_mask()
    assert len(boxes) > 10  # random weights fire all over: the mask has boxes to keep out
    cx = ((boxes[:, 0] + boxes[:, 2]) / 2).astype(int)
    cy = ((boxes[:, 1] + boxes[:, 3]) / 2).astype(int)
    assert (mask[cy, cx] > 0).all()


def _float_scene(path, data, nodata=None):
    from tests.helpers import write_tif

    return write_tif(path, data.astype("float32"), nodata=nodata)


def test_float_reflectance_is_scaled_by_255(tmp_path):
    data = np.random.default_rng(4).random((3, 200, 300))  # reflectance in 0..1
    path = _float_scene(tmp_path / "refl.tif", data)
    with rasterio.open(path) as ds:
        s = resolve_scaling(ds, (1, 2, 3), "auto")
        assert s.offset == (0.0, 0.0, 0.0) and s.gain == pytest.approx((255.0,) * 3)
        px, valid = read_window(ds, str(path), Window(0, 0, 300, 200), (1, 2, 3), s)
    assert valid.all()
    np.testing.assert_allclose(px, data * 255, atol=1e-3)


def test_wide_floats_are_stretched_between_percentiles_of_valid_pixels(tmp_path):
    rng = np.random.default_rng(6)
    data = rng.normal(1000.0, 50.0, (3, 240, 320)) + np.array([0.0, 200.0, 400.0])[:, None, None]
    data[:, :40] = -9999.0  # nodata rows must not drag the low percentile down
    path = _float_scene(tmp_path / "radiance.tif", data, nodata=-9999.0)
    valid = data[:, 40:]
    with rasterio.open(path) as ds:
        auto = resolve_scaling(ds, (1, 2, 3), "auto")
        explicit = resolve_scaling(ds, (3, 2, 1), "percentile:2,98")
    for band in range(3):
        lo, hi = np.percentile(valid[band], [0.1, 99.9])
        assert auto.offset[band] == pytest.approx(lo, rel=1e-6)
        assert auto.gain[band] == pytest.approx(255 / (hi - lo), rel=1e-6)
    for i, band in enumerate((2, 1, 0)):  # bands in the order asked for
        lo, hi = np.percentile(valid[band], [2, 98])
        assert explicit.offset[i] == pytest.approx(lo, rel=1e-6)
        assert explicit.gain[i] == pytest.approx(255 / (hi - lo), rel=1e-6)
    raw = np.array([[[lo - 10, lo, (lo + hi) / 2, hi, hi + 10]]] * 3, np.float32)
    out = explicit.apply(raw)
    np.testing.assert_allclose(out[2, 0], [0, 0, 127.5, 255, 255], atol=1e-2)  # i = 2: lo, hi
