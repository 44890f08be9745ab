"""The approach-3 box detector: a fully-convolutional centre-heatmap network (CenterNet/TTFNet style).

One output tensor of 5 channels per cell, so every backend that passes one tensor through runs it
unchanged: ``[p, dx, dy, w, h]`` — face-centre probability, the centre's offset from the cell's
anchor in pixels, and the box width and height in pixels (see :class:`BoxOutputs`).

Every layer is an unpadded ("valid") convolution or a ReLU — no normalisation, no pooling over
the tile — so cell (i, j) of the output is a pure function of the ``receptive_field``² input
window whose top-left pixel is (i·stride, j·stride): its anchor (the window centre) is at
``j·stride + receptive_field/2`` (x) and ``i·stride + receptive_field/2`` (y). That is the
geometry :class:`tiling.heatmap.CellGrid` describes, so the region/halo/ownership machinery keeps
tiled == untiled exactly. ``receptive_field`` and ``output_stride`` are computed from the layer
list (:func:`conv_geometry`), never assumed.
"""

from __future__ import annotations

import math

import torch
from torch import nn

HEAT_BIAS = -2.19  # CenterNet: sigmoid(−2.19) ≈ 0.1, so the focal loss starts out stable
CHANNELS = ("probability", "dx_px", "dy_px", "width_px", "height_px")


def conv_geometry(stack: nn.Module) -> tuple[int, int]:
    """(receptive field px, output stride px) of a chain of unpadded convs/pools (and pointwise layers).

    Walks the modules in order: each k×k layer with dilation d grows the field by (k − 1)·d·jump
    and multiplies the jump (the stride so far) by its own stride. Raises ValueError for padded
    layers, whose outputs near the edge would depend on where the tile ends.
    """
    field, jump = 1, 1
    for m in stack.modules():
        if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
            k, s, d, p = (
                _pair(getattr(m, a, 1)) for a in ("kernel_size", "stride", "dilation", "padding")
            )
            if p != 0:
                raise ValueError(f"layer {m!r} pads its input; the detector must be unpadded")
            field += (k - 1) * d * jump
            jump *= s
    return field, jump


def _pair(v) -> int:
    if isinstance(v, tuple):
        if len(set(v)) != 1:
            raise ValueError(f"non-square layer parameter {v}")
        return int(v[0])
    return int(v)


class CentreNet(nn.Module):
    """Stride-4 trunk of valid convolutions, dilated to a 135 px receptive field at the default
    ``dilations`` (1, 2, 4, 8), and 1×1 heads: (N, 3, H, W) normalised → (N, 5, H', W') raw.

    Stride 4, not 8: faces are 20–40 px and calves lie beside adults, so at stride 8 two centres
    can share a cell; stride 4 keeps neighbouring centres ≥ 2 cells apart (CenterNet's choice
    too). It costs little here: on 2 CPU cores the stride-2 stem dominates, and a stride-8 variant
    of the same width measured no faster (1.08 vs 1.33 s per MP, training steps equal). Dilation
    grows the field to most of a whale (~4.3 face lengths) — enough context to tell a face from
    flukes — without losing resolution. H' = ⌊(H − receptive_field)/4⌋ + 1.
    """

    kind = "detector"

    def __init__(self, width: int = 16, dilations: tuple[int, ...] = (1, 2, 4, 8),
                 size_ref: float = 32.0):  # fmt: skip
        super().__init__()
        w, c = width, 2 * width
        layers: list[nn.Module] = [
            nn.Conv2d(3, w, 3, stride=2), nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, stride=2), nn.ReLU(inplace=True),
            nn.Conv2d(w, c, 3), nn.ReLU(inplace=True),
        ]  # fmt: skip
        for d in dilations:
            layers += [nn.Conv2d(c, c, 3, dilation=d), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Conv2d(c, c, 1), nn.ReLU(inplace=True), nn.Conv2d(c, 5, 1))
        _init(self)
        self.receptive_field, self.output_stride = conv_geometry(self)
        self.input_size = self.receptive_field  # the smallest input that gives one cell
        self.size_ref = float(size_ref)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _init(net: CentreNet) -> None:
    """He-normal convolutions (no normalisation layers: PyTorch's default init shrinks the signal
    over nine layers until the output is constant), a small-std last layer as CenterNet's heads,
    and the heatmap bias at :data:`HEAT_BIAS`."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    last = net.head[-1]
    nn.init.normal_(last.weight, std=0.01)
    with torch.no_grad():
        last.bias[0] = HEAT_BIAS


class BoxOutputs(nn.Module):
    """Raw (N, 5, H', W') → physical outputs ``[p, dx, dy, w, h]``.

    p = sigmoid(raw₀); (dx, dy) = raw₁,₂ · stride pixels from the cell anchor; (w, h) =
    size_ref · exp(raw₃,₄) pixels (log-size regression: one relative error for calves and adults).
    The exp is clamped so a wild untrained output cannot overflow to inf.
    """

    def __init__(self, stride: int, size_ref: float):
        super().__init__()
        self.stride, self.size_ref = float(stride), float(size_ref)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(raw[:, 0:1])
        offset = raw[:, 1:3] * self.stride
        size = torch.exp(raw[:, 3:5].clamp(-6.0, 6.0)) * self.size_ref
        return torch.cat([p, offset, size], dim=1)


class FlipAverage(nn.Module):
    """Test-time flips: the mean of ``net``'s raw outputs over ``views`` symmetries of the input,
    each mapped back — 1: none; 2: + left-right; 4: + up-down and both; 8: the same four of the
    transposed image too (every mirror and quarter turn of the square).

    The input is first cut to ``receptive_field + k·stride`` px per side (the pixels it drops feed
    no cell), so a mirrored cell sees exactly the window of the cell it is mirrored onto and
    every output cell stays a pure function of its own window: tiled == untiled still holds. The
    offsets (raw₁ = dx, raw₂ = dy) change sign with their axis and a transpose swaps x and y
    (dx ↔ dy, w ↔ h); logits do not change. Flips, transposes and the sign vector are plain
    tensor ops, so every backend runs the averaged graph.
    """

    # (transposed, flipped dims) of each view; a prefix of 1, 2, 4 or 8 of them is used: the
    # prefixes closed under composition (models.bundle.TEST_TIME_VIEWS says the same, torch-free)
    VIEWS = tuple((t, d) for t in (False, True) for d in ((), (-1,), (-2,), (-2, -1)))
    COUNTS = (1, 2, 4, 8)
    SWAP_XY = (0, 2, 1, 4, 3)  # the channels of a transposed output, in the original's order

    def __init__(self, net: nn.Module, views: int):
        super().__init__()
        if views not in self.COUNTS:
            raise ValueError(f"test-time flips: got {views}, expected one of {self.COUNTS}")
        self.net, self.views = net, views
        self.receptive_field, self.output_stride = net.receptive_field, net.output_stride
        self.size_ref, self.kind = net.size_ref, net.kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rf, s = self.receptive_field, self.output_stride
        h, w = x.shape[-2], x.shape[-1]
        x = x[..., : h - (h - rf) % s, : w - (w - rf) % s]
        total = None
        for transposed, dims in self.VIEWS[: self.views]:
            y = self._view(x.transpose(-2, -1) if transposed else x, dims)
            if transposed:
                y = y.transpose(-2, -1)[:, list(self.SWAP_XY)]
            total = y if total is None else total + y
        return total / self.views

    def _view(self, x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        """``net`` on ``x`` mirrored along ``dims``, mirrored back (offsets' signs follow)."""
        if not dims:
            return self.net(x)
        y = torch.flip(self.net(torch.flip(x, dims)), dims)
        sign = [1.0, -1.0 if -1 in dims else 1.0, -1.0 if -2 in dims else 1.0, 1.0, 1.0]
        return y * torch.tensor(sign, dtype=y.dtype, device=y.device).view(1, 5, 1, 1)


ARCHS: dict[str, type[CentreNet]] = {"centrenet": CentreNet}


def build_detector(arch: str = "centrenet", **arch_args) -> CentreNet:
    """Construct an untrained detector by registry name (see :data:`ARCHS`)."""
    try:
        cls = ARCHS[arch]
    except KeyError:
        raise ValueError(
            f"unknown detector arch {arch!r}; expected one of {sorted(ARCHS)}"
        ) from None
    if "dilations" in arch_args:
        arch_args = {**arch_args, "dilations": tuple(arch_args["dilations"])}
    return cls(**arch_args)


def output_cells(length: int, receptive_field: int, stride: int) -> int:
    """Output cells along an input side of ``length`` px (0 when shorter than the field)."""
    return max(0, math.floor((length - receptive_field) / stride) + 1)
