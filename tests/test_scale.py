"""Scale-aware detection: bundles know their GSD, scenes are scored at it, boxes come back native."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import rasterio
from affine import Affine

from models.bundle import BundleError, load_bundle, update_manifest
from models.data import ChipDataError, read_dataset
from tests.helpers import UTM19N as UTM
from tests.helpers import untrained_bundle, write_tif

# --- the GSD a bundle is trained at ---


def test_bundle_records_gsd_and_old_bundles_load_without_it(tmp_path):
    path = untrained_bundle(tmp_path / "b")
    manifest = json.loads((path / "bundle.json").read_text())
    manifest.pop("gsd_m", None)  # as bundles written before gsd_m existed
    (path / "bundle.json").write_text(json.dumps(manifest))
    assert load_bundle(path).gsd_m is None
    update_manifest(load_bundle(path), gsd_m=0.05)
    assert load_bundle(path).gsd_m == 0.05
    manifest["gsd_m"] = -0.1
    (path / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="gsd_m -0.1"):
        load_bundle(path)


def _chips(root, meta: dict | None):
    from tests.test_train import write_chips

    write_chips(root, 4, 2)
    if meta is not None:
        (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_training_gsd_is_the_flag_else_dataset_json_else_unknown(tmp_path, caplog):
    from jobs.train_classifier import TrainConfig, training_gsd

    with_meta = read_dataset(_chips(tmp_path / "a", {"gsd_m": 0.03, "face_size_px": 100}))
    without = read_dataset(_chips(tmp_path / "b", None))
    assert with_meta.gsd_m == 0.03 and without.gsd_m is None
    cfg = TrainConfig(data=tmp_path / "a", out=tmp_path / "o")
    assert training_gsd(cfg, with_meta) == 0.03
    flag = TrainConfig(data=tmp_path / "a", out=tmp_path / "o", gsd_m=0.07)
    assert training_gsd(flag, with_meta) == 0.07 and training_gsd(flag, without) == 0.07
    with caplog.at_level(logging.WARNING, logger="jobs.train_classifier"):
        assert training_gsd(cfg, without) is None
    assert "native pixels" in caplog.text
    with pytest.raises(ValueError, match="gsd_m"):
        TrainConfig(data=tmp_path / "a", out=tmp_path / "o", gsd_m=0.0)


def test_dataset_json_with_a_bad_gsd_is_named(tmp_path):
    root = _chips(tmp_path / "c", {"gsd_m": "fine"})
    with pytest.raises(ChipDataError, match="gsd_m 'fine'"):
        read_dataset(root)


def test_train_cli_rejects_a_bad_gsd(tmp_path):
    from click.testing import CliRunner

    from jobs.train import train

    root = _chips(tmp_path / "d", None)
    res = CliRunner().invoke(train, [str(root), "--out", str(tmp_path / "o"), "--gsd", "-1"])
    assert res.exit_code == 2 and "gsd_m" in res.output


# --- detection at the bundle's GSD ---


def _detect(bundle, scenes, out, **kw):
    from jobs.detect import DetectConfig, run_detect

    config = DetectConfig(
        bundle=str(bundle), out=str(out), scenes=tuple(map(str, scenes)), workers=0,
        progress=False, backend="torch", **kw,
    )  # fmt: skip
    return run_detect(config)


def _boxes(reports):
    from tests.helpers import read_detections

    t = read_detections(reports)
    cols = ("px_xmin", "px_ymin", "px_xmax", "px_ymax")
    return np.stack([t[c].to_numpy() for c in cols], 1), t["score"].to_numpy()


def _write(path, data, gsd_m: float | None):
    if gsd_m is None:
        return write_tif(path, data, crs=None)
    return write_tif(path, data, UTM, transform=Affine(gsd_m, 0, 4e5, 0, -gsd_m, 4.6e6))


@pytest.fixture(scope="module")
def bundle_5cm(tmp_path_factory):
    path = untrained_bundle(tmp_path_factory.mktemp("b5") / "b", seed=0)
    return update_manifest(load_bundle(path), gsd_m=0.05).path


@pytest.fixture(scope="module")
def scene_3cm(tmp_path_factory):
    rng = np.random.default_rng(33)
    coarse = rng.random((3, 125, 175)) * 255  # 4×4 px blobs: texture that survives resampling
    data = np.kron(coarse, np.ones((1, 4, 4))).astype("uint8")
    return _write(tmp_path_factory.mktemp("s3") / "noise_3cm.tif", data, 0.03)


@pytest.mark.parametrize("region_size", [64, 200])
def test_tiling_is_invisible_at_a_non_unit_scale(bundle_5cm, scene_3cm, tmp_path, region_size):
    (one,) = _detect(bundle_5cm, [scene_3cm], tmp_path / "one", region_size=4096)
    (tiled,) = _detect(bundle_5cm, [scene_3cm], tmp_path / "tiled", region_size=region_size)
    assert one.px_scale == pytest.approx(0.05 / 0.03, rel=1e-3) and one.gsd_m == pytest.approx(
        0.03, rel=1e-3
    )
    ref_boxes, ref_scores = _boxes(tmp_path / "one")
    boxes, scores = _boxes(tmp_path / "tiled")
    assert len(ref_boxes) > 10  # random weights on noise fire often: a real comparison
    np.testing.assert_allclose(boxes, ref_boxes, atol=1e-6)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


def test_boxes_come_back_in_native_pixels(bundle_5cm, scene_3cm, tmp_path):
    """Scoring a 3 cm scene at 5 cm == scoring its 5 cm resampling natively, boxes × 5/3."""
    from tiling.resample import ScoredView
    from tiling.sampling import scene_sampling

    with rasterio.open(scene_3cm) as ds:
        sampling = scene_sampling(ds, str(scene_3cm), 0.05)
        view = ScoredView(ds, sampling.grid)
        at_5cm = view.reader.read([1, 2, 3])
        view.close()
    resampled = _write(tmp_path / "noise_5cm.tif", at_5cm, 0.05)
    (o,) = _detect(bundle_5cm, [resampled], tmp_path / "ref")
    assert o.px_scale == 1.0  # already at the bundle's GSD: scored natively
    _detect(bundle_5cm, [scene_3cm], tmp_path / "scaled")
    f, grid = sampling.grid.fx, sampling.grid
    # Past the edge both reads take the scene's median colour, which resampling shifts a little:
    # compare boxes whose windows and centroid neighbourhoods (64 px at 5 cm: the centroid spans
    # the peak radius + 1 cells) lie inside the scene.
    ref_boxes, ref_scores = _inside(*_boxes(tmp_path / "ref"), grid.width, grid.height, 1.0)
    boxes, scores = _inside(*_boxes(tmp_path / "scaled"), grid.width, grid.height, f)
    assert len(ref_boxes) > 10
    np.testing.assert_allclose(boxes, ref_boxes * f, atol=1e-5)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-6)
    # a box is the bundle's box size at 5 cm: 5/3 as many 3 cm pixels
    sides = boxes[:, 2] - boxes[:, 0]
    np.testing.assert_allclose(sides, load_bundle(bundle_5cm).box_size_px * f)


def _inside(boxes, scores, width: int, height: int, f: float, margin: float = 64.0):
    """The boxes (and scores) whose centres, in 5 cm px (÷ ``f``), are ``margin`` px inside."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / (2 * f), (boxes[:, 1] + boxes[:, 3]) / (2 * f)
    keep = (cx >= margin) & (cy >= margin) & (cx <= width - margin) & (cy <= height - margin)
    return boxes[keep], scores[keep]


def test_gsd_flag_stands_in_for_missing_georeferencing(bundle_5cm, scene_3cm, tmp_path, caplog):
    with rasterio.open(scene_3cm) as ds:
        bare = _write(tmp_path / "bare.tif", ds.read(), None)
    with caplog.at_level(logging.WARNING, logger="tiling.sampling"):
        (native,) = _detect(bundle_5cm, [bare], tmp_path / "native")
    assert native.px_scale == 1.0 and native.gsd_m is None
    assert "no georeferencing" in caplog.text and "--gsd" in caplog.text
    (geo,) = _detect(bundle_5cm, [scene_3cm], tmp_path / "geo")
    (given,) = _detect(bundle_5cm, [bare], tmp_path / "given", gsd=geo.gsd_m)
    assert given.px_scale == pytest.approx(geo.px_scale, rel=1e-12)
    assert given.gsd_m == geo.gsd_m == pytest.approx(0.03, rel=1e-3)
    np.testing.assert_allclose(
        _boxes(tmp_path / "given")[0], _boxes(tmp_path / "geo")[0], atol=1e-3
    )


def test_a_bundle_without_gsd_scores_native_pixels_and_says_so_once(scene_3cm, tmp_path, caplog):
    bundle = untrained_bundle(tmp_path / "old", seed=0)
    with caplog.at_level(logging.WARNING, logger="jobs.detect"):
        outcomes = _detect(bundle, [scene_3cm, scene_3cm], tmp_path / "r")
    assert [o.px_scale for o in outcomes] == [1.0, 1.0]
    assert caplog.text.count("records no ground sample distance") == 1


def test_a_scene_smaller_than_a_window_at_the_gsd_fails_with_the_reason(bundle_5cm, tmp_path):
    data = np.full(
        (3, 100, 100), 50, "uint8"
    )  # 100 px at 3 cm: 61 px at 5 cm (the last one partial) < 64
    small = _write(tmp_path / "small.tif", data, 0.03)
    (o,) = _detect(bundle_5cm, [small], tmp_path / "r")
    assert o.status == "failed" and "61×61 px (at 0.05 m/px)" in o.error


# --- the same painted whales at 3 and 8 cm, found by a bundle at 5 cm ---

RECALL, PRECISION = 0.85, 0.6  # as tests/test_recall.py asks of the same bundle at native scale


@pytest.fixture(scope="module")
def trained_5cm(trained_bundle, tmp_path_factory):
    """The session's trained bundle (chips at synth's default look: 32 px faces), declared to be
    at 5 cm per pixel: its 32 px faces are then 1.6 m, and scenes must be scored at 5 cm."""
    import shutil

    path = tmp_path_factory.mktemp("t5") / "bundle"
    shutil.copytree(trained_bundle, path)
    return update_manifest(load_bundle(path), gsd_m=0.05).path


@pytest.fixture(scope="module")
def painted_5cm(tmp_path_factory):
    from synth.regsd import write_at_gsd
    from synth.scene import SceneSpec, write_scene

    root = tmp_path_factory.mktemp("painted")
    src = write_scene(root / "src.tif", SceneSpec(900, 800, whales=8, seed=4242)).path
    # the painted pixels as they are, said to be 5 cm (a no-op resampling but for the transform)
    return write_at_gsd(src, root / "at5cm.tif", 0.05, src_gsd_m=0.05)


@pytest.mark.parametrize("gsd", [0.03, 0.08])
def test_trained_bundle_finds_whales_flown_at_another_gsd(trained_5cm, painted_5cm, tmp_path, gsd):
    from reports.truth import match_centres
    from synth.regsd import write_at_gsd
    from tests.helpers import px_boxes, read_detections, truth_boxes

    scene = write_at_gsd(painted_5cm, tmp_path / f"at{gsd}.tif", gsd)
    with rasterio.open(scene) as ds:
        assert ds.transform.a == gsd  # really written at that GSD
    (o,) = _detect(trained_5cm, [scene], tmp_path / "r", region_size=320)
    assert o.status == "ok", o.error
    assert o.px_scale == pytest.approx(0.05 / gsd, rel=2e-3)
    det, truth = read_detections(tmp_path / "r"), truth_boxes(scene)
    assert len(truth) >= 6
    boxes = px_boxes(det)
    match = match_centres(boxes, det["score"].to_numpy(), truth, radius=16 * 0.05 / gsd)
    assert match.recall >= RECALL and match.precision >= PRECISION, match.line()
    assert match.duplicates == 0, match.line()
    # boxes in native px: the bundle's 32 px face at 5 cm is 53 px at 3 cm, 20 px at 8 cm
    np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], 32 * o.px_scale, rtol=1e-6)
    truth_sides = truth[:, 2] - truth[:, 0]
    assert np.median(truth_sides) == pytest.approx(32 * 0.05 / gsd, rel=0.15)


def test_scored_at_native_pixels_the_same_whales_are_missed(trained_bundle, painted_5cm, tmp_path):
    """The control: a bundle that does not know its GSD scores a 3 cm scene's 53 px faces with
    its 32 px eye and misses most of them — what scale-aware detection fixes."""
    from reports.truth import match_centres
    from synth.regsd import write_at_gsd
    from tests.helpers import px_boxes, read_detections, truth_boxes

    scene = write_at_gsd(painted_5cm, tmp_path / "at3cm.tif", 0.03)
    (o,) = _detect(trained_bundle, [scene], tmp_path / "r", region_size=320)
    assert o.px_scale == 1.0
    det = read_detections(tmp_path / "r")
    match = match_centres(px_boxes(det), det["score"].to_numpy(), truth_boxes(scene), radius=27)
    assert match.f1 < 0.8, match.line()


def test_scenes_table_records_gsd_and_scale(bundle_5cm, scene_3cm, tmp_path):
    import duckdb

    from tests.helpers import read_scene_rows

    missing = tmp_path / "missing.tif"
    _detect(bundle_5cm, [scene_3cm, missing], tmp_path / "r")
    untrained = untrained_bundle(tmp_path / "old", seed=2)  # other weights: another scene key
    _detect(untrained, [scene_3cm], tmp_path / "r")
    rows = {(r["scene_uri"], r["model_sha256"] == load_bundle(untrained).weights_sha256): r
            for r in read_scene_rows(tmp_path / "r").to_pylist()}  # fmt: skip
    scaled, native = rows[str(scene_3cm), False], rows[str(scene_3cm), True]
    assert scaled["gsd_m"] == native["gsd_m"] == pytest.approx(0.03, rel=1e-3)
    assert scaled["px_scale"] == pytest.approx(0.05 / 0.03, rel=1e-3)
    assert native["px_scale"] == 1.0  # the bundle records no GSD: native pixels
    failed = rows[str(missing), False]
    assert failed["status"] == "failed" and failed["gsd_m"] is None and failed["px_scale"] is None
    glob = str(tmp_path / "r" / "scenes" / "**" / "*.parquet")
    ((n,),) = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{glob}', union_by_name = true) WHERE px_scale > 1.5"
    ).fetchall()
    assert n == 1


def test_detect_cli_reports_the_scale(bundle_5cm, scene_3cm, tmp_path):
    from click.testing import CliRunner

    from jobs.detect import detect as detect_cli

    args = [
        str(bundle_5cm),
        str(scene_3cm),
        "--out",
        str(tmp_path / "r"),
        "--workers",
        "0",
        "--backend",
        "torch",
        "--progress",
    ]  # fmt: skip (--progress: per-scene lines)
    res = CliRunner().invoke(detect_cli, args)
    assert res.exit_code == 0, res.output
    assert "GSD 3.0 cm/px, scored at ×0.60" in res.output
    bad = CliRunner().invoke(detect_cli, [*args, "--gsd", "0"])
    assert bad.exit_code == 2 and "gsd" in bad.output
