"""The region detector: one model load per process, then (scene, region) → owned whale-face boxes.

Used as a plain object in-process and as a Ray actor (``ray.remote(RegionDetector)``) in
``jobs.detect``. Orchestration only: ``__call__`` reads the region (``tiling.read``), scores it
with the bundle's backend, and hands the heatmap to ``tiling.region_boxes`` (valid cells,
heatmap → boxes, NMS, core ownership).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from models.second_look import SecondLookSpec, candidate_threshold, in_use
from tiling.bands import Scaling
from tiling.centers import CentreParams, centre_boxes
from tiling.grid import Region
from tiling.read import read_window
from tiling.region_boxes import DecodeParams, heatmap_peaks, plan_scene_regions, region_boxes
from tiling.resample import ScoredGrid, ScoredView
from tiling.scene import SceneError, open_scene, scene_env

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorSettings:
    """How regions are scored and turned into boxes (shared by every actor of a run)."""

    mode: str = "fcn"  # "fcn": one pass of the FCN; "sliding": the classifier over windows;
    # "boxes": one pass of the approach-3 box detector (tiling.centers decodes its 5 channels)
    stride: int = 8  # heatmap stride in px (the bundle's output stride for fcn)
    threshold: float = 0.5
    nms_iou: float = 0.3
    batch_size: int = 64  # windows per forward call in sliding mode
    backend: str = "torch"
    device: str | None = None
    threads: int | None = None
    second_look: bool = True  # boxes: re-score candidates with the bundle's second look, if any

    def second_look_of(self, bundle) -> SecondLookSpec | None:
        """The bundle's second look if this run uses it (boxes mode, not turned off)."""
        return in_use(bundle, self.mode, self.second_look)

    def decode_params(self, bundle) -> DecodeParams | CentreParams:
        """How this run turns the bundle's heatmaps into boxes (window and box size from it).
        With a second look, ``threshold`` applies to the fused score, so the detector decodes
        every candidate that could still reach it."""
        if self.mode == "boxes":
            largest = bundle.max_box_px or 2 * bundle.box_size_px
            floor = self.threshold
            if self.second_look_of(bundle) is not None:
                floor = candidate_threshold(self.threshold)
            return CentreParams(self.stride, bundle.receptive_field, largest, floor, self.nms_iou)
        return DecodeParams(
            self.stride, bundle.input_size, bundle.box_size_px, self.threshold, self.nms_iou
        )


@dataclass(frozen=True)
class RegionTask:
    """One region of a scene; ``region`` is in pixels of ``grid`` (None: native pixels)."""

    scene: int  # index of the scene in the run
    uri: str
    region: Region
    bands: tuple[int, ...]
    scaling: Scaling
    grid: ScoredGrid | None = None


@dataclass(frozen=True)
class RegionResult:
    scene: int
    region: int
    boxes: np.ndarray  # (N, 4) float64 [xmin, ymin, xmax, ymax] native scene px, owned by the core
    scores: np.ndarray  # (N,) float32
    megapixels: float  # core megapixels scored
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
        self.params = settings.decode_params(self.bundle)
        self.decode = centre_boxes if settings.mode == "boxes" else heatmap_peaks
        self.second, self.chip = self._second_look(settings)
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
                boxes, scores = region_boxes(heat, valid, task.region, self.params, self.decode)
                if self.second is not None:
                    boxes, scores = self._look_again(pixels, task.region, boxes, scores)
            except Exception as e:  # a backend failure fails this region's scene, not the run
                log.warning("%s region %d: backend %s failed", task.uri, task.region.index,
                            label, exc_info=True)  # fmt: skip
                error = f"backend {label} failed: {type(e).__name__}: {e}"
                return RegionResult(
                    task.scene, task.region.index, _no_boxes(), _no_scores(), mp, error, label
                )
        if task.grid is not None:
            boxes = task.grid.to_native(boxes)
        return RegionResult(task.scene, task.region.index, boxes, scores, mp, None, label)

    def _second_look(self, settings: DetectorSettings):
        """The second look's classifier backend, on the detector's backend and device."""
        from models.backends import load_backend
        from models.second_look import check_halo

        spec = settings.second_look_of(self.bundle)
        if spec is None:
            return None, 0
        classifier = spec.load(self.bundle)
        check_halo(self.params.halo, classifier.input_size)
        backend = load_backend(
            settings.backend, classifier, device=settings.device, threads=settings.threads
        )
        return backend, classifier.input_size

    def _look_again(self, pixels, region: Region, boxes, scores):
        """The candidates re-scored by the second look (fused), those at ``threshold`` kept."""
        from models.second_look import cut_chips, fuse, view_mean

        origin = (int(region.read.col_off), int(region.read.row_off))
        chips = cut_chips(pixels, origin, boxes, self.chip)
        fused = fuse(scores, view_mean(self.second, chips))
        keep = fused >= self.settings.threshold
        return boxes[keep], fused[keep]

    def heatmap(self, pixels: np.ndarray) -> np.ndarray:
        """(3, h, w) 0..255 → (rows, cols) probabilities on the stride grid of the read window
        ((5, rows, cols) ``[p, dx, dy, w, h]`` in boxes mode)."""
        if self.settings.mode in ("fcn", "boxes"):
            return self.backend(pixels[None])[0]
        return self._sliding(pixels)

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
            ds = self._dataset(task.uri, task.grid)
            buffers = self._buffers(len(task.bands), task.region.read)
            return read_window(ds, task.uri, task.region.read, task.bands, task.scaling, buffers)

    def _buffers(self, bands: int, window) -> tuple[np.ndarray, np.ndarray] | None:
        """This thread's pixel/mask buffers, reused while regions keep the same read shape."""
        shape = (bands, int(window.height), int(window.width))
        held = getattr(self._local, "buffers", None)
        if held is None or held[0].shape != shape:
            held = self._local.buffers = (np.empty(shape, np.float32), np.empty(shape[1:], bool))
        return held

    def _dataset(self, uri: str, grid: ScoredGrid | None):
        """A reader of ``uri``'s pixels on ``grid``; a few recently used ones kept open, per
        thread: rasterio handles are not thread-safe."""
        cache = getattr(self._local, "scenes", None)
        if cache is None:
            cache = self._local.scenes = OrderedDict()
        key = (uri, grid)
        if key not in cache:
            ds = open_scene(uri)
            cache[key] = (ds, ScoredView(ds, grid)) if grid else (ds, None)
            while len(cache) > 2:
                ds_old, view_old = cache.popitem(last=False)[1]
                if view_old is not None:
                    view_old.close()
                ds_old.close()
        cache.move_to_end(key)
        ds, view = cache[key]
        return view.reader if view is not None else ds


def scene_regions(
    settings: DetectorSettings, bundle, width: int, height: int, region_size: int
) -> list[Region]:
    """A scene's regions for this run: cores of ``region_size`` px with the halo its decoding needs."""
    return plan_scene_regions(width, height, region_size, settings.decode_params(bundle))


def _no_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float64)


def _no_scores() -> np.ndarray:
    return np.zeros(0, np.float32)
