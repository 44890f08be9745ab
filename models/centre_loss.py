"""Losses of the box detector: CenterNet's penalty-reduced focal loss + TTFNet's weighted GIoU.

Both are normalised per crop (by its own positives / regression weight) and then averaged over
the crops, so the loss is a mean of per-sample terms: K data-parallel workers × batch b take
exactly the step one worker takes on K·b (``tests/test_detector_train.py``).

``torchvision.ops.sigmoid_focal_loss`` is RetinaNet's (binary targets, α-balanced); CenterNet's
variant down-weights negatives near a centre by (1 − heat)⁴, which it lacks, so the heatmap term
is written here. The box term is ``torchvision.ops.generalized_box_iou_loss``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss

from models.detector import BoxOutputs

FOCAL_ALPHA, FOCAL_BETA = 2.0, 4.0
BOX_WEIGHT = 5.0  # TTFNet's GIoU weight


def centre_focal_loss(logits: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """(N, H, W) heatmap logits and targets (1 at centres) → (N,) per-crop loss / max(1, #centres)."""
    pos = heat >= 1.0
    log_p, log_1p = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = torch.sigmoid(logits)
    pos_term = -((1 - p) ** FOCAL_ALPHA) * log_p
    neg_term = -((1 - heat) ** FOCAL_BETA) * p**FOCAL_ALPHA * log_1p
    per_cell = torch.where(pos, pos_term, neg_term)
    n_pos = pos.flatten(1).sum(1).clamp(min=1)
    return per_cell.flatten(1).sum(1) / n_pos


def box_loss(
    raw: torch.Tensor, boxes: torch.Tensor, weight: torch.Tensor, outputs: BoxOutputs,
    receptive_field: int,
) -> torch.Tensor:  # fmt: skip
    """GIoU loss of the boxes predicted at weighted cells → (N,) per-crop Σ w·loss / Σ w (0 if none).

    ``raw``: (N, 5, H, W) network output; ``boxes``: (N, 4, H, W) target crop px; ``weight``: (N, H, W).
    """
    n, _, h, w = raw.shape
    out = outputs(raw)
    s = outputs.stride
    ax = torch.arange(w, dtype=raw.dtype, device=raw.device) * s + receptive_field / 2
    ay = torch.arange(h, dtype=raw.dtype, device=raw.device) * s + receptive_field / 2
    cx, cy = ax.view(1, 1, w) + out[:, 1], ay.view(1, h, 1) + out[:, 2]
    hw, hh = out[:, 3] / 2, out[:, 4] / 2
    pred = torch.stack([cx - hw, cy - hh, cx + hw, cy + hh], dim=-1)  # (N, H, W, 4)
    mask = weight > 0
    per_crop = torch.zeros(n, dtype=raw.dtype, device=raw.device)
    if mask.any():
        loss = generalized_box_iou_loss(
            pred[mask], boxes.permute(0, 2, 3, 1)[mask], reduction="none"
        )
        sample = torch.nonzero(mask)[:, 0]
        per_crop = per_crop.index_add(0, sample, loss * weight[mask])
    return per_crop / weight.flatten(1).sum(1).clamp(min=1e-6)


def detector_loss(raw, heat, boxes, weight, outputs: BoxOutputs, receptive_field: int):
    """Mean over crops of focal + BOX_WEIGHT · GIoU; returns (loss, focal mean, box mean)."""
    focal = centre_focal_loss(raw[:, 0], heat)
    giou = box_loss(raw, boxes, weight, outputs, receptive_field)
    return (focal + BOX_WEIGHT * giou).mean(), focal.detach().mean(), giou.detach().mean()
