"""Scene pictures for the HTML report: a decimated overview, boxes drawn on it, chips around boxes.

Nothing here reads a scene at full resolution as a whole: the overview is one decimated read
(``ds.read(out_shape=...)``, which GDAL serves from the GeoTIFF's overviews when it has them) and
each chip is a windowed read of a small window around one box. Boxes are
``(px_xmin, px_ymin, px_xmax, px_ymax)`` in scene pixels (column, row), max exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import rasterio
from PIL import Image, ImageDraw, ImageFont
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.windows import Window, WindowError

from tiling.bands import Scaling, resolve_scaling, select_bands
from tiling.scene import SceneError

__all__ = [
    "MAX_OVERVIEW_PX",
    "MIN_OVERVIEW_PX",
    "TRUTH_RGB",
    "Display",
    "Overview",
    "density_overlay",
    "display_bands",
    "draw_boxes",
    "label_font",
    "overview_size",
    "read_chip",
    "read_overview",
]

MIN_OVERVIEW_PX = 512  # long side of an overview, whatever the scene size
MAX_OVERVIEW_PX = 1600
BOX_RGB = (255, 212, 0)  # yellow: visible on dark sea and on white foam alike
TRUTH_RGB = (0, 230, 255)  # cyan: labelled faces, told apart from the yellow detections
NODATA_RGB = (60, 60, 60)


@dataclass(frozen=True)
class Display:
    """How a scene is shown: 1-based band indexes for R, G, B and their 0..255 scaling."""

    bands: tuple[int, ...]
    scaling: Scaling


@dataclass(frozen=True)
class Overview:
    """A whole-scene picture: ``image`` (RGB) and its size relative to the scene.

    ``scale_x``/``scale_y`` are overview pixels per scene pixel (columns, rows).
    """

    image: Image.Image
    scale_x: float
    scale_y: float


def display_bands(ds: rasterio.DatasetReader, uri: str) -> Display:
    """RGB bands by colour interpretation (band 1 as grey for 1–2 band scenes), scaled ``auto``."""
    try:
        bands = select_bands(ds, uri, None)
    except SceneError:
        bands = (1, 1, 1)  # a grey scene still gets a picture, though detect refuses it
    return Display(bands, resolve_scaling(ds, bands, "auto"))


def overview_size(width: int, height: int, long_side: int = 1024) -> tuple[int, int]:
    """(out_width, out_height) of an overview of a ``width`` × ``height`` px scene.

    The long side is ``long_side`` clamped to [MIN_OVERVIEW_PX, MAX_OVERVIEW_PX] — small scenes
    are enlarged so boxes stay visible — and the aspect ratio is kept (each side ≥ 1 px).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"scene size {width}×{height} px: expected positive sides")
    target = min(max(long_side, MIN_OVERVIEW_PX), MAX_OVERVIEW_PX)
    f = target / max(width, height)
    return max(1, round(width * f)), max(1, round(height * f))


def read_overview(
    ds: rasterio.DatasetReader, uri: str, display: Display, long_side: int = 1024
) -> Overview:
    """A decimated RGB picture of the whole scene (see ``overview_size``); nodata shown grey.

    Memory is bounded by the overview size: GDAL picks the nearest internal/external overview
    level and averages down from it, block by block.
    """
    out_w, out_h = overview_size(ds.width, ds.height, long_side)
    resampling = Resampling.average if out_w < ds.width else Resampling.nearest
    try:
        raw = ds.read(
            list(display.bands), out_shape=(len(display.bands), out_h, out_w),
            resampling=resampling, masked=True,
        )  # fmt: skip
    except RasterioError as e:
        raise SceneError(f"{uri!r}: overview read failed ({str(e).splitlines()[0]})") from e
    image = _to_image(display.scaling.apply(raw.data), np.ma.getmaskarray(raw).any(axis=0))
    return Overview(image, out_w / ds.width, out_h / ds.height)


def _to_image(pixels: np.ndarray, invalid: np.ndarray | None = None) -> Image.Image:
    """(3, rows, cols) float 0..255 → RGB image, ``invalid`` (rows, cols) pixels in NODATA_RGB."""
    rgb = np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    if invalid is not None and invalid.any():
        rgb = rgb.copy()
        rgb[invalid] = NODATA_RGB
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB")


@lru_cache(maxsize=4)
def label_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at ``size`` px (needs FreeType, which Pillow's wheels include)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def draw_boxes(
    overview: Overview,
    px_boxes: np.ndarray,
    scores: np.ndarray,
    label_top: int = 40,
    outline: tuple[int, int, int] = BOX_RGB,
) -> Image.Image:
    """A copy of the overview with every box outlined in ``outline`` and the ``label_top`` best
    scores written.

    ``px_boxes`` (N, 4) scene pixels; ``scores`` (N,). Boxes smaller than 5 overview px are
    drawn 5 px wide around their centre so they stay visible on a large scene; labels go above
    the box (below it at the top edge), white on black.
    """
    image = overview.image.copy()
    draw = ImageDraw.Draw(image)
    boxes = _overview_boxes(overview, px_boxes)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    font = label_font(12)
    line = 2 if max(image.size) >= 800 else 1
    for x0, y0, x1, y1 in boxes:
        draw.rectangle((x0, y0, x1, y1), outline=outline, width=line)
    for i in np.argsort(-scores, kind="stable")[:label_top]:
        x0, y0, _x1, y1 = boxes[i]
        text = f"{scores[i]:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        ty = y0 - th - 3 if y0 - th - 3 >= 0 else y1 + 2
        tx = min(max(0, x0), image.width - tw - 2)
        draw.rectangle((tx, ty, tx + tw + 2, ty + th + 2), fill=(0, 0, 0))
        draw.text((tx + 1 - left, ty + 1 - top), text, fill=(255, 255, 255), font=font)
    return image


def _overview_boxes(overview: Overview, px_boxes: np.ndarray) -> np.ndarray:
    """(N, 4) scene-pixel boxes → integer overview-pixel rectangles (inclusive corners, ≥ 5 px)."""
    boxes = np.asarray(px_boxes, dtype=np.float64).reshape(-1, 4)
    sx, sy = overview.scale_x, overview.scale_y
    x0, y0, x1, y1 = boxes[:, 0] * sx, boxes[:, 1] * sy, boxes[:, 2] * sx, boxes[:, 3] * sy
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w, half_h = np.maximum((x1 - x0) / 2, 2.5), np.maximum((y1 - y0) / 2, 2.5)
    out = np.stack([cx - half_w, cy - half_h, cx + half_w - 1, cy + half_h - 1], axis=1)
    return np.rint(out).astype(int)


def density_overlay(
    overview: Overview, px_boxes: np.ndarray, scores: np.ndarray, alpha: float = 0.6
) -> Image.Image:
    """The overview with a score-weighted density of box centres laid over it (red = many/strong).

    A detection-density heatmap from the report alone (no model run): box centres are binned
    with their scores on a grid of about half a box per cell, smoothed (Gaussian, σ = 1 cell,
    truncated at 3σ), scaled to its maximum and shown in red with opacity ∝ density.
    """
    w, h = overview.image.size
    boxes = np.asarray(px_boxes, dtype=np.float64).reshape(-1, 4)
    opacity = Image.new("L", (w, h), 0)
    if len(boxes):
        box_px = float(np.median(boxes[:, 2] - boxes[:, 0])) * overview.scale_x
        cell = max(2.0, box_px / 2)  # overview px per grid cell
        gw, gh = max(1, int(np.ceil(w / cell))), max(1, int(np.ceil(h / cell)))
        cx = (boxes[:, 0] + boxes[:, 2]) / 2 * overview.scale_x / cell
        cy = (boxes[:, 1] + boxes[:, 3]) / 2 * overview.scale_y / cell
        grid = np.zeros((gh, gw), np.float64)
        cols, rows = np.clip(cx.astype(int), 0, gw - 1), np.clip(cy.astype(int), 0, gh - 1)
        np.add.at(grid, (rows, cols), np.asarray(scores, dtype=np.float64).reshape(-1))
        kernel = np.exp(-0.5 * np.arange(-3, 4) ** 2)
        kernel /= kernel.sum()
        for axis in (0, 1):
            grid = np.apply_along_axis(np.convolve, axis, grid, kernel, mode="same")
        grid /= max(grid.max(), 1e-12)
        small = Image.fromarray((grid * alpha * 255).astype(np.uint8), "L")
        opacity = small.resize((w, h), Image.Resampling.BILINEAR)
    red = Image.new("RGB", (w, h), (255, 0, 0))
    return Image.composite(red, overview.image, opacity)


def read_chip(
    ds: rasterio.DatasetReader,
    uri: str,
    display: Display,
    px_box: np.ndarray,
    margin: float = 0.5,
    size: int = 160,
) -> Image.Image:
    """A ``size``-px (long side) picture of one box and ``margin`` × its size around it, box drawn.

    A windowed read clipped to the scene (edges outside it are grey); boxes larger than ``size``
    are read decimated (``out_shape``), so one chip never costs more than ``size``² pixels.
    """
    x0, y0, x1, y1 = (float(v) for v in np.asarray(px_box, dtype=np.float64).reshape(4))
    pad = margin * max(x1 - x0, y1 - y0, 1.0)
    c0, r0 = int(np.floor(x0 - pad)), int(np.floor(y0 - pad))
    c1, r1 = int(np.ceil(x1 + pad)), int(np.ceil(y1 + pad))
    win_w, win_h = c1 - c0, r1 - r0
    f = size / max(win_w, win_h)  # chip px per scene px
    out_w, out_h = max(1, round(win_w * f)), max(1, round(win_h * f))
    chip = Image.new("RGB", (out_w, out_h), NODATA_RGB)
    try:
        inner = Window(c0, r0, win_w, win_h).intersection(Window(0, 0, ds.width, ds.height))
    except WindowError:  # a box wholly off the scene: nothing to read, the frame stays grey
        inner = None
    if inner is not None:
        _paste_window(ds, uri, display, chip, inner, (c0, r0), f)
    draw = ImageDraw.Draw(chip)
    draw.rectangle(
        ((x0 - c0) * f, (y0 - r0) * f, (x1 - c0) * f - 1, (y1 - r0) * f - 1),
        outline=BOX_RGB, width=2,
    )  # fmt: skip
    return chip


def _paste_window(
    ds: rasterio.DatasetReader,
    uri: str,
    display: Display,
    chip: Image.Image,
    inner: Window,
    origin: tuple[int, int],
    f: float,
) -> None:
    """Read ``inner`` (scene px) at ``f`` chip px per scene px into ``chip``, whose (0, 0) is
    scene pixel ``origin`` (col, row)."""
    c0, r0 = origin
    ic0, ir0 = int(inner.col_off), int(inner.row_off)
    iw, ih = int(inner.width), int(inner.height)
    read_w, read_h = max(1, min(iw, round(iw * f))), max(1, min(ih, round(ih * f)))
    try:
        raw = ds.read(
            list(display.bands), window=inner, out_shape=(len(display.bands), read_h, read_w),
            resampling=Resampling.average if read_w < iw else Resampling.nearest, masked=True,
        )  # fmt: skip
    except RasterioError as e:
        raise SceneError(
            f"{uri!r}: chip read failed at {inner!r} ({str(e).splitlines()[0]})"
        ) from e
    part = _to_image(display.scaling.apply(raw.data), np.ma.getmaskarray(raw).any(axis=0))
    part = part.resize((max(1, round(iw * f)), max(1, round(ih * f))), Image.Resampling.NEAREST)
    chip.paste(part, (round((ic0 - c0) * f), round((ir0 - r0) * f)))
