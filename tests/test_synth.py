"""synth: deterministic chips and scenes, block-wise writing, truth boxes, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from PIL import Image
from rasterio.enums import ColorInterp

from jobs.synth import synth
from synth.chips import render_chip, write_chips
from synth.draw import FACE_SIZE_PX, GSD_M, face_box, render_window
from synth.noise import grid_noise, hash_uniform
from synth.objects import SceneObject
from synth.placement import HEAD_SPACING
from synth.scene import SceneSpec, overview_factors, plan_scene, render_scene_window, write_scene
from synth.truth import TRUTH_SCHEMA, truth_path

W, H = 1100, 700  # two block columns and two block rows of 512, both ragged


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """The same seed written several ways (each ~0.2 s)."""
    d = tmp_path_factory.mktemp("scenes")
    out = {}
    for name, kwargs in {
        "rgb": {},
        "one_block": {"block": 2048},
        "u16": {"dtype": "uint16"},
        "nir": {"bands": 4},
        "nodata": {"nodata_border": True},
        "nocrs": {"crs": False},
    }.items():
        out[name] = write_scene(d / f"{name}.tif", SceneSpec(W, H, whales=5, seed=11, **kwargs))
    return out


# --- noise and drawing ------------------------------------------------------------------


def test_grid_noise_matches_slow_reference():
    col_off, row_off, cell, seed = 37, 1021, 8, 5
    fast = grid_noise(col_off, row_off, 20, 13, cell, seed)
    slow = np.empty_like(fast)
    for r in range(13):
        for c in range(20):
            x, y = col_off + c, row_off + r
            ix, iy = x // cell, y // cell
            fx, fy = (x % cell) / cell, (y % cell) / cell
            sx, sy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
            v = [
                float(hash_uniform(np.array(ix + i), np.array(iy + j), seed))
                for j in (0, 1)
                for i in (0, 1)
            ]
            top = v[0] + (v[1] - v[0]) * sx
            bottom = v[2] + (v[3] - v[2]) * sx
            slow[r, c] = top + (bottom - top) * sy
    np.testing.assert_allclose(fast, slow, atol=1e-6)


def test_window_is_a_slice_of_the_whole_even_through_objects():
    whale = SceneObject("whale", 100.3, 64.0, 70.0, 1.05, seed=3)  # straddles every cut below
    boat = SceneObject("boat", 40.0, 90.0, 200.0, 1.0, seed=4)
    whole = render_window(0, 0, 200, 130, [boat, whale], water_seed=9, channels=4)
    for c0, r0, c1, r1 in [
        (0, 0, 101, 61),
        (101, 0, 200, 61),
        (0, 61, 77, 130),
        (77, 61, 200, 130),
    ]:
        part = render_window(c0, r0, c1 - c0, r1 - r0, [boat, whale], water_seed=9, channels=4)
        np.testing.assert_array_equal(part, whole[:, r0:r1, c0:c1])


def test_face_box_size_and_rotation():
    up = face_box(SceneObject("whale", 50.0, 50.0, 0.0, 1.0))
    assert up[3] - up[1] == pytest.approx(FACE_SIZE_PX)  # long axis along the rows
    assert up[2] - up[0] < FACE_SIZE_PX
    right = face_box(SceneObject("whale", 50.0, 50.0, 90.0, 1.1))
    assert right[2] - right[0] == pytest.approx(FACE_SIZE_PX * 1.1)
    assert (right[0] + right[2]) / 2 == pytest.approx(50.0)
    with pytest.raises(ValueError, match="kind"):
        face_box(SceneObject("body", 50.0, 50.0, 0.0))


# --- chips ------------------------------------------------------------------------------


def test_chips_layout_counts_and_metadata(tmp_path):
    summary = write_chips(tmp_path, n=12, size=48, seed=1, val_fraction=0.25)
    counts = {
        (split, cls): len(list((tmp_path / split / cls).glob("*.png")))
        for split in ("train", "val")
        for cls in ("face", "not_face")
    }
    assert counts == {
        ("train", "face"): 6,
        ("train", "not_face"): 6,
        ("val", "face"): 2,
        ("val", "not_face"): 2,
    }
    assert (summary.n_train, summary.n_val, summary.n_val_face) == (12, 4, 2)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta == {
        "chip_size": 48,
        "face_size_px": FACE_SIZE_PX,
        "gsd_m": GSD_M,
        "seed": 1,
        "n_train": 12,
        "n_val": 4,
        "generator": "whalescan.synth",
        "source": "whalescan.synth chips seed=1 n=12 size=48 val_fraction=0.25",
    }
    with Image.open(next((tmp_path / "train" / "face").glob("*.png"))) as im:
        assert (im.size, im.mode) == ((48, 48), "RGB")
    # a rerun with fewer chips leaves no stale files behind
    write_chips(tmp_path, n=4, size=48, seed=1, val_fraction=0.0)
    assert len(list((tmp_path / "train").rglob("*.png"))) == 4
    assert not list((tmp_path / "val").rglob("*.png"))


def test_chips_are_deterministic_per_seed(tmp_path):
    def pngs(seed, name):
        write_chips(tmp_path / name, n=6, size=32, seed=seed, val_fraction=0.25)
        return {
            p.relative_to(tmp_path / name): p.read_bytes()
            for p in sorted((tmp_path / name).rglob("*.png"))
        }

    a, b, c = pngs(7, "a"), pngs(7, "b"), pngs(8, "c")
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


@pytest.mark.parametrize("size", [31, 257, 64.0, True])
def test_chip_size_is_validated(tmp_path, size):
    with pytest.raises(ValueError, match="size"):
        write_chips(tmp_path, n=4, size=size)


def test_face_chip_shows_callosities_at_the_centre():
    """Faces: a dark head with bright patches in the middle of the chip."""

    def centre_contrast(index):
        grey = render_chip(64, 3, "train", index, face=True).astype(int).sum(axis=2) / 3
        centre = grey[20:44, 20:44]
        return centre.min() < 40 and centre.max() > 100

    assert sum(centre_contrast(i) for i in range(0, 40, 2)) >= 17  # of 20


# --- scenes -----------------------------------------------------------------------------


def test_scene_is_tiled_compressed_with_overviews_and_georeferenced(scenes):
    with rasterio.open(scenes["rgb"].path) as ds:
        assert ds.profile["tiled"] and ds.block_shapes == [(512, 512)] * 3
        assert ds.compression.value in ("ZSTD", "DEFLATE")
        assert ds.overviews(1) == [2, 4] == overview_factors(W, H)
        assert ds.colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        assert ds.crs.to_epsg() == 32619
        assert ds.transform == Affine(0.1, 0.0, 400000.0, 0.0, -0.1, 4640000.0)
        assert ds.dtypes == ("uint8",) * 3 and ds.nodata is None
        data = ds.read()
    assert data.min() >= 1


def test_overview_factors():
    assert overview_factors(8192, 8192) == [2, 4, 8, 16, 32]
    assert overview_factors(512, 100) == [2]
    assert overview_factors(500, 500) == []


def test_blockwise_file_equals_one_block_and_whole_render(scenes):
    blockwise = _read(scenes["rgb"].path)
    np.testing.assert_array_equal(blockwise, _read(scenes["one_block"].path))
    plan = plan_scene(SceneSpec(W, H, whales=5, seed=11))
    np.testing.assert_array_equal(blockwise, render_scene_window(plan, 0, 0, W, H))
    np.testing.assert_array_equal(
        blockwise[:, 480:700, 450:1000], render_scene_window(plan, 450, 480, 550, 220)
    )


def test_scenes_are_deterministic_per_seed(scenes, tmp_path):
    again = write_scene(tmp_path / "again.tif", SceneSpec(W, H, whales=5, seed=11))
    np.testing.assert_array_equal(_read(again.path), _read(scenes["rgb"].path))
    assert pq.read_table(again.truth_path).equals(pq.read_table(scenes["rgb"].truth_path))
    other = write_scene(tmp_path / "other.tif", SceneSpec(W, H, whales=5, seed=12))
    assert not np.array_equal(_read(other.path), _read(again.path))


def test_uint16_is_uint8_times_16(scenes):
    with rasterio.open(scenes["u16"].path) as ds:
        assert ds.dtypes == ("uint16",) * 3 and ds.tags()["data_bits"] == "12"
        u16 = ds.read()
    np.testing.assert_array_equal(u16, _read(scenes["rgb"].path).astype(np.uint16) * 16)


def test_four_bands_add_nir_where_water_is_dark(scenes):
    with rasterio.open(scenes["nir"].path) as ds:
        assert ds.count == 4 and ds.descriptions == ("red", "green", "blue", "nir")
        assert ds.colorinterp[3] != ColorInterp.alpha
        data = ds.read()
    np.testing.assert_array_equal(data[:3], _read(scenes["rgb"].path))
    nir, red = data[3].astype(int), data[0].astype(int)
    water_nir = np.median(nir)
    assert water_nir < 20 and water_nir < np.median(red)
    truth = pq.read_table(scenes["nir"].truth_path).to_pylist()
    for row in truth:  # callosities are bright in NIR too
        box = nir[
            math.floor(row["px_ymin"]) : math.ceil(row["px_ymax"]),
            math.floor(row["px_xmin"]) : math.ceil(row["px_xmax"]),
        ]
        assert box.max() > 3 * water_nir


def test_nodata_border(scenes):
    with rasterio.open(scenes["nodata"].path) as ds:
        assert ds.nodata == 0
        mask = ds.dataset_mask()
        data = ds.read()
    invalid = mask == 0
    assert invalid[0, 0] and invalid[:, 0].all() and invalid[0, :].all()  # left and top edges
    assert not invalid[H - 1, W - 1] and 0.02 < invalid.mean() < 0.3
    assert (data[:, invalid] == 0).all() and (data[:, ~invalid] >= 1).all()
    assert not (data[:, ~invalid] == 0).any()
    # the boundary is ragged, not a straight line
    first_valid = invalid[300:600].argmin(axis=1)
    assert len(np.unique(np.diff(first_valid))) > 2
    for row in pq.read_table(scenes["nodata"].truth_path).to_pylist():
        box = invalid[
            math.floor(row["px_ymin"]) : math.ceil(row["px_ymax"]),
            math.floor(row["px_xmin"]) : math.ceil(row["px_xmax"]),
        ]
        assert not box.any()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_no_crs(scenes):
    with rasterio.open(scenes["nocrs"].path) as ds:
        assert ds.crs is None and ds.transform == Affine.identity()
    truth = pq.read_table(scenes["nocrs"].truth_path)
    assert truth.column("lon").null_count == truth.num_rows == scenes["nocrs"].n_faces
    np.testing.assert_array_equal(_read(scenes["nocrs"].path), _read(scenes["rgb"].path))


def test_truth_boxes_hold_painted_heads(scenes):
    summary = scenes["rgb"]
    assert (
        summary.truth_path
        == truth_path(summary.path)
        == summary.path.with_name("rgb.truth.parquet")
    )
    table = pq.read_table(summary.truth_path)
    assert table.schema.equals(TRUTH_SCHEMA)
    assert TRUTH_SCHEMA.names[:4] == ["px_xmin", "px_ymin", "px_xmax", "px_ymax"]
    assert table.num_rows == summary.n_faces == 5
    grey = _read(summary.path).astype(int).sum(axis=0) / 3
    for row in table.to_pylist():
        assert (
            0 <= row["px_xmin"] < row["px_xmax"] <= W and 0 <= row["px_ymin"] < row["px_ymax"] <= H
        )
        assert row["px_cx"] == pytest.approx((row["px_xmin"] + row["px_xmax"]) / 2)
        box = grey[
            math.floor(row["px_ymin"]) : math.ceil(row["px_ymax"]),
            math.floor(row["px_xmin"]) : math.ceil(row["px_xmax"]),
        ]
        assert box.min() < 30 and box.max() > 100  # dark head, bright callosities
        assert 41.88 < row["lat"] < 41.92 and -70.22 < row["lon"] < -70.19


def test_placement_rules_hold_in_a_crowded_scene():
    plan = plan_scene(SceneSpec(2048, 2048, whales=40, seed=2))
    faces = plan.faces
    assert len(faces) == 40
    xy = np.array([(f.cx, f.cy) for f in faces])
    gaps = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
    assert gaps[~np.eye(len(xy), dtype=bool)].min() >= HEAD_SPACING
    boxes = np.array([face_box(f) for f in faces])
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 2048).all()
    others = [o for o in plan.objects if o.kind != "whale"]
    assert {"foam", "debris", "body", "flukes"} <= {o.kind for o in others}
    oxy = np.array([(o.cx, o.cy) for o in others])
    assert np.hypot(*(xy[:, None] - oxy[None]).transpose(2, 0, 1)).min() >= HEAD_SPACING


def test_too_many_whales_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="whales=400"):
        plan_scene(SceneSpec(256, 256, whales=400, seed=0))


def test_whale_positions_are_honoured(tmp_path):
    positions = [(512.0, 200.0, 90.0), (100.0, 100.0, 0.0), (700.0, 383.0, 225.0)]
    summary = write_scene(
        tmp_path / "placed.tif",
        SceneSpec(800, 400, seed=3, whale_positions=positions, distractors=False),
    )
    rows = pq.read_table(summary.truth_path).to_pylist()
    assert [(r["px_cx"], r["px_cy"], r["heading_deg"]) for r in rows] == positions
    up = rows[1]
    assert up["px_ymax"] - up["px_ymin"] == pytest.approx(FACE_SIZE_PX)
    with pytest.raises(ValueError, match=r"whale_positions\[0\]"):
        write_scene(tmp_path / "bad.tif", SceneSpec(800, 400, whale_positions=[(5.0, 200.0, 90.0)]))


def test_scene_arguments_are_validated(tmp_path):
    for kwargs, name in [
        ({"dtype": "float32"}, "dtype"),
        ({"bands": 2}, "bands"),
        ({"width": 10}, "width"),
        ({"block": 8}, "block"),
    ]:
        args = {"width": 256, "height": 256, **kwargs}
        with pytest.raises(ValueError, match=name):
            write_scene(tmp_path / "x.tif", SceneSpec(**args))


# --- CLI --------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_cli_chips_and_scene(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        synth,
        [
            "chips",
            str(tmp_path / "chips"),
            "--n",
            "4",
            "--size",
            "32",
            "--seed",
            "2",
            "--val-fraction",
            "0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "4 train" in result.output and "4 val" in result.output
    result = runner.invoke(
        synth,
        [
            "scene",
            str(tmp_path / "s.tif"),
            "--width",
            "300",
            "--height",
            "200",
            "--whales",
            "1",
            "--seed",
            "1",
            "--dtype",
            "uint16",
            "--bands",
            "4",
            "--nodata-border",
            "--no-crs",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 faces" in result.output and (tmp_path / "s.truth.parquet").exists()
    with rasterio.open(tmp_path / "s.tif") as ds:
        assert (ds.count, ds.dtypes[0], ds.nodata, ds.crs) == (4, "uint16", 0, None)
    result = runner.invoke(synth, ["chips", str(tmp_path / "bad"), "--size", "16"])
    assert result.exit_code != 0 and "size" in result.output
