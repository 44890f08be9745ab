"""The scene border: faces just inside every side are found, and the edge itself is never a face.

Outside the scene (and nodata) reads as the scene's median colour, so a read window that reaches
past the edge sees open water, not a dark band that a model takes for a whale's head (issue 9).
Scenes here are not the generator's default look and their sizes are not multiples of the
stride or the region.
"""

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from jobs.detect import DetectConfig, run_detect
from synth.scene import SceneSpec, write_scene
from tests.helpers import read_detections
from tiling.bands import resolve_scaling
from tiling.read import read_window

EDGE = 18  # face centre → nearest side, px: the face box (32 px long) is just inside
LOOKS = {  # raw → clip(raw^gamma · gain + offset): darker water, darker mid-tones, a lift
    "dark": (1.0, 0.6, 0.0),
    "gamma": (1.6, 1.0, 0.0),
    "lifted": (1.0, 0.9, 12.0),
}


def relook(path, gamma: float, gain: float, offset: float) -> None:
    with rasterio.open(path) as ds:
        data, profile = ds.read(), ds.profile
    out = (data / 255.0) ** gamma * 255.0 * gain + offset
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.clip(out, 1, 255).astype(np.uint8))


def edge_whales(width: int, height: int, rng) -> list[tuple[float, float, float]]:
    """One face just inside each side, head pointing out (heading 0 = up, 90 = right)."""
    x = lambda: float(rng.integers(80, width - 80))  # noqa: E731
    y = lambda: float(rng.integers(80, height - 80))  # noqa: E731
    return [
        (x(), EDGE, 0.0),
        (width - EDGE, y(), 90.0),
        (x(), height - EDGE, 180.0),
        (EDGE, y(), 270.0),
    ]


def detect(bundle, scene, out, region_size):
    config = DetectConfig(
        bundle=str(bundle), out=str(out), scenes=(str(scene),), backend="torch", workers=0,
        region_size=region_size, progress=False,
    )  # fmt: skip
    (o,) = run_detect(config)
    assert o.status == "ok", o.error
    t = read_detections(out)
    boxes = np.stack([t[c].to_numpy() for c in ("px_xmin", "px_ymin", "px_xmax", "px_ymax")], 1)
    return boxes, t["score"].to_numpy()


@pytest.mark.parametrize(
    ("look", "width", "height", "seed"),
    [("dark", 611, 477, 9101), ("lifted", 517, 645, 9202), ("gamma", 603, 541, 9303)],
)
def test_faces_on_all_four_sides_are_found_and_the_edges_are_not_faces(
    trained, tmp_path, look, width, height, seed
):
    whales = edge_whales(width, height, np.random.default_rng(seed))
    scene = tmp_path / "edges.tif"
    write_scene(
        scene, SceneSpec(width, height, whale_positions=whales, seed=seed, distractors=False)
    )
    relook(scene, *LOOKS[look])
    boxes, scores = detect(trained, scene, tmp_path / "one", region_size=4096)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    truth = np.array([(cx, cy) for cx, cy, _ in whales])
    dist = np.hypot(*(centres[:, None, :] - truth[None, :, :]).transpose(2, 0, 1))
    found = (dist <= 16).any(axis=0)
    assert found.all(), f"{look}: faces missed at {truth[~found].tolist()} (sides t, r, b, l)"
    x, y = centres[:, 0], centres[:, 1]
    reach = 32  # half a window: cells whose window hangs past the scene
    on_border = (x < reach) | (y < reach) | (x >= width - reach) | (y >= height - reach)
    false = centres[(dist > 16).all(axis=1) & on_border]
    assert len(false) == 0, f"{look}: false alarms on the border at {false.tolist()}"
    tiled, tiled_scores = detect(trained, scene, tmp_path / "tiled", region_size=200)
    np.testing.assert_allclose(tiled, boxes, atol=0.5)
    np.testing.assert_allclose(tiled_scores, scores, atol=1e-3)


def test_outside_and_nodata_read_as_the_scene_median_not_black(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.integers(90, 160, (3, 150, 130), dtype=np.uint8)
    data[:, :, :20] = 0  # a nodata collar
    path = tmp_path / "collar.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=130, height=150, count=3, dtype="uint8", nodata=0
    ) as ds:
        ds.write(data)
    with rasterio.open(path) as ds:
        scaling = resolve_scaling(ds, (1, 2, 3), "auto")
        median = np.median(data[:, :, 20:].reshape(3, -1), axis=1)
        np.testing.assert_allclose(scaling.fill, median, atol=3)  # from a decimated read
        px, valid = read_window(ds, "collar.tif", Window(-40, -30, 220, 100), (1, 2, 3), scaling)
    inside = np.zeros((100, 220), bool)
    inside[30:, 40:170] = True
    data_px = inside.copy()
    data_px[:, 40:60] = False
    assert (valid == data_px).all()
    fill = np.asarray(scaling.fill, np.float32)[:, None]
    assert (px[:, ~valid] == fill).all()
    assert (px[:, valid] == data[:, :70, 20:].reshape(3, -1)).all()
