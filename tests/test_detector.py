"""The approach-3 box detector: geometry, targets ↔ decoding, losses, and tiling invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from models.bundle import TEST_TIME_VIEWS
from models.centre_loss import centre_focal_loss, detector_loss
from models.detector import BoxOutputs, FlipAverage, build_detector, conv_geometry, output_cells
from models.scene_predict import predict_scene
from models.scorer import Normalize
from models.targets import cell_anchors, encode_targets
from tiling.centers import decode_centres
from tiling.heatmap import CellGrid


def _spread_boxes(rng, n, lo, hi, min_gap, sizes=(14, 48)):
    """n boxes with centres in [lo, hi)² at least ``min_gap`` px apart, sides in ``sizes``."""
    centres: list[np.ndarray] = []
    while len(centres) < n:
        c = rng.uniform(lo, hi, 2)
        if all(np.abs(c - o).max() >= min_gap for o in centres):
            centres.append(c)
    c = np.array(centres)
    wh = rng.uniform(*sizes, (n, 2))
    return np.concatenate([c - wh / 2, c + wh / 2], axis=1)


def test_geometry_is_computed_from_the_layers():
    net = build_detector(width=8)
    assert (net.receptive_field, net.output_stride) == (135, 4)
    assert conv_geometry(
        nn.Sequential(nn.Conv2d(3, 3, 5, stride=2), nn.Conv2d(3, 3, 3, dilation=3))
    ) == (17, 2)
    with pytest.raises(ValueError, match="pads"):
        conv_geometry(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1)))
    # The receptive field is the true one: a pixel just outside cell (0, 0)'s window changes
    # nothing there, the window's last pixel does.
    x = torch.rand(1, 3, 200, 200)
    base = net(x)[0, :, 0, 0]
    assert output_cells(200, 135, 4) == net(x).shape[-1]
    y = x.clone()
    y[..., 135, :] += 50
    y[..., :, 135] += 50
    assert torch.equal(net(y)[0, :, 0, 0], base)
    y = x.clone()
    y[..., 134, 134] += 50
    assert not torch.equal(net(y)[0, :, 0, 0], base)


def test_heat_bias_starts_at_centernet_prior():
    net = build_detector(width=8)
    assert net.head[-1].bias[0].item() == pytest.approx(-2.19)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_encode_then_decode_gives_the_boxes_back(seed):
    rng = np.random.default_rng(seed)
    rf, s, cells = 135, 4, 40
    lo, hi = rf / 2, rf / 2 + (cells - 1) * s
    boxes = _spread_boxes(rng, 6, lo, hi, min_gap=3 * s)
    t = encode_targets(boxes, cells, cells, rf, s)
    assert (t.heat == 1).sum() == len(boxes)
    # The ideal network output: the targets themselves, boxes as offsets from anchors + sizes.
    ax = cell_anchors(cells, rf, s)
    out = np.zeros((5, cells, cells), np.float32)
    out[0] = t.heat
    out[1] = (t.boxes[0] + t.boxes[2]) / 2 - ax[None, :]
    out[2] = (t.boxes[1] + t.boxes[3]) / 2 - ax[:, None]
    out[3] = t.boxes[2] - t.boxes[0]
    out[4] = t.boxes[3] - t.boxes[1]
    got, scores = decode_centres(out, CellGrid(100, 200, s, rf), 0.5, max_box_px=96)
    order = np.lexsort((got[:, 1], got[:, 0]))
    want = boxes[np.lexsort((boxes[:, 1], boxes[:, 0]))] + [100, 200, 100, 200]
    np.testing.assert_allclose(got[order], want, atol=1e-3)
    assert np.all(scores == 1)


def test_a_calf_sized_face_is_not_a_one_cell_target():
    """The 4 neighbours of a small face's peak get the heat an adult's do (about 0.25), so the
    focal loss does not punish the net for a centre that falls between two cells."""
    rf, s, cells = 135, 4, 20
    a = rf / 2 + 10 * s  # the anchor of cell (10, 10)
    for side in (14, 32):
        t = encode_targets(np.array([[a - side / 2, a - side / 2, a + side / 2, a + side / 2]]),
                           cells, cells, rf, s)  # fmt: skip
        assert t.heat[10, 10] == 1
        ring = t.heat[[9, 11, 10, 10], [10, 10, 9, 11]]
        assert np.all(ring > 0.2) and np.all(t.weight[[9, 11, 10, 10], [10, 10, 9, 11]] > 0), side


def test_decode_clips_offsets_and_sizes():
    out = np.zeros((5, 3, 3), np.float32)
    out[:, 1, 1] = [0.9, 50, -50, 500, 0.1]
    (box,), _ = decode_centres(out, CellGrid(0, 0, 4, 10), 0.5, max_box_px=40)
    # anchor (4 + 5, 4 + 5) = (9, 9); offset clipped to ±4, width to 40, height to ≥ 1
    np.testing.assert_allclose(box, [13 - 20, 5 - 0.5, 13 + 20, 5 + 0.5])


def test_focal_loss_rewards_the_right_heatmap():
    heat = torch.from_numpy(encode_targets(np.array([[80.0, 80, 112, 112]]), 20, 20, 135, 4).heat)[
        None
    ]
    good = torch.logit(heat.clamp(1e-3, 1 - 1e-3))
    bad = torch.full_like(heat, -2.19)
    assert centre_focal_loss(good, heat).item() < 0.1 * centre_focal_loss(bad, heat).item()


def test_loss_is_a_mean_of_per_crop_terms():
    """Splitting a batch changes nothing: the data-parallel step is the single-worker step."""
    net = build_detector(width=4)
    outputs = BoxOutputs(4, 32.0)
    rng = np.random.default_rng(0)
    x = torch.rand(4, 3, 175, 175)
    ts = [encode_targets(_spread_boxes(rng, 2, 70, 100, 12), 11, 11, 135, 4) for _ in range(4)]
    heat = torch.stack([torch.from_numpy(t.heat) for t in ts])
    boxes = torch.stack([torch.from_numpy(t.boxes) for t in ts])
    weight = torch.stack([torch.from_numpy(t.weight) for t in ts])
    raw = net(x)
    whole = detector_loss(raw, heat, boxes, weight, outputs, 135)[0]
    halves = [
        detector_loss(
            raw[i : i + 2], heat[i : i + 2], boxes[i : i + 2], weight[i : i + 2], outputs, 135
        )[0]
        for i in (0, 2)
    ]
    torch.testing.assert_close(whole, sum(halves) / 2)


def _painted_scene(rng, size, boxes):
    img = rng.integers(20, 60, (3, size, size)).astype(np.uint8)
    for x0, y0, x1, y1 in boxes.astype(int):
        img[:, y0:y1, x0:x1] = 230
        img[:, (y0 + y1) // 2, x0:x1] = 20
    return img


@pytest.mark.parametrize(("seed", "flips"), [(0, 1), (5, 1), (0, 4), (5, 2), (3, 8)])
def test_tiled_equals_untiled_on_random_weights(seed, flips):
    torch.manual_seed(seed)
    net = build_detector(width=6)
    with torch.no_grad():
        net.head[-1].bias[0] = 0.5  # plenty of peaks everywhere: a hard test for the seams
    net = FlipAverage(net, flips) if flips > 1 else net
    rng = np.random.default_rng(seed)
    size = 700 + 37 * seed
    img = _painted_scene(rng, size, _spread_boxes(rng, 12, 40, size - 40, 60))
    run = dict(receptive_field=135, threshold=0.3, max_box_px=96)
    norm, outs = Normalize((0.2,) * 3, (0.2,) * 3), BoxOutputs(4, 32.0)
    small = predict_scene(net, norm, outs, img, region=128, **run)
    whole = predict_scene(net, norm, outs, img, region=4096, **run)
    assert len(whole[0]) > 20
    a, b = np.lexsort(small[0].T[::-1]), np.lexsort(whole[0].T[::-1])
    assert len(small[0]) == len(whole[0])
    np.testing.assert_allclose(small[0][a], whole[0][b], atol=0.01)
    np.testing.assert_allclose(small[1][a], whole[1][b], atol=1e-5)


@pytest.mark.parametrize(("views", "dims"), [(2, (-1,)), (4, (-1,)), (4, (-2,)), (4, (-2, -1))])
def test_flip_average_is_mirror_equivariant(views, dims):
    """Mirroring the input mirrors the averaged output, with the offsets of the mirrored axes
    negated: the views are put back on the right cells with the right signs. Odd sizes check
    the cut to the cell grid (a mirrored cell must see its own window)."""
    torch.manual_seed(2)
    fa = FlipAverage(build_detector(width=6), views).eval()
    x = torch.rand(1, 3, 135 + 4 * 9 + 3, 135 + 4 * 12 + 1) * 255  # 3 and 1 px past the grid
    grid = x[..., : 135 + 4 * 9, : 135 + 4 * 12]  # what the cells see
    with torch.no_grad():
        y, y_mirrored = fa(x), fa(torch.flip(grid, dims))
    sign = torch.tensor([1.0, -1.0 if -1 in dims else 1.0, -1.0 if -2 in dims else 1.0, 1, 1])
    expected = torch.flip(y, dims) * sign.view(1, 5, 1, 1)
    torch.testing.assert_close(y_mirrored, expected, atol=1e-4, rtol=1e-4)
    plain = fa.net(grid)
    assert (y - plain).abs().max() > 1e-3  # the views differ: the average did something


@pytest.mark.parametrize("views", [1, 8])
def test_flip_average_of_eight_views_is_transpose_equivariant(views):
    """With eight views, transposing the input transposes the averaged output with x and y
    swapped (dx ↔ dy, w ↔ h); a single view is not, so the check can fail. Non-square, off-grid
    input checks the cut and the transposes back."""
    torch.manual_seed(4)
    fa = FlipAverage(build_detector(width=6), views).eval()
    grid = torch.rand(1, 3, 135 + 4 * 7, 135 + 4 * 11) * 255
    x = torch.nn.functional.pad(grid, (0, 2, 0, 3))  # 3 rows and 2 columns past the grid
    with torch.no_grad():
        y, y_t = fa(x), fa(grid.transpose(-2, -1))
    expected = y.transpose(-2, -1)[:, [0, 2, 1, 4, 3]]
    assert y_t.shape == expected.shape
    if views == 8:
        torch.testing.assert_close(y_t, expected, atol=1e-4, rtol=1e-4)
    else:
        assert (y_t - expected).abs().max() > 1e-3


def test_flip_average_rejects_other_view_counts():
    assert FlipAverage.COUNTS == TEST_TIME_VIEWS  # what bundle.json and the training config allow
    with pytest.raises(ValueError, match=r"expected one of \(1, 2, 4, 8\)"):
        FlipAverage(build_detector(width=4), 3)


def test_past_edge_pixels_take_the_scene_fill_as_if_the_scene_went_on_in_it():
    """With ``fill=c`` a cell whose view reaches past the edge scores what it scores on the
    scene padded with c (``tiling.read`` gives those pixels the scene's fill), not what it
    scores with a 0 fill. Compared: boxes 50–67 px from the edge, whose cells see past it
    (half the 135 px field) but whose peak neighbourhood (48 px) lies inside the scene."""
    torch.manual_seed(2)
    net = build_detector(width=6)
    with torch.no_grad():
        net.head[-1].bias[0] = 0.5
    rng = np.random.default_rng(2)
    size, pad, fill = 300, 92, np.array([40.0, 90.0, 120.0], np.float32)
    img = _painted_scene(rng, size, np.array([[54, 60, 90, 88], [200, 210, 246, 248]], float))
    padded = np.empty((3, size + 2 * pad, size + 2 * pad), np.uint8)
    padded[...] = fill.astype(np.uint8)[:, None, None]
    padded[:, pad:-pad, pad:-pad] = img
    run = dict(receptive_field=135, threshold=0.3, max_box_px=96, nms_iou=0.999, region=4096)
    norm, outs = Normalize((0.2,) * 3, (0.2,) * 3), BoxOutputs(4, 32.0)

    def near_edge(found, shift=0):
        boxes, scores = found
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2 - shift
        keep = ((centre >= 50) & (centre < size - 50)).all(1) & (
            (centre < 68) | (centre >= size - 68)
        ).any(1)
        order = np.lexsort(boxes[keep].T[::-1])
        return boxes[keep][order] - shift, scores[keep][order]

    filled = near_edge(predict_scene(net, norm, outs, img, fill=fill, **run))
    zero = near_edge(predict_scene(net, norm, outs, img, **run))
    padded = near_edge(predict_scene(net, norm, outs, padded, **run), pad)
    assert len(filled[0]) > 10
    assert len(filled[0]) == len(padded[0])
    np.testing.assert_allclose(filled[0], padded[0], atol=0.01)
    np.testing.assert_allclose(filled[1], padded[1], atol=1e-5)
    assert len(zero[0]) != len(padded[0]) or not np.allclose(zero[1], padded[1], atol=1e-3)
