"""The deployable scorer: raw pixels in, whale-face probability map out.

Normalisation (bundle mean/std) and the calibrated softmax (bundle temperature) are part of the
network, so every backend (torch, ONNX Runtime, OpenVINO, TensorRT) runs the same graph and
callers never re-implement preprocessing.
"""

from __future__ import annotations

import torch
from torch import nn

from models.bundle import Bundle, load_model
from models.fcn import to_fcn


class Normalize(nn.Module):
    """(N, 3, H, W) pixels on the 0..255 scale → ``(x/255 − mean)/std`` per channel."""

    def __init__(self, mean, std):
        super().__init__()
        m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        # Folded into one multiply-add: x * scale + shift.
        self.register_buffer("scale", 1.0 / (255.0 * s))
        self.register_buffer("shift", -m / s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class PositiveProbability(nn.Module):
    """(N, C, H', W') logits → (N, H', W') calibrated probability of class ``index``."""

    def __init__(self, index: int, temperature: float = 1.0):
        super().__init__()
        self.index = index
        self.temperature = float(temperature)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits / self.temperature, dim=1)[:, self.index]


def build_scorer(bundle: Bundle, device: str = "cpu") -> nn.Sequential:
    """Bundle → eval-mode FCN scorer: (N, 3, H, W) float32 0..255 → (N, H', W') in 0..1.

    For H = W = ``bundle.input_size`` the output is (N, 1, 1): the classifier's chip score.
    A detector bundle gives (N, 5, H', W') ``[p, dx, dy, w, h]`` (:class:`models.detector.BoxOutputs`),
    averaged over the bundle's ``test_time_flips`` mirror/quarter-turn views,
    still as three modules (normalise, network, output activation) so backends treat both alike.
    """
    if bundle.kind == "detector":
        from models.detector import BoxOutputs, FlipAverage

        net = load_model(bundle, device="cpu")
        if bundle.test_time_flips > 1:
            net = FlipAverage(net, bundle.test_time_flips)
        parts = (
            Normalize(bundle.mean, bundle.std),
            net,
            BoxOutputs(net.output_stride, net.size_ref),
        )
        return nn.Sequential(*parts).to(device).eval()
    fcn = to_fcn(load_model(bundle, device="cpu"))
    scorer = nn.Sequential(
        Normalize(bundle.mean, bundle.std),
        fcn,
        PositiveProbability(bundle.positive_index, bundle.temperature),
    )
    return scorer.to(device).eval()
