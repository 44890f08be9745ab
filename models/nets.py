"""Whale-face classifiers whose input size is the chip size and whose FCN geometry is declared.

Every network here is ``head(features(x))``: ``features`` is a convolutional stack and ``head``
turns its ``feature_size``×``feature_size`` map into class logits (N, num_classes). That split is
what :func:`models.fcn.to_fcn` rewrites into a fully-convolutional scorer.
"""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """Base: ``features`` + ``head``, with the geometry the detector needs.

    Attributes set by subclasses:
        input_size: chip side in pixels (square chips).
        output_stride: pixels between neighbouring heatmap cells of the FCN form.
        receptive_field: pixels one score looks at (the chip side for these classifiers).
        feature_size: side of the ``features`` map for one chip.
        exact_fcn: True when no layer pads, so FCN scores equal sliding-window scores exactly.
    """

    features: nn.Sequential
    head: nn.Sequential
    input_size: int
    exact_fcn: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, input_size, input_size) normalised float → (N, num_classes) logits."""
        return self.head(self.features(x))

    def _finish(self, input_size: int, feature_size: int, output_stride: int | None = None) -> None:
        self.input_size = input_size
        self.receptive_field = input_size
        self.feature_size = feature_size
        self.output_stride = output_stride or _stride(self.features)


def _stem(width: int) -> tuple[nn.Module, ...]:
    """The 5×5 stride-2 convolution (and ReLU) both small nets open with: halves a chip at once."""
    return nn.Conv2d(3, width, 5, stride=2), nn.ReLU(inplace=True)


def _stride(stack: nn.Module) -> int:
    stride = 1
    for m in stack:
        if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            stride *= s
    return stride


def _features_side(stack: nn.Sequential, input_size: int) -> int:
    """Side of ``stack``'s output map for one chip (a dry run on zeros)."""
    with torch.no_grad():
        try:
            side = int(stack(torch.zeros(1, 3, input_size, input_size)).shape[-1])
        except RuntimeError as e:
            raise ValueError(f"input_size {input_size} is too small for this network") from e
    if side < 1:
        raise ValueError(f"input_size {input_size} is too small for this network")
    return side


class WhaleNet(Classifier):
    """Compact CPU-first CNN with only unpadded ("valid") layers, so its FCN form is exact.

    Stride 8; no normalisation layers (batch statistics would break both the FCN equality and
    the data-parallel equivalence test). Works for chips from 32 to 256 px.
    """

    exact_fcn = True  # models.archs.EXACT_FCN says the same without torch

    def __init__(self, input_size: int = 64, num_classes: int = 2, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_stem(w),
            nn.Conv2d(w, 2 * w, 3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        k = _features_side(self.features, input_size)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(4 * w * k * k, 4 * w),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(4 * w, num_classes),
        )
        self._finish(input_size, k)


class AlexNetish(Classifier):
    """The course's AlexNet, scaled to small chips: 5 convs (padded like AlexNet) + 3 FC layers.

    Its FC layers become convolutions in the FCN form; the padding makes that form approximate
    near window borders, as it was in the course.
    """

    def __init__(self, input_size: int = 64, num_classes: int = 2, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_stem(w),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(w, 2 * w, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(2 * w, 3 * w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(3 * w, 3 * w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(3 * w, 2 * w, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        k = _features_side(self.features, input_size)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear(2 * w * k * k, 8 * w),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(8 * w, 8 * w),
            nn.ReLU(inplace=True),
            nn.Linear(8 * w, num_classes),
        )
        self._finish(input_size, k)


class ResNet18(Classifier):
    """torchvision's ResNet-18 trained from scratch (no weights exist offline); global-pool head."""

    def __init__(self, input_size: int = 64, num_classes: int = 2):
        super().__init__()
        from torchvision.models import resnet18

        r = resnet18(weights=None, num_classes=num_classes)
        self.features = nn.Sequential(
            r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3, r.layer4
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), r.fc)
        k = _features_side(self.features, input_size)
        self._finish(input_size, k, output_stride=32)  # stem 4 × three stride-2 stages


ARCHS: dict[str, type[Classifier]] = {
    "whalenet": WhaleNet,
    "alexnet": AlexNetish,
    "resnet18": ResNet18,
}


def build_classifier(arch: str, input_size: int, num_classes: int = 2, **arch_args) -> Classifier:
    """Construct an untrained classifier by registry name (see :data:`ARCHS`)."""
    try:
        cls = ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(ARCHS)}") from None
    return cls(input_size=input_size, num_classes=num_classes, **arch_args)
