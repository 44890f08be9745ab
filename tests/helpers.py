"""Small builders shared by tests: untrained and trained bundles, tiny GeoTIFFs, labelled scenes, read-backs."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import rasterio
from rasterio.transform import from_origin

UTM19N = "EPSG:32619"
S3_SECRET = "testing-SECRET-do-not-log"  # the secret key the s3_server fixture sets
ORIGIN = from_origin(400000.0, 4640000.0, 0.1, 0.1)
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)  # when record_attempt's attempts start


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
    path: Path,
    seed: int = 0,
    width: int = 6,
    heat_bias: float = 0.0,
    heat_gain: float = 1.0,
    flips: int = 1,
) -> Path:
    """An approach-3 detector bundle with seeded random weights; ``heat_bias`` raises the
    heatmap logits so random weights peak often (plenty of boxes for tiling tests) and
    ``heat_gain`` scales them so the peaks stand out from their neighbours; ``flips``: its
    ``test_time_flips``."""
    import torch

    from models.bundle import save_bundle
    from models.detector import build_detector

    torch.manual_seed(seed)
    model = build_detector(width=width)
    with torch.no_grad():
        model.head[-1].bias[0] = heat_bias
        model.head[-1].weight[0] *= heat_gain
    save_bundle(
        path, model, kind="detector", arch="centrenet", arch_args={"width": width},
        input_size=model.receptive_field, mean=[0.3] * 3, std=[0.2] * 3, classes=["whale_face"],
        positive_class="whale_face", output_stride=model.output_stride,
        receptive_field=model.receptive_field, object_size_px=32.0, max_box_px=96.0,
        test_time_flips=flips,
    )  # fmt: skip
    return path


def trained_bundle(root: Path, seed: int = 11, n_chips: int = 400, epochs: int = 5) -> Path:
    """A whalenet really trained on synthetic 64-px chips, in this process (no Ray): ~5 s on 1 CPU.

    Every run with the same arguments gives the same weights (seeded init, shuffling and
    augmentation; one thread). Enough to find painted whales in scenes it has never seen.
    """
    import torch

    from models.augment import Augment
    from models.bundle import save_bundle
    from models.data import POSITIVE_CLASS, read_dataset
    from models.scorer import Normalize
    from models.train_loop import (
        ChipTensors,
        LoopConfig,
        build_model,
        make_optimizer,
        make_scheduler,
        torch_threads,
        train_one_epoch,
    )
    from synth.chips import write_chips

    write_chips(root / "chips", n=n_chips, size=64, seed=seed)
    data = read_dataset(root / "chips")
    loop = LoopConfig(input_size=64, mean=data.mean, std=data.std, epochs=epochs, seed=seed,
                      augment=("flip", "rot90"))  # fmt: skip
    model = build_model(loop)
    optimizer = make_optimizer(model.parameters(), loop)
    chips = ChipTensors(data.train.images, data.train.labels, Augment(loop.augment), seed=seed)
    loader = torch.utils.data.DataLoader(
        chips, batch_size=loop.batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    scheduler = make_scheduler(optimizer, loop, len(loader))
    with torch_threads(1):
        for epoch in range(epochs):
            chips.epoch = epoch
            train_one_epoch(model, loader, optimizer, scheduler, Normalize(data.mean, data.std))
    save_bundle(
        root / "bundle", model.eval(), arch="whalenet", arch_args={}, input_size=64,
        mean=data.mean, std=data.std, classes=list(data.classes), positive_class=POSITIVE_CLASS,
        output_stride=model.output_stride, receptive_field=model.receptive_field,
        object_size_px=data.face_size_px, data_fingerprint=data.fingerprint,
    )  # fmt: skip
    return root / "bundle"


def write_tif(path: Path, data: np.ndarray, crs: str | None = UTM19N, **profile) -> Path:
    """Write (bands, rows, cols) ``data`` as a tiled GeoTIFF (no CRS/transform when crs is None)."""
    count, height, width = data.shape
    geo = {"crs": crs, "transform": profile.pop("transform", ORIGIN)} if crs else {}
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=count,
        dtype=data.dtype, tiled=True, blockxsize=256, blockysize=256, **geo, **profile,
    ) as ds:  # fmt: skip
        ds.write(data)
    return path


def noise_scene(path: Path, width: int, height: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    return write_tif(path, (rng.random((3, height, width)) * 255).astype("uint8"))


def record_attempt(
    store, path: Path, dets, *, model="a" * 64, minutes=0, status="ok", crs=UTM19N, uri=None
):
    """Write one detect attempt on the GeoTIFF ``path`` into ``store`` as detect would: ``dets``
    are ``(box, score)`` pairs in scene px; it finishes ``minutes`` after ``T0``; a not-ok
    ``status`` records the error "read failed" and no detections. ``uri``: the scene URI recorded
    (default ``path``), e.g. the ``s3://`` copy a scan read."""
    from reports.geoparquet import detections_table
    from reports.ledger import write_scene_result
    from reports.run import Attempt, RunStamp, SceneRun
    from tiling.scene import Scene

    with rasterio.open(path) as ds:
        width, height = ds.width, ds.height
    scene = Scene(
        uri=uri or str(path), version="v1", modified=T0, width=width, height=height, bands=3,
        dtype="uint8", crs=crs, transform=ORIGIN if crs else None,
    )  # fmt: skip
    run = SceneRun(scene, RunStamp(f"run-{minutes}", model, "fcn", "torch:cpu"))
    done = T0 + timedelta(minutes=minutes)
    attempt = Attempt(status, None if status == "ok" else "read failed", 1.0, T0, done)
    table = None
    if status == "ok":
        boxes = np.array([b for b, _ in dets], np.float64).reshape(-1, 4)
        scores = np.array([s for _, s in dets], np.float32)
        table = detections_table(run, boxes, scores, label="whale_face", detected_at=done)
    write_scene_result(store, run, attempt, table)


def detect_inline(bundle, scene, out, **kw):
    """``run_detect`` on one scene in this process (torch unless ``backend`` is given)."""
    from jobs.detect import DetectConfig, run_detect

    kw.setdefault("backend", "torch")
    config = DetectConfig(bundle=str(bundle), out=str(out), scenes=(str(scene),), workers=0,
                          progress=False, **kw)  # fmt: skip
    return run_detect(config)


def read_detections(reports: Path):
    """All detection rows under a reports root, sorted by box, as a pyarrow Table."""
    files = sorted((reports / "detections").rglob("*.parquet"))
    table = pads.dataset(files, format="parquet").to_table()
    return table.sort_by([("px_ymin", "ascending"), ("px_xmin", "ascending")])


def px_boxes(table) -> np.ndarray:
    """(N, 4) [px_xmin, px_ymin, px_xmax, px_ymax] of a detections or truth table."""
    return np.stack([table[c].to_numpy() for c in ("px_xmin", "px_ymin", "px_xmax", "px_ymax")], 1)


def truth_boxes(scene: Path) -> np.ndarray:
    """The face boxes a synthetic scene's truth sidecar holds, scene px."""
    import pyarrow.parquet as pq

    from synth.truth import truth_path

    return px_boxes(pq.read_table(truth_path(scene)))


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


# --- labelled scenes: bright squares as faces ---

FACES = {  # scene → face box centres (col, row), 20 x 20 px bright squares
    "s0.tif": [(60, 60), (200, 150)],
    "s1.tif": [(100, 200), (300, 80)],
    "s2.tif": [(330, 220)],
}
BLOB = (250, 250)  # a white distractor in every scene, far from the faces
GSD = 0.05


def square_scene(path: Path, centres, dtype="uint8", crs="EPSG:32619", seed=0) -> np.ndarray:
    """A 400 x 300 scene of grey noise with a 20 px face square (R 200, G 120, B 200) centred on
    each of ``centres`` and a white distractor at ``BLOB``; ``GSD`` m pixels unless crs is None."""
    rng = np.random.default_rng(seed)
    data = (60 + rng.integers(0, 6, (3, 300, 400))).astype(np.float64)
    for cx, cy in centres:
        data[:, cy - 10 : cy + 10, cx - 10 : cx + 10] = 200
        data[1, cy - 10 : cy + 10, cx - 10 : cx + 10] = 120
    bx, by = BLOB
    data[:, by - 6 : by + 6, bx - 6 : bx + 6] = 250
    scale = 16 if dtype == "uint16" else 1
    write_tif(path, (data * scale).astype(dtype), crs=crs)
    if crs:
        with rasterio.open(path, "r+") as ds:
            ds.transform = from_origin(500000.0, 4600000.0, GSD, GSD)
    return data.astype(np.uint8)


def labelled_squares(tmp_path: Path) -> Path:
    """Three :func:`square_scene` GeoTIFFs and their DeepForest ``labels.csv``; returns the CSV."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, centres in FACES.items():
        square_scene(tmp_path / name, centres, seed=len(rows))
        rows += [[name, cx - 10, cy - 10, cx + 10, cy + 10, "whale_face"] for cx, cy in centres]
    path = tmp_path / "labels.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([["image_path", "xmin", "ymin", "xmax", "ymax", "label"], *rows])

    return path


# --- data-parallel exactness: 2 workers × b == 1 worker × 2b ---


def two_worker_weights(result) -> dict:
    """The weights in a Ray Train ``result``'s checkpoint."""
    from models.train_loop import load_weights

    with result.checkpoint.as_directory() as d:
        return load_weights(d)


def one_worker_reference(loop, build):
    """The single-worker side of the check: (``loop`` with twice the batch, ``build(loop)``'s
    model, its initial state, its optimizer)."""
    from dataclasses import replace

    from models.train_loop import make_optimizer

    one = replace(loop, batch_size=2 * loop.batch_size)
    model = build(one)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    return one, model, start, make_optimizer(model.parameters(), one)


def assert_same_step(two_workers: dict, model, start: dict) -> None:
    """Every parameter moved from ``start``, to where the two workers' step put it."""
    import torch

    for k, v in model.state_dict().items():
        assert not torch.equal(v, start[k]), f"{k} did not move: the step was a no-op"
        torch.testing.assert_close(two_workers[k], v, rtol=1e-5, atol=1e-6, msg=k)
