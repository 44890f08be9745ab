"""reports: frozen schemas, keys, GeoParquet read back by GeoPandas and DuckDB, stores, ledger."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from affine import Affine
from pyproj import Transformer

from reports.geoparquet import detections_table, scenes_table, write_geoparquet, write_parquet
from reports.keys import detection_id, detection_ids, partition_date, scene_key
from reports.ledger import done_keys, read_scenes, write_scene_result
from reports.run import Attempt, RunStamp, SceneRun
from reports.schema import DETECTIONS_SCHEMA, SCENES_SCHEMA, SCHEMA_VERSION
from reports.store import LocalStore, S3Store, open_store
from tiling.scene import Scene

MODEL = "f" * 64
DETECTED_AT = datetime(2024, 5, 2, 12, 0, tzinfo=UTC)
SCENE = Scene(
    uri="s3://scenes/cape-cod/a.tif",
    version='"9b2cf535f27731c974343645a3985328"',
    width=1000,
    height=800,
    bands=3,
    dtype="uint8",
    crs="EPSG:32619",
    transform=Affine(0.5, 0.0, 400000.0, 0.0, -0.5, 4640000.0),
    # 23:30 at UTC-05:00 is already 2024-05-02 in UTC: dt must use the UTC date.
    modified=datetime(2024, 5, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5))),
)
BOXES = np.array(
    [[500.0, 400.0, 550.0, 450.0], [10.0, 20.0, 60.0, 70.0], [900.0, 10.0, 940.0, 50.0]]
)
SCORES = np.array([0.8, 0.95, 0.6], dtype=np.float32)
STAMP = RunStamp(run_id="run-1", model_sha256=MODEL, mode="fcn", backend="torch:cpu")
ATTEMPT = Attempt(
    "ok", seconds=1.25, started_at=datetime(2024, 5, 2, 11, 59, tzinfo=UTC), finished_at=DETECTED_AT
)


def make_table(scene=SCENE, boxes=BOXES, scores=SCORES):
    run = SceneRun(scene, STAMP)
    return detections_table(run, boxes, scores, label="whale_face", detected_at=DETECTED_AT)


# ---- import hygiene and frozen schemas ----------------------------------------------------------


def test_import_reports_and_tiling_does_not_import_torch_or_ray():
    code = (
        "import sys, reports, tiling, reports.ledger, reports.geoparquet, tiling.geo;"
        "bad = [m for m in ('torch', 'ray') if m in sys.modules];"
        "assert not bad, bad"
    )
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=repo)


def test_detections_schema_is_frozen():
    assert [(f.name, str(f.type)) for f in DETECTIONS_SCHEMA] == [
        ("scene_uri", "string"),
        ("scene_version", "string"),
        ("detection_id", "string"),
        ("label", "string"),
        ("score", "float"),
        ("px_xmin", "double"),
        ("px_ymin", "double"),
        ("px_xmax", "double"),
        ("px_ymax", "double"),
        ("native_crs", "string"),
        ("x_min", "double"),
        ("y_min", "double"),
        ("x_max", "double"),
        ("y_max", "double"),
        ("lon", "double"),
        ("lat", "double"),
        ("geometry", "binary"),
        ("bbox", "struct<xmin: double, ymin: double, xmax: double, ymax: double>"),
        ("mode", "string"),
        ("backend", "string"),
        ("model_sha256", "string"),
        ("run_id", "string"),
        ("detected_at", "timestamp[us, tz=UTC]"),
    ]
    assert DETECTIONS_SCHEMA.metadata == {b"whalescan:schema_version": SCHEMA_VERSION.encode()}


def test_scenes_schema_is_frozen():
    assert [(f.name, str(f.type)) for f in SCENES_SCHEMA] == [
        ("scene_uri", "string"),
        ("scene_version", "string"),
        ("scene_key", "string"),
        ("width", "int64"),
        ("height", "int64"),
        ("bands", "int64"),
        ("dtype", "string"),
        ("native_crs", "string"),
        ("status", "string"),
        ("error", "string"),
        ("detections", "int64"),
        ("megapixels", "double"),
        ("seconds", "double"),
        ("mode", "string"),
        ("backend", "string"),
        ("model_sha256", "string"),
        ("run_id", "string"),
        ("started_at", "timestamp[us, tz=UTC]"),
        ("finished_at", "timestamp[us, tz=UTC]"),
        ("scene_modified", "timestamp[us, tz=UTC]"),
        ("gsd_m", "double"),
        ("px_scale", "double"),
        ("parameters", "string"),
    ]
    assert SCHEMA_VERSION == "3"


# ---- keys ---------------------------------------------------------------------------------------


def test_scene_key_is_stable_and_depends_on_every_input():
    key = scene_key(SCENE.uri, SCENE.version, MODEL, "fcn")
    assert key == scene_key(SCENE.uri, SCENE.version, MODEL, "fcn")
    assert len(key) == 24 and int(key, 16) >= 0
    others = {
        scene_key(SCENE.uri + "x", SCENE.version, MODEL, "fcn"),
        scene_key(SCENE.uri, "other-etag", MODEL, "fcn"),
        scene_key(SCENE.uri, SCENE.version, "0" * 64, "fcn"),
        scene_key(SCENE.uri, SCENE.version, MODEL, "sliding"),
    }
    assert key not in others and len(others) == 4
    with pytest.raises(ValueError, match="scene_version"):
        scene_key(SCENE.uri, "", MODEL, "fcn")


def test_detection_id_stable_under_float_noise_and_unique():
    key = scene_key(SCENE.uri, SCENE.version, MODEL, "fcn")
    box = [10.0, 20.0, 60.0, 70.0]
    assert detection_id(key, box) == detection_id(key, np.array(box) + 1e-5)
    assert detection_id(key, [0.0, 0.0, 1.0, 1.0]) == detection_id(key, [-1e-5, -0.0, 1.0, 1.0])
    assert detection_id(key, box) != detection_id(key, [10.0, 20.0, 60.0, 70.01])
    assert detection_id(key, box) != detection_id("0" * 24, box)
    ids = detection_ids(key, np.random.default_rng(0).uniform(0, 5000, (2000, 4)))
    assert len(set(ids)) == 2000 and all(len(i) == 24 for i in ids)


def test_partition_date_is_utc_date_of_the_scene_version():
    assert partition_date(SCENE.modified) == "2024-05-02"
    assert partition_date(datetime(2024, 5, 1, 23, 59, tzinfo=UTC)) == "2024-05-01"
    with pytest.raises(ValueError, match="naive"):
        partition_date(datetime(2024, 5, 1))


# ---- detections table and GeoParquet ------------------------------------------------------------


def test_detections_table_columns_and_geometry():
    import shapely

    t = make_table()
    assert t.schema.equals(DETECTIONS_SCHEMA, check_metadata=True)
    rows = t.to_pylist()
    # Sorted by (px_ymin, px_xmin): the scene's own order, whatever order regions finished in.
    assert [r["px_ymin"] for r in rows] == [10.0, 20.0, 400.0]
    r = rows[1]  # box [10, 20, 60, 70]
    assert r["score"] == pytest.approx(0.95) and r["native_crs"] == "EPSG:32619"
    assert (r["x_min"], r["y_min"], r["x_max"], r["y_max"]) == (
        400005.0,
        4639965.0,
        400030.0,
        4639990.0,
    )
    to_ll = Transformer.from_crs("EPSG:32619", "OGC:CRS84", always_xy=True)
    lon, lat = to_ll.transform(400017.5, 4639977.5)
    assert r["lon"] == pytest.approx(lon, abs=1e-9) and r["lat"] == pytest.approx(lat, abs=1e-9)
    poly = shapely.from_wkb(r["geometry"])
    assert poly.geom_type == "Polygon" and poly.exterior.is_ccw
    # The ring's vertices are the box's 4 map corners, each taken to lon/lat.
    corners = [to_ll.transform(x, y) for x in (400005, 400030) for y in (4639965, 4639990)]
    ring = poly.exterior.coords[:-1]
    assert {(round(a, 9), round(b, 9)) for a, b in ring} == {
        (round(a, 9), round(b, 9)) for a, b in corners
    }
    assert r["bbox"] == dict(zip(("xmin", "ymin", "xmax", "ymax"), poly.bounds, strict=True))
    assert r["detection_id"] == detection_id(
        scene_key(SCENE.uri, SCENE.version, MODEL, "fcn"), BOXES[1]
    )


def write_scene(store, scene=SCENE, boxes=BOXES, scores=SCORES):
    return write_scene_result(
        store, SceneRun(scene, STAMP), ATTEMPT, make_table(scene, boxes, scores)
    )


def test_geoparquet_read_by_geopandas(tmp_path):
    import geopandas as gpd
    import shapely

    store = open_store(tmp_path)
    w = write_scene(store)
    assert w.detections == f"detections/dt=2024-05-02/{w.scene_key}.parquet"
    gdf = gpd.read_parquet(store.uri(w.detections))
    assert gdf.crs is not None and gdf.crs.is_geographic and gdf.crs.equals("OGC:CRS84")
    table = make_table()
    expected = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    assert list(gdf["detection_id"]) == table.column("detection_id").to_pylist()
    assert all(shapely.equals_exact(gdf.geometry.values, expected, tolerance=0))


def test_geoparquet_metadata_bbox_and_row_group_stats(tmp_path):
    store = open_store(tmp_path)
    w = write_scene(store)
    pf = pq.ParquetFile(store.uri(w.detections))
    kv = pf.metadata.metadata
    assert kv[b"whalescan:schema_version"] == SCHEMA_VERSION.encode()
    geo = json.loads(kv[b"geo"])
    col = geo["columns"]["geometry"]
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    assert col["encoding"] == "WKB" and col["geometry_types"] == ["Polygon"] and "crs" not in col
    assert col["covering"] == {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}}
    b = pq.read_table(store.uri(w.detections)).column("bbox").combine_chunks()
    assert col["bbox"] == [
        min(b.field("xmin").to_pylist()),
        min(b.field("ymin").to_pylist()),
        max(b.field("xmax").to_pylist()),
        max(b.field("ymax").to_pylist()),
    ]
    assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
    names = [
        pf.metadata.row_group(0).column(i).path_in_schema for i in range(pf.metadata.num_columns)
    ]
    stats = pf.metadata.row_group(0).column(names.index("bbox.xmin")).statistics
    assert stats.has_min_max and stats.min == col["bbox"][0]


def test_duckdb_reads_partitioned_geoparquet_and_filters_on_bbox(tmp_path):
    import duckdb

    store = open_store(tmp_path)
    write_scene(store)
    other = dataclasses.replace(SCENE, uri="s3://scenes/cape-cod/b.tif")
    write_scene(store, other, BOXES[:1], SCORES[:1])
    src = f"read_parquet('{tmp_path}/detections/**/*.parquet', hive_partitioning=true)"
    # duckdb 2.x: fetch each execute() to the end before the next one on the same connection.
    with duckdb.connect() as con:
        types = {
            name: str(type_)
            for name, type_, *_ in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
        }
        assert types["geometry"].upper().startswith("GEOMETRY")  # native GeoParquet, no extension
        assert types["dt"] == "DATE"
        assert con.execute(f"SELECT count(*), min(dt)::VARCHAR FROM {src}").fetchall() == [
            (4, "2024-05-02")
        ]
        # The bbox covering column filters without the spatial extension.
        # Box [10, 20, 60, 70]'s west edge:
        west = make_table().column("bbox").to_pylist()[1]["xmin"]
        hits = con.execute(
            f"SELECT scene_uri, px_xmin FROM {src} "
            f"WHERE bbox.xmin <= {west} AND bbox.xmax >= {west} ORDER BY scene_uri"
        ).fetchall()
    assert hits == [(SCENE.uri, 10.0)]


def test_empty_detections_file_is_valid(tmp_path):
    import duckdb
    import geopandas as gpd

    store = open_store(tmp_path)
    w = write_scene(store, boxes=np.zeros((0, 4)), scores=np.zeros(0, np.float32))
    path = store.uri(w.detections)
    assert len(gpd.read_parquet(path)) == 0
    geo = json.loads(pq.ParquetFile(path).metadata.metadata[b"geo"])
    assert "bbox" not in geo["columns"]["geometry"]
    with duckdb.connect() as con:
        assert con.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchall() == [(0,)]
    assert read_scenes(store).column("detections").to_pylist() == [0]


def test_scene_without_crs_writes_null_geo_columns_and_warns(tmp_path, caplog):
    import geopandas as gpd

    scene = dataclasses.replace(SCENE, uri="/data/plain.png", version="123+1714600000",
                                width=100, height=100, crs=None, transform=None,
                                modified=DETECTED_AT)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="reports.geoparquet"):
        t = make_table(scene, BOXES[:2] / 10, SCORES[:2])
    assert "/data/plain.png" in caplog.text and "no CRS" in caplog.text
    for name in ("native_crs", "x_min", "y_max", "lon", "lat", "geometry", "bbox"):
        assert t.column(name).null_count == 2, name
    assert t.column("px_xmax").to_pylist() == [6.0, 55.0]
    store = open_store(tmp_path)
    w = write_scene_result(store, SceneRun(scene, STAMP), ATTEMPT, t)
    gdf = gpd.read_parquet(store.uri(w.detections))
    assert len(gdf) == 2 and gdf.geometry.isna().all()
    assert read_scenes(store).column("native_crs").to_pylist() == [None]


def test_rerun_overwrites_same_object_with_same_bytes(tmp_path):
    store = open_store(tmp_path)
    first = write_scene(store)
    before = {p: store.read_bytes(p) for p in store.list()}
    # Same inputs, boxes arriving in another order (regions finish in any order).
    second = write_scene(store, boxes=BOXES[::-1], scores=SCORES[::-1])
    assert first == second
    assert {p: store.read_bytes(p) for p in store.list()} == before
    assert sorted(before) == sorted([first.detections, first.scene])


def test_write_geoparquet_rejects_foreign_table(tmp_path):
    with pytest.raises(ValueError, match="DETECTIONS_SCHEMA"):
        write_geoparquet(pa.table({"a": [1]}), open_store(tmp_path), "detections/x.parquet")


# ---- stores -------------------------------------------------------------------------------------


def check_store_round_trip(store):
    assert store.list() == [] and not store.exists("a/b.parquet")
    store.write_bytes("a/b.parquet", b"one")
    store.write_bytes("a/b.parquet", b"two")  # overwrite
    store.write_bytes("a/c/d.parquet", b"three")
    store.write_bytes("ab.txt", b"four")
    assert store.read_bytes("a/b.parquet") == b"two" and store.exists("a/c/d.parquet")
    assert store.list() == ["a/b.parquet", "a/c/d.parquet", "ab.txt"]
    assert store.list("a/") == ["a/b.parquet", "a/c/d.parquet"]
    assert store.list("a") == ["a/b.parquet", "a/c/d.parquet", "ab.txt"]
    assert store.list("zzz/") == []
    assert store.read_many(["ab.txt", "a/b.parquet"]) == [b"four", b"two"]
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        store.read_bytes("missing.parquet")
    for bad in ("/abs", "a/../b", "a//b", ""):
        with pytest.raises(ValueError, match="relpath"):
            store.write_bytes(bad, b"x")


def test_local_store_round_trip(tmp_path):
    store = open_store(f"file://{tmp_path}/reports")
    assert isinstance(store, LocalStore)
    check_store_round_trip(store)
    assert store.uri("a/b.parquet") == f"{tmp_path}/reports/a/b.parquet"
    # Atomic writes leave no temp files behind.
    assert sorted(p.name for p in (tmp_path / "reports" / "a").iterdir()) == ["b.parquet", "c"]
    with pytest.raises(ValueError, match="unsupported"):
        open_store("gs://bucket/x")


@pytest.fixture
def s3_root(s3_server):
    import boto3

    bucket = f"reports-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/whalescan/prod"


def test_s3_store_round_trip(s3_root):
    import pickle

    store = open_store(s3_root)
    assert isinstance(store, S3Store)
    check_store_round_trip(store)
    assert store.uri("a/b.parquet") == f"{s3_root}/a/b.parquet"
    clone = pickle.loads(pickle.dumps(store))  # shippable to Ray workers; the client is rebuilt
    assert clone.read_bytes("ab.txt") == b"four"


def test_s3_ledger_and_geoparquet(s3_root):
    import geopandas as gpd

    store = open_store(s3_root)
    assert done_keys(store) == set()
    w = write_scene(store)
    assert done_keys(store) == {w.scene_key}
    gdf = gpd.read_parquet(io.BytesIO(store.read_bytes(w.detections)))
    assert len(gdf) == 3 and gdf.crs.equals("OGC:CRS84")


# ---- ledger -------------------------------------------------------------------------------------


def test_ledger_empty_then_done_after_write(tmp_path):
    store = open_store(tmp_path)
    empty = read_scenes(store)
    assert empty.num_rows == 0 and empty.schema.equals(SCENES_SCHEMA)
    w = write_scene(store)
    assert done_keys(store) == {w.scene_key}
    row = read_scenes(store).to_pylist()[0]
    assert row["status"] == "ok" and row["detections"] == 3 and row["megapixels"] == 0.8
    assert row["native_crs"] == "EPSG:32619" and row["scene_modified"] == SCENE.modified


def test_failed_scene_writes_only_a_scene_row_and_a_rerun_replaces_it(tmp_path):
    store = open_store(tmp_path)
    failed = dataclasses.replace(ATTEMPT, status="failed", error="RasterioIOError: not a TIFF")
    w = write_scene_result(store, SceneRun(SCENE, STAMP), failed)
    assert w.detections is None and store.list() == [w.scene]
    row = read_scenes(store).to_pylist()[0]
    assert (
        row["status"] == "failed"
        and row["error"].startswith("RasterioIOError")
        and row["detections"] is None
    )
    assert done_keys(store) == set() and done_keys(store, ("ok", "failed")) == {w.scene_key}
    ok = write_scene(store)
    assert ok.scene == w.scene and read_scenes(store).column("status").to_pylist() == ["ok"]
    with pytest.raises(ValueError, match="detections table"):
        write_scene_result(store, SceneRun(SCENE, STAMP), ATTEMPT)
    with pytest.raises(ValueError, match="must not carry"):
        write_scene_result(store, SceneRun(SCENE, STAMP), failed, make_table())
    with pytest.raises(ValueError, match="status"):
        Attempt("done")


def test_read_scenes_fills_columns_appended_later(tmp_path):
    store = open_store(tmp_path)
    row = {
        **dataclasses.asdict(ATTEMPT), **{k: getattr(STAMP, k) for k in ("mode", "run_id")},
        "scene_uri": "a.tif", "scene_version": "1+2", "scene_key": "k" * 24,
    }  # fmt: skip
    old = scenes_table([row]).drop_columns(["scene_modified"])  # a file from before the column
    write_parquet(old, store, "scenes/dt=2024-01-01/old.parquet")
    got = read_scenes(store)
    assert got.schema.equals(SCENES_SCHEMA) and got.column("scene_modified").to_pylist() == [None]
    assert done_keys(store) == {"k" * 24}


def test_scene_and_run_validation_names_the_field():
    with pytest.raises(ValueError, match="transform"):
        Scene(uri="a.tif", version="1", crs="EPSG:32619")
    with pytest.raises(ValueError, match="modified"):
        Scene(uri="a.tif", version="1", modified=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="width"):
        Scene(uri="a.tif", version="1", width=0)
    with pytest.raises(ValueError, match="backend"):
        dataclasses.replace(STAMP, backend="")
    run = SceneRun(SCENE, STAMP)  # the key is derived once, from scene and stamp
    assert run.key == scene_key(SCENE.uri, SCENE.version, MODEL, "fcn")
