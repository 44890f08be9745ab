"""Region planning and heatmap → boxes: pure functions, checked against obvious references."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.windows import Window

from tiling.grid import in_window, plan_regions
from tiling.heatmap import CellGrid, find_peaks, heatmap_to_boxes, refine


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 3000),
    height=st.integers(1, 3000),
    core=st.integers(8, 1500),
    halo=st.integers(0, 300),
    align=st.sampled_from([1, 4, 8, 16]),
)
def test_cores_partition_the_scene_and_reads_are_aligned(width, height, core, halo, align):
    regions = plan_regions(width, height, core, halo, align)
    covered = np.zeros((min(height, 64), min(width, 64)), int)  # spot-check the top-left corner
    total = 0
    for r in regions:
        c, rd = r.core, r.read
        total += c.width * c.height
        assert rd.col_off % align == 0 and rd.row_off % align == 0
        assert rd.col_off <= c.col_off and rd.col_off + rd.width >= c.col_off + c.width
        assert c.col_off - rd.col_off == c.row_off - rd.row_off >= halo
        covered[
            c.row_off : min(c.row_off + c.height, covered.shape[0]),
            c.col_off : min(c.col_off + c.width, covered.shape[1]),
        ] += 1
    assert total == width * height
    assert (covered == 1).all()
    assert [r.index for r in regions] == list(range(len(regions)))


def test_plan_rejects_empty_scene():
    with pytest.raises(ValueError, match="must be positive"):
        plan_regions(0, 10, 64, 8, 8)


def test_in_window_is_half_open():
    w = Window(10, 20, 5, 5)
    cols = np.array([10, 14.999, 15, 9.999])
    rows = np.array([20, 24.999, 20, 20])
    assert in_window(w, cols, rows).tolist() == [True, True, False, False]


def test_peaks_are_local_maxima_above_threshold():
    heat = np.zeros((9, 9), np.float32)
    heat[2, 2], heat[2, 3] = 0.9, 0.8  # one object spread over two cells
    heat[7, 7] = 0.6
    heat[5, 1] = 0.3  # below threshold
    rows, cols = find_peaks(heat, 0.5, radius=1)
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(2, 2), (7, 7)]


def test_plateau_gives_one_peak_whatever_the_offset():
    for r0, c0 in [(0, 0), (3, 1), (5, 6)]:
        heat = np.zeros((10, 10), np.float32)
        heat[r0 + 1 : r0 + 3, c0 + 1 : c0 + 3] = 1.0  # a saturated 2×2 plateau
        rows, cols = find_peaks(heat, 0.5, radius=2)
        assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == [(r0 + 1, c0 + 1)]


def test_refine_moves_towards_the_heavier_neighbour():
    heat = np.zeros((5, 5))
    heat[2, 2], heat[2, 3] = 1.0, 1.0
    fr, fc = refine(heat, np.array([2]), np.array([2]))
    assert fr[0] == pytest.approx(2.0)
    assert fc[0] == pytest.approx(2.5)


@pytest.mark.parametrize("r0, c0", [(1, 1), (2, 5), (6, 3)])
@pytest.mark.parametrize("shape", [(3, 3), (2, 3), (3, 2), (3, 4)])
def test_a_saturated_plateau_gives_a_box_centred_on_the_plateau(r0, c0, shape):
    # A calibrated classifier scores a face 1.0 over a block of cells; the peak test keeps the
    # block's first cell, and the box must still sit at the block's middle, not up and left.
    heat = np.zeros((12, 12), np.float32)
    heat[r0 : r0 + shape[0], c0 : c0 + shape[1]] = 1.0
    heat[r0 + 1, c0 - 1] = 0.2  # a weak tail: the centroid weighs it, a little
    grid = CellGrid(col0=0, row0=0, stride=8, window=64)
    boxes, _ = heatmap_to_boxes(heat, grid, threshold=0.5, box_size=32, radius=2)
    assert len(boxes) == 1
    mass = heat.sum()
    rows, cols = np.indices(heat.shape)
    want_cx = grid.centres(0, (heat * cols).sum() / mass)[0]
    want_cy = grid.centres((heat * rows).sum() / mass, 0)[1]
    np.testing.assert_allclose((boxes[0, :2] + boxes[0, 2:]) / 2, [want_cx, want_cy], atol=1e-9)


def test_boxes_are_centred_on_the_scored_window():
    heat = np.zeros((6, 6), np.float32)
    heat[3, 4] = 0.97
    grid = CellGrid(col0=-16, row0=8, stride=8, window=64)
    boxes, scores = heatmap_to_boxes(heat, grid, threshold=0.5, box_size=30, radius=1)
    # Window top-left = (col0 + 4·8, row0 + 3·8) = (16, 32); centre +32 → (48, 64).
    np.testing.assert_allclose(boxes, [[33, 49, 63, 79]])
    assert scores.tolist() == [pytest.approx(0.97)]
