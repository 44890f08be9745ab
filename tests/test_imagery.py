"""Painted whales through the tiler: invisible seams, and non-8-bit imagery read as 8-bit RGB."""

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.windows import Window

from jobs.detect import DetectConfig, run_detect
from synth.scene import SceneSpec, write_scene
from tests.helpers import read_detections, untrained_bundle
from tiling.bands import resolve_scaling, select_bands
from tiling.read import read_window


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return untrained_bundle(tmp_path_factory.mktemp("bundle") / "b", seed=3)


def detections(bundle, scene, out, region_size):
    config = DetectConfig(
        bundle=str(bundle), out=str(out), scenes=(str(scene),), backend="torch", workers=0,
        region_size=region_size, progress=False, threshold=0.3,
    )  # fmt: skip
    (o,) = run_detect(config)
    assert o.status == "ok", o.error
    t = read_detections(out)
    return np.stack([t[c].to_numpy() for c in ("px_xmin", "px_ymin", "px_xmax", "px_ymax")], 1), t[
        "score"
    ].to_numpy()


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    region=st.integers(96, 400),
    offsets=st.lists(st.tuples(st.integers(-3, 3), st.integers(-3, 3)), min_size=2, max_size=4),
)
def test_whales_on_region_borders_are_found_once(bundle, tmp_path_factory, region, offsets):
    """Whales placed exactly on (or a few px off) the region seams: tiled == one region."""
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
    ref_boxes, ref_scores = detections(bundle, scene, root / "one", region_size=4096)
    assert len(ref_boxes) > 0
    boxes, scores = detections(bundle, scene, root / "tiled", region_size=region)
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
    boxes, _ = detections(bundle, path, tmp_path / "r", region_size=256)
    with rasterio.open(path) as ds:
        mask = ds.dataset_mask()
    cx = ((boxes[:, 0] + boxes[:, 2]) / 2).astype(int)
    cy = ((boxes[:, 1] + boxes[:, 3]) / 2).astype(int)
    assert (mask[cy, cx] > 0).all()
