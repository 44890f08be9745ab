"""tiling.region_boxes: heatmap → owned boxes, pure (no Ray, no backend), against slow references."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.windows import Window

from tiling.grid import Region, plan_regions
from tiling.heatmap import find_peaks
from tiling.region_boxes import (
    DecodeParams,
    cell_valid,
    own,
    plan_scene_regions,
    region_boxes,
)


def slow_peaks(heat: np.ndarray, threshold: float, radius: int) -> set[tuple[int, int]]:
    """Cell by cell: ≥ threshold, > every neighbour before it in raster order, ≥ those after."""
    h, w = heat.shape
    out = set()
    for r in range(h):
        for c in range(w):
            v = heat[r, c]
            if v < threshold:
                continue
            ok = True
            for rr in range(max(0, r - radius), min(h, r + radius + 1)):
                for cc in range(max(0, c - radius), min(w, c + radius + 1)):
                    if (rr, cc) == (r, c):
                        continue
                    before = (rr, cc) < (r, c)
                    if (before and not v > heat[rr, cc]) or (not before and not v >= heat[rr, cc]):
                        ok = False
            if ok:
                out.add((r, c))
    return out


# Few distinct levels, so plateaus (ties) are common: the case raster-order tie-breaking is for.
levels = st.sampled_from([0.0, 0.3, 0.55, 0.7, 0.7, 0.9, 1.0])


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    radius=st.integers(1, 3),
    threshold=st.sampled_from([0.0, 0.5, 0.7]),
)
def test_find_peaks_matches_the_cell_by_cell_reference(data, h, w, radius, threshold):
    heat = np.array(data.draw(st.lists(levels, min_size=h * w, max_size=h * w)), np.float32)
    heat = heat.reshape(h, w)
    rows, cols = find_peaks(heat, threshold, radius)
    assert set(zip(rows.tolist(), cols.tolist(), strict=True)) == slow_peaks(
        heat, threshold, radius
    )
    assert list(zip(rows, cols, strict=True)) == sorted(zip(rows, cols, strict=True))


@settings(max_examples=80, deadline=None)
@given(
    width=st.integers(1, 400),
    height=st.integers(1, 400),
    core=st.integers(8, 200),
    points=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.floats(0, 1, exclude_max=True)), max_size=20
    ),
)
def test_each_point_of_the_scene_is_owned_by_exactly_one_region(width, height, core, points):
    params = DecodeParams(stride=8, window=32, box_size=16)
    regions = plan_scene_regions(width, height, core, params)
    step = max(8, core // 8 * 8)  # cores are rounded down to the stride (plan_regions)
    for fx, fy in points:
        cx, cy = fx * width, fy * height
        box = np.array([[cx - 8, cy - 8, cx + 8, cy + 8]])
        cx, cy = (box[0, 0] + box[0, 2]) / 2, (box[0, 1] + box[0, 3]) / 2  # the centre `own` sees
        if cx >= width or cy >= height:
            continue  # rounding put the centre on the scene's far edge: not a point of the scene
        owners = [r.index for r in regions if len(own(box, np.ones(1, np.float32), r, 0.3)[0])]
        # The obvious reference: cores are a raster of step×step squares from (0, 0).
        per_row = -(-width // step)
        assert owners == [int(cy // step) * per_row + int(cx // step)]


def _untiled(width: int, height: int, params: DecodeParams) -> Region:
    h = params.halo
    return Region(0, Window(0, 0, width, height), Window(-h, -h, width + 2 * h, height + 2 * h))


def _cells(read: Window, params: DecodeParams) -> tuple[int, int]:
    """(rows, cols) of the heatmap a window-sized, stride-stepped scorer gives for ``read``."""
    return (
        (int(read.height) - params.window) // params.stride + 1,
        (int(read.width) - params.window) // params.stride + 1,
    )


def _sorted(boxes: np.ndarray, scores: np.ndarray) -> list[tuple]:
    """Boxes to 1e-9 px: a sub-cell centre is ``col0 + col·stride`` with another ``col0`` per
    tile, which may differ from the untiled sum in the last bit."""
    return sorted(zip(map(tuple, boxes.round(9).tolist()), scores.tolist(), strict=True))


def _random_heat(rng, params: DecodeParams, width: int, height: int, density: float):
    """A scene-wide heatmap on the untiled region's grid and its valid mask: sparse bright blobs
    on a low background, some values quantised for plateaus, some nodata pixels."""
    whole = _untiled(width, height, params)
    rows, cols = _cells(whole.read, params)
    heat = rng.random((rows, cols)).astype(np.float32) * 0.4
    bright = rng.random((rows, cols)) < density
    heat[bright] = np.round(rng.uniform(0.5, 1.0, bright.sum()), 1)
    valid = np.zeros((int(whole.read.height), int(whole.read.width)), bool)
    h = params.halo
    valid[h : h + height, h : h + width] = rng.random((height, width)) > 0.05
    return whole, heat, valid


def _tiled(whole: Region, heat, valid, regions, params: DecodeParams) -> list[tuple]:
    """Each region's boxes from its slice of the scene-wide heatmap and mask, all together."""
    got_boxes, got_scores = [], []
    for region in regions:
        r0 = (int(region.read.row_off) - int(whole.read.row_off)) // params.stride
        c0 = (int(region.read.col_off) - int(whole.read.col_off)) // params.stride
        r_rows, r_cols = _cells(region.read, params)
        y0 = int(region.read.row_off) - int(whole.read.row_off)
        x0 = int(region.read.col_off) - int(whole.read.col_off)
        b, s = region_boxes(
            heat[r0 : r0 + r_rows, c0 : c0 + r_cols],
            valid[y0 : y0 + int(region.read.height), x0 : x0 + int(region.read.width)],
            region,
            params,
        )
        got_boxes.append(b)
        got_scores.append(s)
    return _sorted(np.concatenate(got_boxes), np.concatenate(got_scores))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    width=st.integers(40, 260),
    height=st.integers(40, 260),
    core=st.integers(16, 120),
    stride=st.sampled_from([4, 8]),
    window=st.sampled_from([16, 32]),
    box_size=st.sampled_from([12.0, 20.0, 32.0]),
    density=st.floats(0.0, 0.3),
)
def test_tiled_equals_untiled_on_random_heatmaps(
    seed, width, height, core, stride, window, box_size, density
):
    """Slicing one scene-wide heatmap into the regions' read windows changes no box or score."""
    params = DecodeParams(stride, window, box_size, threshold=0.5, nms_iou=0.3)
    rng = np.random.default_rng(seed)
    whole, heat, valid = _random_heat(rng, params, width, height, density)
    expected = _sorted(*region_boxes(heat, valid, whole, params))
    regions = plan_scene_regions(width, height, core, params)
    assert _tiled(whole, heat, valid, regions, params) == expected


def test_a_halo_short_of_the_peak_neighbourhood_makes_tiling_visible():
    """The halo is load-bearing: with detect's parameters for a 64-px whalenet, read windows
    grown by window/2 + one cell (the outermost owned peaks lack their neighbourhood) change
    the boxes of random heatmaps; the planned halo does not."""
    params = DecodeParams(stride=8, window=64, box_size=32.0)
    short = params.window // 2 + params.stride
    assert short < params.halo
    differs = []
    for seed in range(4):
        whole, heat, valid = _random_heat(np.random.default_rng(seed), params, 300, 260, 0.15)
        expected = _sorted(*region_boxes(heat, valid, whole, params))
        planned = plan_scene_regions(300, 260, 64, params)
        assert _tiled(whole, heat, valid, planned, params) == expected
        too_short = plan_regions(300, 260, 64, short, params.stride)
        differs.append(_tiled(whole, heat, valid, too_short, params) != expected)
    assert all(differs)


def test_invalid_cells_never_give_boxes():
    params = DecodeParams(stride=4, window=8, box_size=8)
    region = Region(0, Window(0, 0, 64, 64), Window(0, 0, 64, 64))
    heat = np.zeros(_cells(region.read, params), np.float32)
    heat[5, 5] = heat[10, 3] = 0.9
    valid = np.ones((64, 64), bool)
    boxes, scores = region_boxes(heat, valid, region, params)
    assert len(boxes) == 2 and scores.tolist() == pytest.approx([0.9, 0.9])
    valid[5 * 4 + 4, 5 * 4 + 4] = False  # the centre pixel of cell (5, 5)
    assert not cell_valid(valid, heat.shape, 4, 8)[5, 5]
    boxes, _ = region_boxes(heat, valid, region, params)
    assert boxes.tolist() == [[3 * 4 + 4 - 4, 10 * 4 + 4 - 4, 3 * 4 + 4 + 4, 10 * 4 + 4 + 4]]


def test_a_second_decoder_shares_masking_nms_and_ownership():
    """A decoder is any (heat, grid, params) → (boxes, scores); region_boxes does the rest."""
    params = DecodeParams(stride=4, window=8, box_size=10)
    region = Region(0, Window(0, 0, 20, 20), Window(-8, -8, 36, 36))

    def two_boxes(heat, grid, p):
        assert heat.shape == (2, 8, 8) and (grid.col0, grid.row0) == (-8, -8)
        return np.array([[0.0, 0, 10, 10], [1, 1, 11, 11], [30, 30, 40, 40]]), np.array(
            [0.6, 0.9, 0.8], np.float32
        )

    heat = np.ones((2, 8, 8), np.float32)
    boxes, scores = region_boxes(heat, np.ones((36, 36), bool), region, params, two_boxes)
    # NMS drops the weaker overlapping box; the third one's centre (35, 35) is outside the core.
    assert boxes.tolist() == [[1, 1, 11, 11]] and scores.tolist() == pytest.approx([0.9])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"stride": 0}, "stride="),
        ({"window": 2.5}, "window="),
        ({"box_size": 0}, "box_size="),
        ({"threshold": 1.5}, "threshold="),
        ({"nms_iou": -0.1}, "nms_iou="),
    ],
)
def test_decode_params_name_the_bad_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DecodeParams(**{"stride": 8, "window": 32, "box_size": 16.0, **kwargs})


def test_radius_and_halo_follow_box_size_and_stride():
    p = DecodeParams(stride=8, window=64, box_size=32)
    assert p.radius == 2  # half a box, in cells
    assert DecodeParams(stride=8, window=64, box_size=4).radius == 1  # at least one cell
    assert p.halo % 8 == 0
