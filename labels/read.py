"""Read labels — DeepForest CSVs or any vector file GeoPandas reads — as pixel boxes per scene.

Two layouts:

* **DeepForest CSV** (``.csv``): columns ``image_path, xmin, ymin, xmax, ymax, label``; boxes in
  scene pixels (col, row), corner-anchored, exclusive max; ``image_path`` relative to the CSV.
  A row whose four coordinates are empty or all 0 marks a scene with no faces (DeepForest's
  convention for empty images). Header names are matched without case or surrounding blanks;
  without a ``label`` column every box is a :data:`DEFAULT_LABEL`.
* **Vector files** (GeoPackage, GeoJSON, GeoParquet, shapefile...): one row per face with a
  column naming the scene (``image_path``, ``scene``, ``scene_uri`` or ``image``, else
  ``scene_column=``), relative to the file, and a point or polygon geometry in any CRS. Geometries
  are reprojected to the scene's CRS and mapped to pixels through the scene's inverse
  geotransform; a polygon becomes its pixel bounding box. Geometries in a file WITHOUT a CRS are
  taken as scene pixel coordinates (col, row). A ``label`` column is optional
  (default :data:`DEFAULT_LABEL`).

A point becomes a box centred on it: ``point_box_m`` metres on the ground each way (geodesic
size of the scene's pixels at the point, so any scene CRS — degrees, feet, Web Mercator — gets
true metres), or,
without ``point_box_m``, the median pixel width and height of the file's box labels; a point
box is clipped to the scene. Rows of a vector file are numbered from 0 (the frame's index).

Every box is a face whatever its class is called, unless ``label`` (``--label``) names the
faces' classes: then the other classes' boxes (boats, flukes) are dropped.

Boxes must overlap their scene. One that overshoots an edge is clipped to it: silently by up to
:data:`EDGE_TOLERANCE_PX` (reprojection round-off, annotation tools that snap to the pixel
edge), with a warning beyond (a face cut by the frame, labelled whole); one wholly outside is an
error (the wrong scene or coordinates).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import RasterioError

__all__ = [
    "DEFAULT_LABEL",
    "EDGE_TOLERANCE_PX",
    "SCENE_COLUMNS",
    "CSV_COLUMNS",
    "LabelsError",
    "SceneLabels",
    "read_labels",
    "face_class",
]

log = logging.getLogger(__name__)

DEFAULT_LABEL = "whale_face"
SCENE_COLUMNS = ("image_path", "scene", "scene_uri", "image")
"""Column names that name the scene in a vector file, in the order they are looked for."""
CSV_COLUMNS = ("image_path", "xmin", "ymin", "xmax", "ymax", "label")
"""The DeepForest CSV's columns; all but ``label`` are required."""
EDGE_TOLERANCE_PX = 1.0
_COORDS = ("xmin", "ymin", "xmax", "ymax")


class LabelsError(ValueError):
    """A labels file cannot be read as face boxes: the message names the file, row and problem."""


@dataclass(frozen=True)
class SceneLabels:
    """The labelled faces of one scene.

    ``scene``: path or URI of the scene as the labels give it, made absolute for paths relative
    to the labels file. ``boxes``: (N, 4) float64 ``[xmin, ymin, xmax, ymax]`` in native scene
    pixels (col, row), corner-anchored, exclusive max. ``labels``: N class names.
    """

    scene: str
    boxes: np.ndarray
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) != len(self.labels):
            raise ValueError(
                f"labels: {len(self.labels)} class names for {len(boxes)} boxes of {self.scene!r}"
            )
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", tuple(self.labels))


@dataclass(frozen=True)
class _Scene:
    """What the labels need to know of a scene: size and georeferencing (None when absent)."""

    uri: str
    width: int
    height: int
    crs: object | None
    transform: Affine | None


def read_labels(
    path: str | Path,
    *,
    scene_column: str | None = None,
    point_box_m: float | None = None,
    label: str | None = None,
) -> list[SceneLabels]:
    """Face boxes per scene from a DeepForest CSV or a vector file, in order of first mention.

    ``label``: the faces' class, or several comma-separated (``adult,calf``); None takes every
    box whatever its class is called (a one-class detector learns every labelled object).
    Raises :class:`LabelsError` (a ``ValueError``) naming the file, the row and the problem for
    missing columns, non-numeric or negative-size boxes, boxes outside their scene, scenes that
    cannot be opened, point labels with no size to give them and a ``label`` no box has.
    """
    path = Path(path)
    if point_box_m is not None and not (math.isfinite(point_box_m) and point_box_m > 0):
        raise LabelsError(f"point_box_m={point_box_m!r}: expected a positive size in metres")
    if not path.is_file():
        raise LabelsError(f"{str(path)!r}: no such labels file")
    if path.suffix.lower() == ".csv":
        scenes = _read_csv(path)
    else:
        scenes = _read_vector(path, scene_column, point_box_m)
    return _keep_classes(scenes, label, path)


def face_class(scenes: Sequence[SceneLabels]) -> str:
    """The name the faces go by: their one class, else :data:`DEFAULT_LABEL`."""
    names = {lab for s in scenes for lab in s.labels}
    return names.pop() if len(names) == 1 else DEFAULT_LABEL


def _keep_classes(scenes: list[SceneLabels], label: str | None, path: Path) -> list[SceneLabels]:
    """``scenes`` with the boxes of ``label``'s classes (comma-separated) only; all when None,
    with a warning naming the classes if there are several. Every scene is kept: one left
    without boxes is a scene without faces."""
    names = sorted({lab for s in scenes for lab in s.labels})
    if label is None:
        if len(names) > 1:
            log.warning("%s: every box is a face, of the %d classes %s; --label keeps some",
                        path, len(names), names)  # fmt: skip
        return scenes
    wanted = {n.strip() for n in label.split(",")} - {""}
    unknown = sorted(wanted - set(names)) if names else []
    if unknown or not wanted:
        raise LabelsError(
            f"{str(path)!r}: no box is labelled {unknown or label!r}; the classes are {names}"
        )
    kept = []
    for s in scenes:
        keep = [lab in wanted for lab in s.labels]
        labels = [lab for lab in s.labels if lab in wanted]
        kept.append(SceneLabels(s.scene, s.boxes[np.array(keep, bool)], labels))
    return kept


# --- DeepForest CSV ---


def _read_csv(path: Path) -> list[SceneLabels]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        reader.fieldnames = [(n or "").strip().lower() for n in reader.fieldnames or ()]
        missing = [c for c in CSV_COLUMNS[:-1] if c not in reader.fieldnames]
        if missing:
            raise LabelsError(
                f"{str(path)!r}: missing column(s) {missing}; a DeepForest CSV has "
                f"{', '.join(CSV_COLUMNS)}"
            )
        rows = list(reader)
    scenes: dict[str, list[tuple[int, np.ndarray, str]]] = {}
    first_row: dict[str, int] = {}
    for i, row in enumerate(rows):
        where = f"{str(path)!r} row {i + 2}"  # line number: the header is line 1
        uri = _resolve(row["image_path"], path.parent, where)
        first_row.setdefault(uri, i + 2)
        entries = scenes.setdefault(uri, [])
        values = [(row[c] or "").strip() for c in _COORDS]
        if all(v == "" for v in values):
            continue
        box = np.array([_number(v, c, where) for v, c in zip(values, _COORDS, strict=True)])
        if not box.any():  # DeepForest's marker for an image without objects
            continue
        label = (row.get("label", DEFAULT_LABEL) or "").strip()
        if not label:
            raise LabelsError(f"{where}: empty label")
        entries.append((i + 2, box, label))
    out = []
    for uri, entries in scenes.items():
        scene = _open_scene(uri, f"{str(path)!r} row {first_row[uri]}")
        boxes = np.array([b for _, b, _ in entries], dtype=np.float64).reshape(-1, 4)
        rows_ = [f"{str(path)!r} row {r}" for r, _, _ in entries]
        out.append(
            SceneLabels(uri, _check_boxes(boxes, scene, rows_), [lab for *_, lab in entries])
        )
    return out


def _number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LabelsError(f"{where}: {column}={text!r} is not a number") from None
    if not math.isfinite(value):
        raise LabelsError(f"{where}: {column}={text!r} is not a finite number")
    return value


# --- vector files ---


def _read_vector(path: Path, scene_column: str | None, point_box_m: float | None):
    import geopandas as gpd
    import shapely

    try:
        if path.suffix.lower() in (".parquet", ".geoparquet"):
            frame = gpd.read_parquet(path)
        else:
            frame = gpd.read_file(path)
    except Exception as e:  # GDAL/pyogrio/pyarrow raise many types for unreadable files
        raise LabelsError(f"{str(path)!r}: not a readable vector file ({e})") from e
    column = _scene_column(path, frame.columns, scene_column)
    labels = frame["label"] if "label" in frame.columns else None
    geoms = frame.geometry.values
    kinds = shapely.get_type_id(geoms)
    points = np.isin(kinds, [shapely.GeometryType.POINT])
    polygons = np.isin(kinds, [shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON])
    for i in np.flatnonzero(~(points | polygons)):
        kind = "missing" if geoms[i] is None else geoms[i].geom_type
        raise LabelsError(
            f"{str(path)!r} row {i}: geometry {kind}; expected a point or a polygon (box)"
        )
    empty = shapely.is_empty(geoms)
    if empty.any():
        raise LabelsError(f"{str(path)!r} row {int(np.flatnonzero(empty)[0])}: empty geometry")

    order: dict[str, list[int]] = {}
    for i, name in enumerate(frame[column]):
        if not isinstance(name, str) or not name.strip():
            raise LabelsError(f"{str(path)!r} row {i}: {column}={name!r} names no scene")
        uri = _resolve(name, path.parent, f"{str(path)!r} row {i}")
        order.setdefault(uri, []).append(i)

    # pixel boxes of the polygons first: the median box size gives points their size
    scenes = {uri: _open_scene(uri, f"{str(path)!r} row {rows[0]}") for uri, rows in order.items()}
    px = np.full((len(frame), 4), np.nan)
    for uri, rows in order.items():
        rows_arr = np.array(rows)
        poly_rows = rows_arr[polygons[rows_arr]]
        if len(poly_rows):
            pixel = _to_pixels(geoms[poly_rows], frame.crs, scenes[uri], path, poly_rows)
            px[poly_rows] = shapely.bounds(pixel)
    side_px = None
    if points.any() and point_box_m is None:
        if not polygons.any():
            raise LabelsError(
                f"{str(path)!r}: point labels need a box size: pass point_box_m (metres), or "
                "include box (polygon) labels to take the median size from"
            )
        sizes = px[polygons][:, 2:] - px[polygons][:, :2]
        side_px = np.median(sizes, axis=0)
    for uri, rows in order.items():
        rows_arr = np.array(rows)
        point_rows = rows_arr[points[rows_arr]]
        if len(point_rows):
            boxes = _point_boxes(
                geoms[point_rows], frame.crs, scenes[uri], path, point_rows, point_box_m, side_px
            )
            px[point_rows] = _clip_inside(boxes, scenes[uri])
    out = []
    for uri, rows in order.items():
        names = [DEFAULT_LABEL if labels is None else _label(labels.iloc[i], path, i) for i in rows]
        where = [f"{str(path)!r} row {i}" for i in rows]
        out.append(SceneLabels(uri, _check_boxes(px[rows], scenes[uri], where), names))
    return out


def _label(value, path: Path, i: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LabelsError(f"{str(path)!r} row {i}: label={value!r} is not a class name")
    return value.strip()


def _scene_column(path: Path, columns: Iterable[str], scene_column: str | None) -> str:
    columns = list(columns)
    if scene_column is not None:
        if scene_column not in columns:
            raise LabelsError(
                f"{str(path)!r}: no column {scene_column!r} (scene_column); columns: {columns}"
            )
        return scene_column
    for name in SCENE_COLUMNS:
        if name in columns:
            return name
    raise LabelsError(
        f"{str(path)!r}: no column naming the scene (looked for {list(SCENE_COLUMNS)}); "
        f"pass scene_column= one of {[c for c in columns if c != 'geometry']}"
    )


def _to_pixels(geoms: np.ndarray, crs, scene: _Scene, path: Path, rows: Sequence[int]):
    """Geometries (in ``crs``; pixels when None) → the same geometries in scene pixels."""
    import shapely

    if crs is None:
        return geoms
    if scene.crs is None or scene.transform is None:
        raise LabelsError(
            f"{str(path)!r} row {rows[0]}: labels are in {crs.to_string()} but scene "
            f"{scene.uri!r} has no CRS or geotransform to place them"
        )
    from geopandas import GeoSeries

    in_scene_crs = GeoSeries(geoms, crs=crs).to_crs(scene.crs).values
    inverse = ~scene.transform

    def to_px(xy: np.ndarray) -> np.ndarray:
        cols, rows_ = inverse @ (xy[:, 0], xy[:, 1])
        return np.column_stack([cols, rows_])

    return shapely.transform(in_scene_crs, to_px)


def _point_boxes(geoms, crs, scene: _Scene, path: Path, rows, point_box_m, side_px):
    """(N, 4) pixel boxes for N points: ``point_box_m`` on the ground, else ``side_px`` (w, h)."""
    import shapely

    centres = shapely.get_coordinates(_to_pixels(geoms, crs, scene, path, rows))
    if point_box_m is not None:
        if scene.crs is None or scene.transform is None:
            raise LabelsError(
                f"{str(path)!r} row {rows[0]}: point_box_m needs the ground size of a pixel, "
                f"but scene {scene.uri!r} has no CRS or geotransform"
            )
        side_px = point_box_m / _ground_pixel_m(scene, centres)
    half = np.asarray(side_px) / 2
    return np.column_stack([centres - half, centres + half])


def _ground_pixel_m(scene: _Scene, centres: np.ndarray) -> np.ndarray:
    """(N, 2) ground metres spanned by one pixel along columns and rows at (N, 2) pixel points.

    Geodesic distances on the WGS 84 ellipsoid between the map positions of the pixel's
    neighbours, so degrees, feet, Web Mercator and rotated transforms all give true metres.
    """
    from pyproj import Geod, Transformer

    to_lonlat = Transformer.from_crs(scene.crs, "EPSG:4326", always_xy=True)
    geod = Geod(ellps="WGS84")

    def lonlat(cols, rows):
        return to_lonlat.transform(*(scene.transform @ (cols, rows)))

    c, r = centres[:, 0], centres[:, 1]
    sizes = []
    for dc, dr in ((0.5, 0.0), (0.0, 0.5)):
        lon0, lat0 = lonlat(c - dc, r - dr)
        lon1, lat1 = lonlat(c + dc, r + dr)
        sizes.append(geod.inv(lon0, lat0, lon1, lat1)[2])
    return np.column_stack(sizes)


# --- scenes and checks ---


def _clip_inside(boxes: np.ndarray, scene: _Scene) -> np.ndarray:
    """Clip (N, 4) boxes to the scene where their centre lies in it (a face at the edge)."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    inside = (cx >= 0) & (cx < scene.width) & (cy >= 0) & (cy < scene.height)
    out = boxes.copy()
    out[inside] = np.clip(boxes[inside], 0, [scene.width, scene.height] * 2)
    return out


def _resolve(name: str, base: Path, where: str) -> str:
    name = (name or "").strip()
    if not name:
        raise LabelsError(f"{where}: empty scene path")
    if "://" in name:
        return name
    p = Path(name).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _open_scene(uri: str, where: str) -> _Scene:
    if "://" not in uri and not Path(uri).is_file():
        raise LabelsError(f"{where}: scene {uri!r} does not exist")
    try:
        with rasterio.open(uri) as src:
            georeferenced = src.crs is not None and src.transform != Affine.identity()
            return _Scene(
                uri,
                src.width,
                src.height,
                src.crs if georeferenced else None,
                src.transform if georeferenced else None,
            )
    except RasterioError as e:
        raise LabelsError(f"{where}: cannot open scene {uri!r} ({e})") from e


def _check_boxes(boxes: np.ndarray, scene: _Scene, where: Sequence[str]) -> np.ndarray:
    """Reject non-finite, empty or out-of-scene boxes; clip the others to the scene."""
    for i, box in enumerate(boxes):
        if not np.isfinite(box).all():
            raise LabelsError(f"{where[i]}: box {box.tolist()} is not finite")
        if box[2] <= box[0] or box[3] <= box[1]:
            raise LabelsError(
                f"{where[i]}: box {box.tolist()} has a negative or zero size "
                "(expected xmin < xmax and ymin < ymax)"
            )
        if box[2] <= 0 or box[3] <= 0 or box[0] >= scene.width or box[1] >= scene.height:
            raise LabelsError(
                f"{where[i]}: box {box.tolist()} lies outside scene {scene.uri!r} "
                f"({scene.width} x {scene.height} px)"
            )
    if not len(boxes):
        return boxes
    clipped = boxes.copy()
    clipped[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, scene.width)
    clipped[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, scene.height)
    over = np.abs(clipped - boxes).max(axis=1) > EDGE_TOLERANCE_PX
    if over.any():
        log.warning("%s: %d box(es) overhang scene %r (%d x %d px) by up to %.0f px; clipped to it",
                    where[int(np.flatnonzero(over)[0])], int(over.sum()), scene.uri, scene.width,
                    scene.height, float(np.abs(clipped - boxes).max()))  # fmt: skip
    return clipped
