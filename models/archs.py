"""Torch-free facts about the architectures in ``models.nets`` that the driver checks before a run.

``EXACT_FCN[arch]``: whether the FCN form scores every window exactly as the classifier scores
that window alone. Only unpadded nets have it: a padded convolution sees the zeros around a
region's read window, so near region borders its FCN scores change with ``--region-size`` and
tiling would show. ``tests/test_nets.py`` checks this table against the networks.
"""

from __future__ import annotations

EXACT_FCN: dict[str, bool] = {
    "whalenet": True,  # valid convolutions only
    "alexnet": False,  # padding=1–2 in conv2–5
    "resnet18": False,  # padded 3×3 convolutions and a global-pool head
}
