"""Small builders shared by tests: an untrained bundle and tiny GeoTIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import rasterio
from rasterio.transform import from_origin

UTM19N = "EPSG:32619"
S3_SECRET = "testing-SECRET-do-not-log"  # the secret key the s3_server fixture sets
ORIGIN = from_origin(400000.0, 4640000.0, 0.1, 0.1)


def untrained_bundle(path: Path, seed: int = 0, input_size: int = 64) -> Path:
    """A whalenet bundle with seeded random weights (enough for geometry and plumbing tests)."""
    import torch

    from models.bundle import save_bundle
    from models.nets import build_classifier

    torch.manual_seed(seed)
    model = build_classifier("whalenet", input_size)
    save_bundle(
        path, model, arch="whalenet", arch_args={}, input_size=input_size,
        mean=[0.5] * 3, std=[0.25] * 3, classes=["face", "not_face"], positive_class="face",
        output_stride=model.output_stride, receptive_field=model.receptive_field,
        object_size_px=input_size / 2,
    )  # fmt: skip
    return path


def untrained_detector_bundle(
    path: Path, seed: int = 0, width: int = 6, heat_bias: float = 0.0, heat_gain: float = 1.0
) -> Path:
    """An approach-3 detector bundle with seeded random weights; ``heat_bias`` raises the
    heatmap logits so random weights peak often (plenty of boxes for tiling tests) and
    ``heat_gain`` scales them so the peaks stand out from their neighbours."""
    import torch

    from models.bundle import save_bundle
    from models.detector import build_detector

    torch.manual_seed(seed)
    model = build_detector(width=width)
    with torch.no_grad():
        model.head[-1].bias[0] = heat_bias
        model.head[-1].weight[0] *= heat_gain
        model.head[-1].weight[0] *= heat_gain
    save_bundle(
        path, model, kind="detector", arch="centrenet", arch_args={"width": width},
        input_size=model.receptive_field, mean=[0.3] * 3, std=[0.2] * 3, classes=["whale_face"],
        positive_class="whale_face", output_stride=model.output_stride,
        receptive_field=model.receptive_field, object_size_px=32.0, max_box_px=96.0,
    )  # fmt: skip
    return path


def write_tif(path: Path, data: np.ndarray, crs: str | None = UTM19N, **profile) -> Path:
    """Write (bands, rows, cols) ``data`` as a tiled GeoTIFF (no CRS/transform when crs is None)."""
    count, height, width = data.shape
    geo = {"crs": crs, "transform": ORIGIN} if crs else {}
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=count,
        dtype=data.dtype, tiled=True, blockxsize=256, blockysize=256, **geo, **profile,
    ) as ds:  # fmt: skip
        ds.write(data)
    return path


def noise_scene(path: Path, width: int, height: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    return write_tif(path, (rng.random((3, height, width)) * 255).astype("uint8"))


def read_detections(reports: Path):
    """All detection rows under a reports root, sorted by box, as a pyarrow Table."""
    files = sorted((reports / "detections").rglob("*.parquet"))
    table = pads.dataset(files, format="parquet").to_table()
    return table.sort_by([("px_ymin", "ascending"), ("px_xmin", "ascending")])


def read_scene_rows(reports: Path):
    files = sorted((reports / "scenes").rglob("*.parquet"))
    return pads.dataset(files, format="parquet").to_table()


def labelled_set(out: Path, sizes: list[int], seed: int = 0, whales: int = 8) -> Path:
    """Synthetic scenes + ``annotations.csv`` in DeepForest layout (face boxes from the truth)."""
    import csv

    import pyarrow.parquet as pq

    from synth.scene import SceneSpec, write_scene
    from synth.truth import truth_path

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, size in enumerate(sizes):
        scene = out / f"scene_{i}.tif"
        write_scene(scene, SceneSpec(size, size, whales=whales, seed=seed * 1000 + i))
        truth = pq.read_table(truth_path(scene)).to_pydict()
        for box in zip(
            *(truth[k] for k in ("px_xmin", "px_ymin", "px_xmax", "px_ymax")), strict=True
        ):
            rows.append([scene.name, *box, "whale_face"])
    with open(out / "annotations.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_path", "xmin", "ymin", "xmax", "ymax", "label"])
        w.writerows(rows)
    return out / "annotations.csv"
