"""Small charts for the HTML report, drawn with PIL (no plotting library): the score histogram."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from reports.overview import label_font

__all__ = ["score_histogram"]

_BAR_RGB = (31, 119, 180)
_AXIS_RGB = (60, 60, 60)
_GRID_RGB = (225, 225, 225)


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
