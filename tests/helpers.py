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


def write_tif(
    path: Path, data: np.ndarray, crs: str | None = UTM19N, transform=ORIGIN, **profile
) -> Path:
    """Write (bands, rows, cols) ``data`` as a tiled GeoTIFF (no CRS/transform when crs is None)."""
    count, height, width = data.shape
    geo = {"crs": crs, "transform": transform} if crs else {}
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
