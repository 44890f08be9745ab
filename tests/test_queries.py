"""reports/queries/*.sql run as written by DuckDB on a real report; answers checked by pyarrow."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections import Counter

import duckdb
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from jobs.detect import DetectConfig, run_detect
from reports.sql import load_query, query_names, query_params
from tests.helpers import read_detections, read_scene_rows, untrained_bundle

MAY_DAY = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)


def noise_tif(path, width, height, east_m, seed):
    """A noise GeoTIFF in UTM 19N whose top-left corner is ``east_m`` m east of 400000 E."""
    rng = np.random.default_rng(seed)
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=3, dtype="uint8",
        crs="EPSG:32619", transform=from_origin(400000.0 + east_m, 4640000.0, 0.1, 0.1),
    ) as ds:  # fmt: skip
        ds.write((rng.random((3, height, width)) * 255).astype("uint8"))
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Two ok scenes 2 km apart on different `dt` days, one failed scene; the root has a quote."""
    d = tmp_path_factory.mktemp("queries")
    west = noise_tif(d / "west.tif", 600, 400, 0.0, seed=1)
    east = noise_tif(d / "east.tif", 400, 300, 2000.0, seed=2)
    may = MAY_DAY.timestamp()
    os.utime(east, (may, may))  # dt comes from the scene version's mtime
    bad = d / "bad.tif"
    bad.write_text("not an image")
    root = d / "o'reports"  # load_query must quote it
    config = DetectConfig(
        bundle=str(untrained_bundle(d / "bundle")), out=str(root),
        scenes=(str(west), str(east), str(bad)), backend="torch", workers=0, progress=False,
    )  # fmt: skip
    run_detect(config)
    det = read_detections(root)
    assert len(set(det["scene_uri"].to_pylist())) == 2  # both scenes fired: a real test
    return {"root": root, "west": str(west), "east": str(east), "bad": str(bad), "det": det}


def run(name: str, root, **params) -> list[dict]:
    con = duckdb.connect()
    try:
        cursor = con.execute(load_query(name, reports=root, **params))
        columns = [c[0] for c in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()


def test_every_query_runs_and_answers(report):
    assert set(query_names()) >= {
        "whales_per_scene", "whales_per_day", "top_detections", "detections_in_bbox",
        "failed_scenes", "throughput_per_backend",
    }  # fmt: skip
    for name in query_names():
        assert run(name, report["root"]), f"{name}.sql returned no rows"


def test_whales_per_scene_matches_pyarrow(report):
    expected = Counter(report["det"]["scene_uri"].to_pylist())
    rows = run("whales_per_scene", report["root"])
    assert {r["scene_uri"]: r["whales"] for r in rows} == expected
    assert [r["whales"] for r in rows] == sorted(expected.values(), reverse=True)
    (east,) = (r for r in rows if r["scene_uri"] == report["east"])
    assert east["dt"] == MAY_DAY.date()  # hive_partitioning: dt is a DATE


def test_whales_per_day_matches_pyarrow(report):
    det = report["det"]
    per_scene = Counter(det["scene_uri"].to_pylist())
    rows = {r["dt"]: r for r in run("whales_per_day", report["root"])}
    may = rows.pop(MAY_DAY.date())
    assert (may["scenes_ok"], may["scenes_failed"], may["whales"]) == (
        1,
        0,
        per_scene[report["east"]],
    )
    ((_, today),) = rows.items()  # west and the failed scene: both today (their mtime)
    assert (today["scenes_ok"], today["scenes_failed"]) == (1, 1)
    assert today["whales"] == per_scene[report["west"]]


def test_top_detections(report):
    rows = run("top_detections", report["root"], limit=5)
    best = np.sort(report["det"]["score"].to_numpy())[::-1][:5]
    assert len(rows) == 5
    np.testing.assert_allclose([r["score"] for r in rows], best, atol=1e-4)


def test_bbox_query_returns_exactly_the_boxes_it_should_and_skips_row_groups(report):
    det = report["det"].to_pylist()
    west_boxes = [d["bbox"] for d in det if d["scene_uri"] == report["west"]]
    lons = sorted(b["xmin"] for b in west_boxes)
    lats = sorted(b["ymin"] for b in west_boxes)
    box = {  # the middle of the west scene: some of its boxes, none of the east scene's
        "west": lons[len(lons) // 4], "east": lons[3 * len(lons) // 4],
        "south": lats[len(lats) // 4], "north": lats[3 * len(lats) // 4],
    }  # fmt: skip
    expected = {
        d["detection_id"]
        for d in det
        if d["bbox"]["xmin"] <= box["east"] and d["bbox"]["xmax"] >= box["west"]
        and d["bbox"]["ymin"] <= box["north"] and d["bbox"]["ymax"] >= box["south"]
    }  # fmt: skip
    rows = run("detections_in_bbox", report["root"], **box)
    assert {r["detection_id"] for r in rows} == expected
    assert 0 < len(expected) < len(west_boxes)
    assert {r["scene_uri"] for r in rows} == {report["west"]}

    con = duckdb.connect()
    con.execute(load_query("detections_in_bbox", reports=report["root"], **box))  # the views
    query = load_query("detections_in_bbox", reports=report["root"], with_views=False, **box)
    plan = "\n".join(r[1] for r in con.execute("EXPLAIN ANALYZE " + query).fetchall())
    scanned, total = map(int, re.search(r"Row Groups Scanned: (\d+) / (\d+)", plan).groups())
    assert scanned < total  # the east scene's row group is skipped on bbox statistics


def test_failed_scenes_and_why(report):
    (row,) = run("failed_scenes", report["root"])
    assert row["scene_uri"] == report["bad"]
    assert row["status"] == "failed" and "not a readable raster" in row["error"]
    assert row["fixed_since"] is False


def test_throughput_per_backend_matches_the_ledger(report):
    scenes = [r for r in read_scene_rows(report["root"]).to_pylist() if r["status"] == "ok"]
    (row,) = run("throughput_per_backend", report["root"])
    assert row["backend"] == scenes[0]["backend"] and row["scenes"] == 2
    mp = sum(r["megapixels"] for r in scenes)
    assert row["megapixels"] == pytest.approx(mp, abs=0.05)
    assert row["mp_per_s"] == pytest.approx(mp / sum(r["seconds"] for r in scenes), abs=0.01)


def test_load_query_checks_its_inputs(tmp_path):
    assert query_params("detections_in_bbox").keys() == {"west", "south", "east", "north"}
    assert "LIMIT 7" in load_query("top_detections", reports=tmp_path, limit=7)
    assert "'s3://b/p/detections/" in load_query("top_detections", reports="s3://b/p/")
    with pytest.raises(ValueError, match="unknown parameter"):
        load_query("top_detections", reports=tmp_path, west=1)
    with pytest.raises(ValueError, match="expected a number"):
        load_query("detections_in_bbox", reports=tmp_path, west="1; DROP TABLE x")
    with pytest.raises(ValueError, match="unknown; expected one of"):
        load_query("nope", reports=tmp_path)
