"""labels.read: DeepForest CSVs and vector files (GPKG, GeoJSON, GeoParquet, shapefile) → the
same pixel boxes; points sized in ground metres or by the median box; bad input named."""

from __future__ import annotations

import csv
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from rasterio.transform import from_origin

from labels.read import DEFAULT_LABEL, LabelsError, SceneLabels, face_class, read_labels
from tests.helpers import write_tif

# Scene "a": 200 x 150 px in UTM 19N at 0.1 m; scene "b": 120 x 100 px, also UTM, elsewhere.
SIZES = {"a.tif": (200, 150), "b.tif": (120, 100)}
TRANSFORMS = {
    "a.tif": from_origin(400000.0, 4640000.0, 0.1, 0.1),
    "b.tif": from_origin(401234.5, 4641000.0, 0.1, 0.1),
}
BOXES = {
    "a.tif": np.array([[10.0, 20.0, 50.0, 60.0], [100.5, 30.25, 140.0, 70.0], [0, 0, 36, 40]]),
    "b.tif": np.array([[60.0, 50.0, 100.0, 90.0]]),
}


@pytest.fixture
def scenes(tmp_path: Path) -> Path:
    """Two real GeoTIFFs under tmp_path/scenes."""
    folder = tmp_path / "scenes"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for name, (w, h) in SIZES.items():
        data = rng.integers(1, 255, (3, h, w), dtype=np.uint8)
        write_tif(folder / name, data)
        _set_transform(folder / name, TRANSFORMS[name])
    return folder


def _set_transform(path: Path, transform) -> None:
    import rasterio

    with rasterio.open(path, "r+") as ds:
        ds.transform = transform


def _write_csv(path: Path, rows: list[list]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_path", "xmin", "ymin", "xmax", "ymax", "label"])
        w.writerows(rows)
    return path


def _map_boxes(transform, boxes: np.ndarray) -> np.ndarray:
    """Pixel boxes → polygons in the scene CRS (corners through the geotransform)."""
    polys = []
    for x0, y0, x1, y1 in boxes:
        corners = [transform @ (x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
        polys.append(shapely.Polygon(corners))
    return np.array(polys, dtype=object)


def _frame(scenes: Path, rel: str, points: bool, crs: str = "EPSG:32619") -> gpd.GeoDataFrame:
    names, geoms = [], []
    for name, boxes in BOXES.items():
        polys = _map_boxes(TRANSFORMS[name], boxes)
        geoms.extend(shapely.centroid(polys) if points else polys)
        names.extend([f"{rel}/{name}"] * len(boxes))
    frame = gpd.GeoDataFrame({"image_path": names}, geometry=geoms, crs="EPSG:32619")
    return frame.to_crs(crs)


def _by_scene(result: list[SceneLabels]) -> dict[str, SceneLabels]:
    return {Path(s.scene).name: s for s in result}


def test_csv_gives_pixel_boxes_with_paths_relative_to_the_csv(scenes: Path, tmp_path: Path):
    labels_dir = tmp_path / "labels"
    labels_dir.mkdir()
    rows = [["../scenes/" + n, *b, "whale_face"] for n, bs in BOXES.items() for b in bs.tolist()]
    result = read_labels(_write_csv(labels_dir / "ann.csv", rows))
    assert [Path(s.scene) for s in result] == [scenes / "a.tif", scenes / "b.tif"]
    assert all(Path(s.scene).is_absolute() for s in result)
    for s in result:
        np.testing.assert_array_equal(s.boxes, BOXES[Path(s.scene).name])
        assert s.boxes.dtype == np.float64
        assert s.labels == ("whale_face",) * len(s.boxes)


def test_csv_empty_image_rows_give_scenes_without_boxes(scenes: Path):
    rows = [["a.tif", 0, 0, 0, 0, "whale_face"], ["b.tif", "", "", "", "", ""]]
    result = read_labels(_write_csv(scenes / "ann.csv", rows))
    assert [(Path(s.scene).name, s.boxes.shape, s.labels) for s in result] == [
        ("a.tif", (0, 4), ()),
        ("b.tif", (0, 4), ()),
    ]


VECTOR_FORMATS = [
    ("labels.gpkg", "EPSG:32619", {}),
    ("labels.geojson", "EPSG:4326", {"driver": "GeoJSON"}),
    ("labels.shp", "EPSG:32619", {}),
    ("labels.parquet", "EPSG:3857", None),  # None: GeoParquet via to_parquet
]


@pytest.mark.parametrize(("name", "crs", "how"), VECTOR_FORMATS)
def test_vector_boxes_in_any_crs_give_the_csv_boxes(scenes, tmp_path, name, crs, how):
    frame = _frame(scenes, "../scenes", points=False, crs=crs)
    path = tmp_path / "sub" / name
    path.parent.mkdir()
    frame.to_parquet(path) if how is None else frame.to_file(path, **how)
    result = _by_scene(read_labels(path))
    assert sorted(result) == ["a.tif", "b.tif"]
    for scene, expected in BOXES.items():
        np.testing.assert_allclose(result[scene].boxes, expected, atol=1e-4)
        assert result[scene].labels == ("whale_face",) * len(expected)


@pytest.mark.parametrize(("name", "crs", "how"), VECTOR_FORMATS)
def test_vector_points_become_boxes_of_point_box_m(scenes, tmp_path, name, crs, how):
    frame = _frame(scenes, "scenes", points=True, crs=crs)
    path = tmp_path / name
    frame.to_parquet(path) if how is None else frame.to_file(path, **how)
    result = _by_scene(read_labels(path, point_box_m=4.0))  # 4 m = 40 px at 0.1 m
    for scene, boxes in BOXES.items():
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        expected = np.column_stack([centres - 20, centres + 20])
        expected = np.clip(expected, 0, np.tile(SIZES[scene], 2))  # the corner box is clipped
        np.testing.assert_allclose(result[scene].boxes, expected, atol=0.05)


def test_points_without_size_take_the_median_labelled_box(scenes, tmp_path):
    boxes = _frame(scenes, "scenes", points=False).iloc[:2]  # 40 x 40 and 39.5 x 39.75 px
    points = _frame(scenes, "scenes", points=True).iloc[3:]  # the face in b.tif
    frame = gpd.GeoDataFrame(
        {"image_path": [*boxes.image_path, *points.image_path], "label": ["a", "b", "c"]},
        geometry=[*boxes.geometry, *points.geometry],
        crs="EPSG:32619",
    )
    frame.to_file(tmp_path / "mixed.gpkg")
    result = _by_scene(read_labels(tmp_path / "mixed.gpkg"))
    w, h = np.median([[40, 40], [39.5, 39.75]], axis=0)
    np.testing.assert_allclose(result["b.tif"].boxes, [[80 - w / 2, 70 - h / 2, 80 + w / 2, 70 + h / 2]], atol=1e-4)  # fmt: skip
    assert result["a.tif"].labels == ("a", "b")
    assert result["b.tif"].labels == ("c",)


def test_point_box_m_is_ground_metres_on_a_web_mercator_scene(tmp_path):
    """At 60° N a Web Mercator metre is half a ground metre: 4 m on the ground = 80 px of 0.1."""
    transform = from_origin(-7792364.0, 8399737.0, 0.1, 0.1)  # about 70° W, 60° N
    write_tif(tmp_path / "m.tif", np.ones((3, 300, 300), np.uint8), crs="EPSG:3857")
    _set_transform(tmp_path / "m.tif", transform)
    centre = shapely.Point(transform @ (150, 150))
    frame = gpd.GeoDataFrame({"scene": ["m.tif"]}, geometry=[centre], crs="EPSG:3857")
    frame.to_crs("EPSG:4326").to_file(tmp_path / "p.geojson", driver="GeoJSON")
    [result] = read_labels(tmp_path / "p.geojson", point_box_m=4.0)
    lat = np.deg2rad(pyproj.Transformer.from_crs(3857, 4326).transform(*centre.coords[0])[0])
    side = result.boxes[0, 2:] - result.boxes[0, :2]
    # ground metres per map metre ≈ cos(latitude) (sphere; the ellipsoid differs by < 0.3 %)
    assert lat == pytest.approx(np.deg2rad(60), abs=0.01)
    assert side == pytest.approx(np.full(2, 40 / np.cos(lat)), rel=0.003)
    np.testing.assert_allclose((result.boxes[0, :2] + result.boxes[0, 2:]) / 2, [150, 150], atol=0.01)  # fmt: skip


@pytest.mark.filterwarnings("ignore:'crs' was not provided:UserWarning")
def test_vector_without_crs_is_in_pixels_and_scene_column_can_be_named(scenes, tmp_path):
    frame = gpd.GeoDataFrame(
        {"tif": ["scenes/a.tif"], "label": ["calf"]},
        geometry=[shapely.box(10, 20, 50, 60)],
    )
    frame.to_file(tmp_path / "px.gpkg")
    with pytest.raises(LabelsError, match="no column naming the scene.*'tif'"):
        read_labels(tmp_path / "px.gpkg")
    [result] = read_labels(tmp_path / "px.gpkg", scene_column="tif")
    np.testing.assert_array_equal(result.boxes, [[10, 20, 50, 60]])
    assert result.labels == ("calf",)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["a.tif", "10", "x", "50", "60", "whale_face"], r"row 2: ymin='x' is not a number"),
        (["a.tif", "50", "20", "10", "60", "whale_face"], r"row 2: box .* negative or zero size"),
        (
            ["a.tif", "200", "20", "240", "60", "whale_face"],
            r"row 2: box .* outside scene .*a\.tif.*\(200 x 150 px\)",
        ),  # fmt: skip
        (
            ["nope.tif", "1", "2", "3", "4", "whale_face"],
            r"row 2: scene .*nope\.tif.* does not exist",
        ),  # fmt: skip
        (["a.tif", "1", "2", "3", "4", ""], r"row 2: empty label"),
    ],
)
def test_bad_csv_rows_are_named(scenes, row, message):
    path = _write_csv(scenes / "bad.csv", [row])
    with pytest.raises(LabelsError, match=message) as err:
        read_labels(path)
    assert "bad.csv" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_boxes_overhanging_the_scene_are_clipped_with_a_warning(scenes, caplog):
    """A face cut by the frame but labelled whole: clipped, not refused; 1 px of round-off is
    clipped without a word."""
    rows = [
        ["a.tif", 180, -12, 220, 20, "whale_face"],
        ["a.tif", -0.5, 10, 30, 150.5, "whale_face"],
    ]
    [result] = read_labels(_write_csv(scenes / "edge.csv", rows))
    np.testing.assert_array_equal(result.boxes, [[180, 0, 200, 20], [0, 10, 30, 150]])
    assert "edge.csv' row 2: 1 box(es) overhang scene" in caplog.text
    assert "by up to 20 px; clipped" in caplog.text


def test_csv_missing_columns_are_listed(tmp_path):
    (tmp_path / "x.csv").write_text("image_path,xmin,ymin,xmax\na.tif,1,2,3\n")
    with pytest.raises(LabelsError, match=r"x\.csv.*missing column\(s\) \['ymax'\]"):
        read_labels(tmp_path / "x.csv")


def test_csv_headers_match_without_case_or_blanks_and_label_is_optional(scenes):
    """Other tools write ``Image_Path, XMin ...`` or leave out the class: the same boxes."""
    (scenes / "h.csv").write_text(" Image_Path , XMIN,ymin ,Xmax,YMax\na.tif,10,20,50,60\n")
    [result] = read_labels(scenes / "h.csv")
    np.testing.assert_array_equal(result.boxes, [[10, 20, 50, 60]])
    assert result.labels == (DEFAULT_LABEL,)


def _classes(scenes: Path, names: list[str]) -> Path:
    rows = [["a.tif", *box, n] for box, n in zip(BOXES["a.tif"], names, strict=True)]
    return _write_csv(scenes / "c.csv", [*rows, ["b.tif", *BOXES["b.tif"][0], "boat"]])


def test_every_box_is_a_face_whatever_the_classes_are_called(scenes, caplog):
    one = read_labels(
        _write_csv(scenes / "w.csv", [["a.tif", *b, "Whale"] for b in BOXES["a.tif"]])
    )
    assert face_class(one) == "Whale" and len(one[0].boxes) == 3 and not caplog.records
    several = read_labels(_classes(scenes, ["adult", "calf", "adult"]))
    assert face_class(several) == DEFAULT_LABEL and [len(s.boxes) for s in several] == [3, 1]
    assert "c.csv: every box is a face, of the 3 classes ['adult', 'boat', 'calf']" in caplog.text


def test_label_keeps_the_named_classes_and_the_emptied_scenes(scenes):
    path = _classes(scenes, ["adult", "calf", "adult"])
    by = _by_scene(read_labels(path, label="adult"))
    assert face_class(by.values()) == "adult"
    np.testing.assert_array_equal(by["a.tif"].boxes, BOXES["a.tif"][[0, 2]])
    assert len(by["b.tif"].boxes) == 0  # only a boat: a scene without faces, still a negative
    by = _by_scene(read_labels(path, label="adult, calf"))
    assert face_class(by.values()) == DEFAULT_LABEL
    assert by["a.tif"].labels == ("adult", "calf", "adult") and len(by["b.tif"].boxes) == 0
    with pytest.raises(LabelsError, match=r"c\.csv.*no box is labelled \['whale'\]; the classes are \['adult', 'boat', 'calf'\]"):  # fmt: skip
        read_labels(path, label="adult,whale")
    with pytest.raises(LabelsError, match=r"no box is labelled ','"):
        read_labels(path, label=",")


def test_points_with_no_size_and_crs_labels_on_an_ungeoreferenced_scene(scenes, tmp_path):
    write_tif(tmp_path / "plain.tif", np.ones((3, 64, 64), np.uint8), crs=None)
    frame = gpd.GeoDataFrame({"image": ["scenes/a.tif"]}, geometry=[shapely.Point(400001, 4639999)], crs="EPSG:32619")  # fmt: skip
    frame.to_file(tmp_path / "p.gpkg")
    with pytest.raises(LabelsError, match=r"p\.gpkg.*point labels need a box size"):
        read_labels(tmp_path / "p.gpkg")
    frame.assign(image=["plain.tif"]).to_file(tmp_path / "q.gpkg")
    with pytest.raises(LabelsError, match=r"q\.gpkg' row 0: labels are in EPSG:32619 but scene .*plain\.tif.* has no CRS"):  # fmt: skip
        read_labels(tmp_path / "q.gpkg", point_box_m=3.0)


@pytest.mark.filterwarnings("ignore:'crs' was not provided:UserWarning")
def test_other_geometries_and_missing_files(scenes, tmp_path):
    frame = gpd.GeoDataFrame({"scene": ["scenes/a.tif"]}, geometry=[shapely.LineString([(0, 0), (5, 5)])])  # fmt: skip
    frame.to_file(tmp_path / "l.gpkg")
    with pytest.raises(LabelsError, match=r"l\.gpkg' row 0: geometry LineString; expected a point"):
        read_labels(tmp_path / "l.gpkg")
    with pytest.raises(LabelsError, match=r"nothing\.csv.*no such labels file"):
        read_labels(tmp_path / "nothing.csv")
    with pytest.raises(LabelsError, match=r"point_box_m=-1"):
        read_labels(tmp_path / "l.gpkg", point_box_m=-1)


def test_geographic_and_rotated_scenes(tmp_path):
    """A scene in EPSG:4326 (points sized in ground metres) and one with a rotated geotransform
    (map boxes are rotated rectangles; their pixel boxes come back exactly)."""
    from affine import Affine

    geo = Affine(1e-6, 0, -70.0, 0, -1e-6, 42.0)  # ~0.083 x 0.111 m pixels at 42° N
    write_tif(tmp_path / "g.tif", np.ones((3, 400, 400), np.uint8), crs="EPSG:4326")
    _set_transform(tmp_path / "g.tif", geo)
    rotated = Affine.translation(400000, 4640000) @ Affine.rotation(30) @ Affine.scale(0.1, -0.1)
    write_tif(tmp_path / "r.tif", np.ones((3, 300, 300), np.uint8))
    _set_transform(tmp_path / "r.tif", rotated)
    box = np.array([[40.0, 60.0, 90.0, 100.0]])
    frame = gpd.GeoDataFrame(
        {"scene": ["g.tif", "r.tif"]},
        geometry=[shapely.Point(geo @ (200, 200)), _map_boxes(rotated, box)[0]],
        crs="EPSG:4326",
    )
    frame.iloc[[1]].set_crs("EPSG:32619", allow_override=True).to_file(tmp_path / "r.gpkg")
    frame.iloc[[0]].to_file(tmp_path / "g.geojson", driver="GeoJSON")
    [r] = read_labels(tmp_path / "r.gpkg")
    np.testing.assert_allclose(r.boxes, box, atol=1e-6)
    [g] = read_labels(tmp_path / "g.geojson", point_box_m=2.0)
    # spherical arithmetic (independent of the reader's geodesics): metres per degree
    m_per_deg = 6371008.8 * np.pi / 180
    px_m = np.array([1e-6 * m_per_deg * np.cos(np.deg2rad(42.0)), 1e-6 * m_per_deg])
    side = g.boxes[0, 2:] - g.boxes[0, :2]
    np.testing.assert_allclose(side, 2.0 / px_m, rtol=0.006)
    np.testing.assert_allclose((g.boxes[0, :2] + g.boxes[0, 2:]) / 2, [200, 200], atol=1e-6)
