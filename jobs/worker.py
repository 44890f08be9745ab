"""The region detector: one model load per process, then (scene, region) → owned whale-face boxes.

Used as a plain object in-process and as a Ray actor (``ray.remote(RegionDetector)``) in
``jobs.detect``; ``__call__`` delegates to ``tiling`` (read, heatmap → boxes, NMS, ownership) and
the bundle's backend (scores).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from tiling.bands import Scaling
from tiling.grid import Region, in_window, plan_regions, required_halo
from tiling.heatmap import CellGrid, heatmap_to_boxes
from tiling.nms import nms
from tiling.read import read_window
from tiling.scene import SceneError, open_scene, scene_env

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorSettings:
    """How regions are scored and turned into boxes (shared by every actor of a run)."""

    mode: str = "fcn"  # "fcn": one pass of the FCN; "sliding": the classifier over windows
    stride: int = 8  # heatmap stride in px (the bundle's output stride for fcn)
    threshold: float = 0.5
    nms_iou: float = 0.3
    batch_size: int = 64  # windows per forward call in sliding mode
    backend: str = "torch"
    device: str | None = None
    threads: int | None = None


@dataclass(frozen=True)
class RegionTask:
    scene: int  # index of the scene in the run
    uri: str
    region: Region
    bands: tuple[int, ...]
    scaling: Scaling


@dataclass(frozen=True)
class RegionResult:
    scene: int
    region: int
    boxes: np.ndarray  # (N, 4) float64 [xmin, ymin, xmax, ymax] scene px, owned by the core
    scores: np.ndarray  # (N,) float32
    megapixels: float  # core megapixels
    error: str | None = None
    backend: str = ""  # e.g. "torch:cpu", the `backend` column


class RegionDetector:
    """Callable worker: loads the bundle and its backend once; ``__call__(task)`` is pure.

    Reads run outside the compute lock, so an actor with ``max_concurrency=2`` reads the next
    region while the current one is being scored (read-ahead without a hand-written queue).
    """

    def __init__(self, bundle_path: str, settings: DetectorSettings):
        from models.backends import load_backend
        from models.bundle import load_bundle

        self.bundle = load_bundle(bundle_path)
        self.settings = settings
        self.backend = load_backend(
            settings.backend, self.bundle, device=settings.device, threads=settings.threads
        )
        self.window = self.bundle.input_size
        self.box_size = self.bundle.box_size_px
        self.radius = peak_radius(self.box_size, settings.stride)
        self._compute = threading.Lock()
        self._local = threading.local()

    @property
    def backend_label(self) -> str:
        return f"{self.backend.name}:{self.backend.device}"

    def __call__(self, task: RegionTask) -> RegionResult:
        core = task.region.core
        mp = core.width * core.height / 1e6
        label = self.backend_label
        try:
            pixels, valid = self._read(task)
        except SceneError as e:
            return RegionResult(
                task.scene, task.region.index, _no_boxes(), _no_scores(), mp, str(e), label
            )
        with self._compute:
            try:
                heat = self.heatmap(pixels)
            except Exception as e:  # a backend failure fails this region's scene, not the run
                log.warning("%s region %d: backend %s failed", task.uri, task.region.index,
                            label, exc_info=True)  # fmt: skip
                error = f"backend {label} failed: {type(e).__name__}: {e}"
                return RegionResult(
                    task.scene, task.region.index, _no_boxes(), _no_scores(), mp, error, label
                )
        boxes, scores = self.boxes(heat, valid, task)
        return RegionResult(task.scene, task.region.index, boxes, scores, mp, None, label)

    def heatmap(self, pixels: np.ndarray) -> np.ndarray:
        """(3, h, w) 0..255 → (rows, cols) probabilities on the stride grid of the read window."""
        if self.settings.mode == "fcn":
            return self.backend(pixels[None])[0]
        return self._sliding(pixels)

    def boxes(self, heat: np.ndarray, valid: np.ndarray, task: RegionTask):
        """Heatmap of the read window → NMS'd boxes whose centres lie in the region's core."""
        read, s = task.region.read, self.settings.stride
        grid = CellGrid(int(read.col_off), int(read.row_off), s, self.window)
        heat = np.where(_cell_valid(valid, heat.shape, s, self.window), heat, 0.0)
        boxes, scores = heatmap_to_boxes(
            heat, grid, self.settings.threshold, self.box_size, self.radius
        )
        keep = nms(boxes, scores, self.settings.nms_iou)
        boxes, scores = boxes[keep], scores[keep]
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        own = in_window(task.region.core, cx, cy)
        return boxes[own], scores[own]

    def _sliding(self, pixels: np.ndarray) -> np.ndarray:
        w, s, b = self.window, self.settings.stride, self.settings.batch_size
        views = np.lib.stride_tricks.sliding_window_view(pixels, (w, w), axis=(1, 2))[:, ::s, ::s]
        rows, cols = views.shape[1:3]
        flat = views.transpose(1, 2, 0, 3, 4).reshape(rows * cols, 3, w, w)
        out = np.empty(rows * cols, np.float32)
        for i in range(0, len(flat), b):
            out[i : i + b] = self.backend(np.ascontiguousarray(flat[i : i + b])).reshape(-1)
        return out.reshape(rows, cols)

    def _read(self, task: RegionTask):
        with scene_env(task.uri):
            ds = self._dataset(task.uri)
            buffers = self._buffers(len(task.bands), task.region.read)
            return read_window(ds, task.uri, task.region.read, task.bands, task.scaling, buffers)

    def _buffers(self, bands: int, window) -> tuple[np.ndarray, np.ndarray] | None:
        """This thread's pixel/mask buffers, reused while regions keep the same read shape."""
        shape = (bands, int(window.height), int(window.width))
        held = getattr(self._local, "buffers", None)
        if held is None or held[0].shape != shape:
            held = self._local.buffers = (np.empty(shape, np.float32), np.empty(shape[1:], bool))
        return held

    def _dataset(self, uri: str):
        """A few recently used scenes kept open, per thread: rasterio handles are not thread-safe."""
        cache = getattr(self._local, "scenes", None)
        if cache is None:
            cache = self._local.scenes = OrderedDict()
        if uri not in cache:
            cache[uri] = open_scene(uri)
            while len(cache) > 2:
                cache.popitem(last=False)[1].close()
        cache.move_to_end(uri)
        return cache[uri]


def scene_regions(bundle, stride: int, width: int, height: int, region_size: int) -> list[Region]:
    """A scene's regions: cores of ``region_size`` px, with the halo that keeps tiling invisible
    for this bundle's window and box size at heatmap ``stride``."""
    radius = peak_radius(bundle.box_size_px, stride)
    halo = required_halo(bundle.input_size, stride, bundle.box_size_px, radius)
    return plan_regions(width, height, region_size, halo, stride)


def peak_radius(box_size: float, stride: int) -> int:
    """Peaks closer than half a box are one object: radius in cells, at least 1."""
    return max(1, round(box_size / (2 * stride)))


def _cell_valid(valid: np.ndarray, shape: tuple[int, int], stride: int, window: int) -> np.ndarray:
    """A cell counts only if the pixel at its window centre is valid (inside the scene, not nodata)."""
    half = window // 2
    rows = np.arange(shape[0]) * stride + half
    cols = np.arange(shape[1]) * stride + half
    return valid[np.ix_(rows, cols)]


def _no_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float64)


def _no_scores() -> np.ndarray:
    return np.zeros(0, np.float32)
