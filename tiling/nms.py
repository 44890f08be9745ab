"""Non-maximum suppression of boxes within one region, with ``torchvision.ops.nms``.

torch is imported on first use so that ``import tiling`` stays light. torchvision's NMS is
quadratic: call it per region (thousands of boxes), never on a whole scene's worth at once.
"""

from __future__ import annotations

import numpy as np


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of ``boxes`` (N, 4) [xmin, ymin, xmax, ymax] kept at IoU threshold ``iou``.

    Returned sorted ascending, so callers keep their original (raster) order.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    import torch
    from torchvision.ops import nms as tv_nms

    keep = tv_nms(torch.from_numpy(boxes.astype(np.float32)), torch.from_numpy(scores), iou)
    return np.sort(keep.numpy())
