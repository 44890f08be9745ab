"""Small charts for the HTML report, drawn with PIL (no plotting library): the score histogram
and precision/recall curves."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from reports.overview import label_font

__all__ = ["pr_chart", "score_histogram"]

_BAR_RGB = (31, 119, 180)
_AXIS_RGB = (60, 60, 60)
_GRID_RGB = (225, 225, 225)
_CURVE_RGB = ((31, 119, 180), (214, 39, 40), (44, 160, 44))


def score_histogram(
    scores: np.ndarray, bins: int = 20, width: int = 480, height: int = 240
) -> Image.Image:
    """A ``width`` × ``height`` px RGB bar chart of ``scores`` (N,) in ``bins`` bins over 0..1.

    The x axis is the score (ticks every 0.1), the y axis the count per bin (ticks at the top
    count and at half of it). Scores outside 0..1 are clipped into the end bins; an empty input
    draws empty axes with "no detections".
    """
    if bins < 1 or width < 160 or height < 120:
        raise ValueError(
            f"score_histogram: bins={bins}, {width}×{height} px; need ≥1 bin, ≥160×120"
        )
    values = np.clip(np.asarray(scores, dtype=np.float64).reshape(-1), 0.0, 1.0)
    counts, _ = np.histogram(values, bins=bins, range=(0.0, 1.0))
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = label_font(11)
    left, right, top, bottom = 44, width - 12, 12, height - 34  # plot area, px
    top_count = int(counts.max()) if len(values) else 0
    for tick in sorted({top_count // 2, top_count} - {0}):  # grid lines at whole counts
        y = bottom - tick / top_count * (bottom - top)
        draw.line((left, y, right, y), fill=_GRID_RGB)
        draw.text((left - 6, y), str(tick), fill=_AXIS_RGB, font=font, anchor="rm")
    bar_w = (right - left) / bins
    for i, n in enumerate(counts):
        if n:
            x0 = left + i * bar_w
            y0 = bottom - n / top_count * (bottom - top)
            draw.rectangle((x0 + 1, y0, x0 + bar_w - 1, bottom), fill=_BAR_RGB)
    draw.line((left, bottom, right, bottom), fill=_AXIS_RGB)
    draw.line((left, top, left, bottom), fill=_AXIS_RGB)
    for tick in range(11):
        x = left + tick / 10 * (right - left)
        draw.line((x, bottom, x, bottom + 4), fill=_AXIS_RGB)
        if tick % 2 == 0:
            draw.text((x, bottom + 6), f"{tick / 10:.1f}", fill=_AXIS_RGB, font=font, anchor="mt")
    draw.text(((left + right) / 2, height - 4), "score", fill=_AXIS_RGB, font=font, anchor="mb")
    draw.text((4, bottom), "count", fill=_AXIS_RGB, font=font, anchor="lb")
    if not top_count:
        draw.text(
            ((left + right) / 2, (top + bottom) / 2), "no detections", fill=_AXIS_RGB, font=font,
            anchor="mm",
        )  # fmt: skip
    return image


def pr_chart(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], width: int = 360, height: int = 300
) -> Image.Image:
    """A ``width`` × ``height`` px RGB chart of precision (y) against recall (x), both 0..1.

    ``curves`` maps a legend label to ``(recall, precision)``, each (N,), in rank order (one
    point per detection kept); each is drawn as a step line from (0, 1) through its points, in
    its own colour (up to three). An empty curve draws only its legend entry.
    """
    if width < 200 or height < 160 or not 1 <= len(curves) <= len(_CURVE_RGB):
        raise ValueError(
            f"pr_chart: {len(curves)} curve(s), {width}×{height} px; need 1–3 curves, ≥200×160"
        )
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = label_font(11)
    left, right, top, bottom = 40, width - 12, 24, height - 34

    def xy(r: float, p: float) -> tuple[float, float]:
        return left + r * (right - left), bottom - p * (bottom - top)

    for tick in range(0, 11, 2):
        v = tick / 10
        x, y = xy(v, v)
        draw.line((x, top, x, bottom), fill=_GRID_RGB)
        draw.line((left, y, right, y), fill=_GRID_RGB)
        draw.text((x, bottom + 6), f"{v:.1f}", fill=_AXIS_RGB, font=font, anchor="mt")
        draw.text((left - 6, y), f"{v:.1f}", fill=_AXIS_RGB, font=font, anchor="rm")
    draw.line((left, bottom, right, bottom), fill=_AXIS_RGB)
    draw.line((left, top, left, bottom), fill=_AXIS_RGB)
    for k, (label, (recall, precision)) in enumerate(curves.items()):
        colour = _CURVE_RGB[k]
        points, last = [xy(0.0, 1.0)], 1.0
        for r, p in zip(np.asarray(recall, float), np.asarray(precision, float), strict=True):
            points += [xy(r, last), xy(r, p)]  # a step: recall moves first, then precision
            last = p
        if len(points) > 1:
            draw.line(points, fill=colour, width=3 if k == 0 else 1)  # coinciding curves show
        draw.text((right - 4, bottom - 6 - 14 * k), label, fill=colour, font=font, anchor="rb")
    draw.text(((left + right) / 2, height - 4), "recall", fill=_AXIS_RGB, font=font, anchor="mb")
    draw.text((4, 4), "precision", fill=_AXIS_RGB, font=font, anchor="lt")
    return image
