"""The box detector over a whole in-memory scene, region by region — for validation and mining.

Uses the same regions, halo, decoding, NMS and ownership as ``whalescan detect`` (which reads
regions from files on Ray actors instead), so validation AP measures what detection will do.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.detector import BoxOutputs
from models.scene_window import cut_window
from tiling.centers import CentreParams, centre_boxes
from tiling.region_boxes import plan_scene_regions, region_boxes


@torch.inference_mode()
def predict_scene(
    net: nn.Module, normalize: nn.Module, outputs: BoxOutputs, image: np.ndarray, *,
    receptive_field: int, threshold: float, max_box_px: float, nms_iou: float = 0.3,
    region: int = 1024, fill: np.ndarray | float = 0,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """uint8/float (3, H, W) 0..255 scene → (boxes (N, 4) float64 scene px, scores (N,) float32).

    ``net`` gives raw (N, 5, H', W') outputs. Pixels past the scene edge take ``fill`` (the
    scene's (3,) colour there, as :func:`tiling.read.read_window` gives them; default 0) and
    cannot peak.
    """
    was_training = net.training
    net.eval()
    params = CentreParams(int(outputs.stride), receptive_field, max_box_px, threshold, nms_iou)
    _, h, w = image.shape
    found_boxes, found_scores = [], []
    for r in plan_scene_regions(w, h, region, params):
        read = r.read
        x0, y0, rw, rh = int(read.col_off), int(read.row_off), int(read.width), int(read.height)
        pixels, valid = cut_window(image, x0, y0, rw, rh, fill)
        out = outputs(net(normalize(torch.from_numpy(pixels)[None])))[0].numpy()
        b, s = region_boxes(out, valid, r, params, centre_boxes)
        found_boxes.append(b)
        found_scores.append(s)
    net.train(was_training)
    return np.concatenate(found_boxes), np.concatenate(found_scores)
