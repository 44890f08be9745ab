"""Detection end to end in-process (--workers 0): tiling invisible, FCN == sliding, bad inputs."""

import numpy as np
import pytest

from jobs.detect import DetectConfig, run_detect
from tests.helpers import (
    noise_scene,
    read_detections,
    read_scene_rows,
    untrained_bundle,
    write_tif,
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return untrained_bundle(tmp_path_factory.mktemp("bundle") / "b")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return noise_scene(tmp_path_factory.mktemp("scene") / "noise.tif", 700, 500)


def detect(bundle, scenes, out, **kw):
    kw.setdefault("backend", "torch")
    config = DetectConfig(
        bundle=str(bundle), out=str(out), scenes=tuple(map(str, scenes)), workers=0,
        progress=False, **kw,
    )  # fmt: skip
    return run_detect(config)


def boxes_scores(reports):
    t = read_detections(reports)
    boxes = np.stack([t[c].to_numpy() for c in ("px_xmin", "px_ymin", "px_xmax", "px_ymax")], 1)
    return boxes, t["score"].to_numpy()


@pytest.mark.parametrize("region_size", [64, 136, 200])
def test_tiling_is_invisible(bundle, scene, tmp_path, region_size):
    detect(bundle, [scene], tmp_path / "one", region_size=4096)
    detect(bundle, [scene], tmp_path / "tiled", region_size=region_size)
    ref_boxes, ref_scores = boxes_scores(tmp_path / "one")
    boxes, scores = boxes_scores(tmp_path / "tiled")
    assert len(ref_boxes) > 20  # random weights on noise fire often: a real comparison
    np.testing.assert_allclose(boxes, ref_boxes, atol=0.5)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-3)


def test_fcn_equals_sliding_window_at_the_network_stride(bundle, scene, tmp_path):
    detect(bundle, [scene], tmp_path / "fcn", mode="fcn", region_size=300)
    detect(bundle, [scene], tmp_path / "sliding", mode="sliding", stride=8, region_size=300)
    fb, fs = boxes_scores(tmp_path / "fcn")
    sb, ss = boxes_scores(tmp_path / "sliding")
    np.testing.assert_allclose(sb, fb, atol=1e-3)
    np.testing.assert_allclose(ss, fs, atol=1e-4)


def test_rerun_rewrites_the_same_files(bundle, scene, tmp_path):
    detect(bundle, [scene], tmp_path / "r")
    first = sorted(p.relative_to(tmp_path) for p in (tmp_path / "r").rglob("*.parquet"))
    detect(bundle, [scene], tmp_path / "r")
    again = sorted(p.relative_to(tmp_path) for p in (tmp_path / "r").rglob("*.parquet"))
    assert first == again and len(first) == 2
    ids = read_detections(tmp_path / "r")["detection_id"].to_pylist()
    assert len(ids) == len(set(ids))


def test_bad_scenes_fail_with_reasons_and_the_rest_still_run(bundle, scene, tmp_path):
    missing = tmp_path / "missing.tif"
    text = tmp_path / "notes.tif"
    text.write_text("not an image")
    tiny = write_tif(tmp_path / "tiny.tif", np.full((3, 40, 40), 9, "uint8"))
    gray = write_tif(tmp_path / "gray.tif", np.full((1, 100, 100), 9, "uint8"))
    whole = noise_scene(tmp_path / "whole.tif", 600, 600, seed=3)
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])

    outcomes = detect(bundle, [missing, text, tiny, gray, truncated, scene], tmp_path / "r")
    by_uri = {o.uri: o for o in outcomes}
    assert by_uri[str(scene)].status == "ok"
    expected = {
        missing: "No such file",
        text: "not a readable raster",
        tiny: "smaller than one 64 px window",
        gray: "1 band(s), expected 3",
        truncated: "read failed",
    }
    for path, reason in expected.items():
        o = by_uri[str(path)]
        assert o.status == "failed" and reason in o.error and str(path) in o.error
    rows = read_scene_rows(tmp_path / "r").to_pylist()
    status = {r["scene_uri"]: r["status"] for r in rows}
    assert status == {str(p): "failed" for p in expected} | {str(scene): "ok"}


def test_nodata_and_outside_never_hold_detections(bundle, tmp_path):
    rng = np.random.default_rng(5)
    data = (rng.random((3, 400, 400)) * 254 + 1).astype("uint8")
    data[:, :, :200] = 0  # left half is nodata
    path = write_tif(tmp_path / "nodata.tif", data, nodata=0)
    detect(bundle, [path], tmp_path / "r", region_size=128)
    boxes, _ = boxes_scores(tmp_path / "r")
    assert len(boxes) > 0
    centres = (boxes[:, 0] + boxes[:, 2]) / 2
    assert centres.min() >= 200


def test_scene_without_crs_keeps_pixel_columns(bundle, tmp_path):
    rng = np.random.default_rng(1)
    path = write_tif(
        tmp_path / "nocrs.tif", (rng.random((3, 300, 300)) * 255).astype("uint8"), crs=None
    )
    detect(bundle, [path], tmp_path / "r")
    t = read_detections(tmp_path / "r")
    assert t.num_rows > 0
    assert t["px_xmin"].null_count == 0
    assert t["lon"].null_count == t.num_rows and t["geometry"].null_count == t.num_rows


def test_config_names_the_bad_field():
    with pytest.raises(ValueError, match="threshold"):
        DetectConfig(bundle="b", out="o", threshold=1.5)
    with pytest.raises(ValueError, match="--scale"):
        DetectConfig(bundle="b", out="o", scale="gamma:2")


def test_detections_are_geoparquet_on_the_scene(bundle, scene, tmp_path):
    import duckdb
    import geopandas as gpd
    import rasterio
    from rasterio.warp import transform_bounds

    detect(bundle, [scene], tmp_path / "r")
    files = sorted((tmp_path / "r" / "detections").rglob("*.parquet"))
    gdf = gpd.read_parquet(files[0])
    assert gdf.crs.is_geographic and len(gdf) > 0
    with rasterio.open(scene) as ds:
        west, south, east, north = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    assert gdf["lon"].between(west, east).all() and gdf["lat"].between(south, north).all()
    centroids = gdf.geometry.centroid
    assert abs(centroids.x - gdf["lon"]).max() < 1e-6 and abs(centroids.y - gdf["lat"]).max() < 1e-6
    glob = str(tmp_path / "r" / "detections" / "**" / "*.parquet")
    ((n,),) = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true) WHERE dt IS NOT NULL"
    ).fetchall()
    assert n == len(gdf)


def _cli(*args):
    from click.testing import CliRunner

    from jobs.detect import detect as detect_cli

    return CliRunner().invoke(detect_cli, [str(a) for a in args])


def test_cli_runs_a_real_scene(bundle, scene, tmp_path):
    ok = _cli(
        bundle,
        scene,
        "--out",
        tmp_path / "r",
        "--workers",
        0,
        "--no-progress",
        "--backend",
        "torch",
    )
    assert ok.exit_code == 0, ok.output
    assert "1/1 scene(s) ok" in ok.output
    assert read_detections(tmp_path / "r").num_rows > 0


def test_cli_draws_a_progress_bar_only_when_asked(bundle, scene, tmp_path):
    """CliRunner's stderr is no terminal: no bar by default (job logs stay readable)."""
    args = [bundle, scene, "--workers", 0, "--backend", "torch"]
    plain = _cli(*args, "--out", tmp_path / "a")
    shown = _cli(*args, "--out", tmp_path / "b", "--progress")
    quiet = _cli(
        *args, "--out", tmp_path / "c", "--progress", "--quiet"
    )  # the old flag still works
    assert plain.exit_code == shown.exit_code == quiet.exit_code == 0, plain.output + shown.output
    assert "region" in shown.stderr and "MP/s" in shown.stderr
    assert "region" not in plain.stderr and "region" not in quiet.stderr


@pytest.mark.parametrize(
    "option,value,named",
    [
        ("--threshold", "1.5", "threshold"),
        ("--region-size", "32", "region_size"),
        ("--scale", "gamma:2", "--scale"),
        ("--bands", "r,g,b", "band numbers"),
        ("--mode", "tiles", "--mode"),
        ("--workers", "-1", "workers"),
        ("--stride", "0", "stride"),
        ("--stride", "4", "--mode fcn scores at the bundle's output stride"),
        ("--backend", "tflite", "--backend"),
    ],
)
def test_cli_rejects_bad_option_values_before_any_work(
    bundle, scene, tmp_path, option, value, named
):
    res = _cli(bundle, scene, "--out", tmp_path / "r", option, value)
    assert res.exit_code == 2, res.output
    (error,) = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert named in error and value.lstrip("-") in error
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert not (tmp_path / "r").exists()


def _not_a_bundle(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.tar").write_text("not a tar")
    return tmp_path / "empty", tmp_path / "notes.tar"


def test_cli_names_a_missing_or_wrong_bundle_in_one_line(bundle, scene, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    (broken / "bundle.json").write_text("{not json")
    empty, not_tar = _not_a_bundle(tmp_path)
    cases = {
        tmp_path / "nope": "no such model bundle",
        empty: "bundle has no bundle.json",
        not_tar: "not a bundle directory or .tar",
        broken: "not valid JSON",
    }
    for path, reason in cases.items():
        res = _cli(path, scene, "--out", tmp_path / "r", "--workers", 0)
        assert res.exit_code == 1, res.output
        assert res.output.count("\n") == 1 and res.output.startswith("Error: "), res.output
        assert reason in res.output and str(path) in res.output
        assert isinstance(res.exception, SystemExit)  # a message, not a traceback


def test_cli_exits_1_when_a_scene_fails(bundle, scene, tmp_path):
    res = _cli(bundle, scene, tmp_path / "missing.tif", "--out", tmp_path / "r", "--workers", 0,
               "--no-progress", "--backend", "torch")  # fmt: skip
    assert res.exit_code == 1, res.output
    assert "1/2 scene(s) ok" in res.output
