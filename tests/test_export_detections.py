"""``whalescan export-detections``: GeoPackage, GeoJSON and CSV read back by GeoPandas match the
GeoParquet rows of each scene's latest attempt."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from jobs.export_detections import export_detections
from reports.latest import latest_detections
from reports.store import open_store
from tests.helpers import read_detections, record_attempt, write_tif

BOXES = {
    "a.tif": [([10, 20, 40, 50], 0.9), ([300, 100, 340, 130], 0.4)],
    "b.tif": [([0, 0, 25, 25], 0.7)],
    "nocrs.tif": [([50, 60, 80, 90], 0.6)],
}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    store = open_store(root / "reports")
    for name, dets in BOXES.items():
        crs = None if name == "nocrs.tif" else "EPSG:32619"
        path = write_tif(root / name, np.zeros((3, 200, 400), np.uint8), crs=crs)
        # an earlier attempt with another model: not exported
        record_attempt(store, path, [([1, 1, 9, 9], 0.99)], model="0" * 64, crs=crs)
        record_attempt(store, path, dets, minutes=3, crs=crs)
    record_attempt(store, root / "b.tif", [], minutes=7, status="failed")  # b's latest failed
    return root / "reports"


def expected(reports) -> pd.DataFrame:
    latest = read_detections(reports).to_pandas()
    latest = latest[latest["run_id"] == "run-3"]
    latest = latest[~latest["scene_uri"].str.endswith("b.tif")]
    return latest.sort_values("detection_id").reset_index(drop=True)


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson", ".csv"])
def test_read_back_matches_the_parquet_rows(reports, tmp_path, suffix):
    import geopandas as gpd

    out = tmp_path / f"det{suffix}"
    result = CliRunner().invoke(export_detections, [str(reports), str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{out}: 3 detection(s)"
    want = expected(reports)
    assert len(want) == 3
    if suffix == ".csv":
        got = pd.read_csv(out)
        geometry = gpd.GeoSeries.from_wkt(got["wkt"].fillna("").replace("", None))
    else:
        got = gpd.read_file(out)
        assert got.crs.equals("EPSG:4326")
        geometry = got.geometry
    order = np.argsort(got["detection_id"].to_numpy())
    got, geometry = (
        got.iloc[order].reset_index(drop=True),
        geometry.iloc[order].reset_index(drop=True),
    )
    assert list(got["detection_id"]) == list(want["detection_id"])
    for c in ("px_xmin", "px_ymin", "px_xmax", "px_ymax", "x_min", "y_max", "lon", "lat", "score"):
        np.testing.assert_allclose(got[c].astype(float), want[c].astype(float), rtol=1e-7)
    assert list(got["native_crs"].fillna("")) == list(want["native_crs"].fillna(""))
    assert list(got["scene_uri"]) == list(want["scene_uri"])
    parquet = shapely.from_wkb(want["geometry"].to_numpy())
    has_crs = want["native_crs"].notna().to_numpy()
    assert has_crs.sum() == 2 and geometry[~has_crs].isna().all()
    assert shapely.equals_exact(geometry[has_crs].values, parquet[has_crs], tolerance=1e-9).all()
    # the polygon surrounds the centre the rows give as lon/lat
    centres = shapely.points(want["lon"][has_crs], want["lat"][has_crs])
    assert shapely.contains(geometry[has_crs].values, centres).all()


def test_latest_detections_keeps_each_scenes_last_ok_attempt(reports):
    table = latest_detections(open_store(reports))
    assert sorted(table.column("detection_id").to_pylist()) == list(
        expected(reports)["detection_id"]
    )


def test_unknown_suffix_and_empty_reports(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(export_detections, [str(tmp_path), str(tmp_path / "d.shp")])
    assert bad.exit_code == 2 and ".gpkg, .geojson, .csv" in bad.output
    empty = runner.invoke(export_detections, [str(tmp_path / "none"), str(tmp_path / "e.gpkg")])
    assert empty.exit_code == 0, empty.output
    import geopandas as gpd

    assert len(gpd.read_file(tmp_path / "e.gpkg")) == 0


def test_s3_reports(bucket, reports, tmp_path):
    """An s3:// reports root exports the same rows as its local copy."""
    import geopandas as gpd

    store = open_store(f"s3://{bucket}/reports")
    local = open_store(reports)
    for relpath in local.list():
        store.write_bytes(relpath, local.read_bytes(relpath))
    out = tmp_path / "s3.gpkg"
    result = CliRunner().invoke(export_detections, [f"s3://{bucket}/reports", str(out)])
    assert result.exit_code == 0, result.output
    got = gpd.read_file(out).sort_values("detection_id")
    assert list(got["detection_id"]) == list(expected(reports)["detection_id"])
