"""The fully-convolutional rewrite: a classifier that scores every stride-aligned window at once.

A Linear layer that follows a flatten of a k×k×C map becomes a k×k convolution with the same
weights (the flatten order C, H, W is the conv weight layout); later Linear layers become 1×1
convolutions; a global-pool head becomes a k×k average pool with stride 1 (the pool over one chip).
"""

from __future__ import annotations

import torch
from torch import nn

from models.nets import Classifier


def to_fcn(model: Classifier) -> nn.Sequential:
    """Return the FCN form of ``model``: (N, 3, H, W) → (N, num_classes, H', W') logits.

    Cell (i, j) scores the window whose top-left pixel is (row, col) = (i·s, j·s), with
    ``s = model.output_stride``, and H' = ⌊(H − input_size)/s⌋ + 1 for the exact (unpadded) nets.
    Shares no parameters with ``model``.
    """
    k = model.feature_size
    layers: list[nn.Module] = []
    for m in model.head:
        if isinstance(m, nn.Flatten):
            continue
        if isinstance(m, nn.AdaptiveAvgPool2d):
            layers.append(nn.AvgPool2d(k, stride=1))
            k = 1
        elif isinstance(m, nn.Linear):
            layers.append(_linear_as_conv(m, k))
            k = 1
        elif isinstance(m, nn.ReLU | nn.Dropout):
            layers.append(type(m)())
        else:
            raise TypeError(f"cannot rewrite head layer {m!r} as a convolution")
    import copy

    return WindowCrop(
        model.input_size, model.output_stride, copy.deepcopy(model.features), *layers
    ).eval()


class WindowCrop(nn.Sequential):
    """The FCN layers, with the heatmap cut to the windows that lie wholly inside the input.

    A net whose layers floor away a chip's last pixel row (whalenet at 64 px looks at 63) emits one
    more cell when H − input_size ≡ s − 1 (mod s); that cell's window would hang over the edge,
    and no sliding window has it. Cropping keeps H' = ⌊(H − input_size)/s⌋ + 1 for every H.
    """

    def __init__(self, input_size: int, stride: int, *layers: nn.Module):
        super().__init__(*layers)
        self.input_size, self.stride = input_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = (x.shape[-2] - self.input_size) // self.stride + 1
        cols = (x.shape[-1] - self.input_size) // self.stride + 1
        return super().forward(x)[..., :rows, :cols]


def _linear_as_conv(linear: nn.Linear, k: int) -> nn.Conv2d:
    if linear.in_features % (k * k):
        raise ValueError(f"Linear({linear.in_features}) does not follow a {k}×{k} map")
    conv = nn.Conv2d(linear.in_features // (k * k), linear.out_features, k)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.view(linear.out_features, -1, k, k))
        conv.bias.copy_(linear.bias)
    return conv


def heatmap_cells(length: int, input_size: int, stride: int) -> int:
    """Number of stride-aligned windows of ``input_size`` that fit in ``length`` pixels."""
    return max(0, (length - input_size) // stride + 1)
