"""NMS (ONNX Runtime's operator) against a slow greedy reference and against torchvision's."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tiling.nms import nms

REPO = Path(__file__).resolve().parent.parent


def _iou(a, b):
    """Slow, obvious IoU of two [xmin, ymin, xmax, ymax] boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _greedy_nms(boxes, scores, iou):
    """Slow, obvious reference: take the best remaining box, drop those overlapping it > iou."""
    kept, left = [], sorted(range(len(boxes)), key=lambda i: -scores[i])
    while left:
        best = left.pop(0)
        kept.append(best)
        left = [i for i in left if _iou(boxes[best], boxes[i]) <= iou]
    return sorted(kept)


@settings(max_examples=80, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(4, 30), st.integers(0, 999)),
        max_size=25,
        unique_by=lambda t: t[3],  # distinct scores: the greedy order is well defined
    ),
    iou=st.sampled_from([0.1, 0.3, 0.5, 0.7]),
)
def test_nms_keeps_what_greedy_suppression_keeps(data, iou):
    boxes = np.array([[x, y, x + s, y + s] for x, y, s, _ in data], np.float64).reshape(-1, 4)
    scores = np.array([k / 1000 for *_, k in data], np.float32)
    # An IoU that equals the threshold is decided by float32 rounding in torchvision: not a case
    # the greedy rule defines, so Hypothesis draws other boxes.
    assume(all(abs(_iou(a, b) - iou) > 1e-5 for a in boxes.tolist() for b in boxes.tolist()))
    keep = nms(boxes, scores, iou)
    assert keep.dtype == np.int64
    assert keep.tolist() == _greedy_nms(boxes.tolist(), scores.tolist(), iou)


def test_nms_drops_the_weaker_of_two_overlapping_boxes_and_keeps_raster_order():
    boxes = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [1, 0, 11, 10], [100, 0, 110, 10]], float)
    scores = np.array([0.6, 0.5, 0.9, 0.7], np.float32)
    assert nms(boxes, scores, 0.3).tolist() == [1, 2, 3]  # box 0 overlaps box 2 (IoU 9/11)
    assert nms(boxes, scores, 0.9).tolist() == [0, 1, 2, 3]
    assert nms(np.zeros((0, 4)), np.zeros(0, np.float32), 0.3).tolist() == []


def _far_from_threshold(boxes: np.ndarray, iou: float) -> bool:
    """No pair's IoU within 1e-5 of the threshold: float32 rounding decides those (torchvision
    compares a float32 IoU with the double threshold, ONNX Runtime with a float32 one)."""
    return all(abs(_iou(a, b) - iou) > 1e-5 for a in boxes.tolist() for b in boxes.tolist())


@settings(max_examples=150, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.floats(0, 200, width=32),
            st.floats(0, 200, width=32),
            st.floats(1, 80, width=32),
            st.floats(1, 80, width=32),
            st.integers(0, 20),  # few score levels: equal scores are common, as saturated peaks
        ),
        max_size=60,
    ),
    iou=st.sampled_from([0.0, 0.1, 0.3, 0.45, 0.5, 0.7, 0.9, 1.0]),
)
def test_nms_keeps_what_torchvision_keeps(data, iou):
    torch = pytest.importorskip("torch")
    from torchvision.ops import nms as tv_nms

    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h, _ in data], np.float32).reshape(-1, 4)
    scores = np.array([k / 20 for *_, k in data], np.float32)
    assume(_far_from_threshold(boxes, iou))
    expected = np.sort(tv_nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou).numpy())
    assert nms(boxes, scores, iou).tolist() == expected.tolist()


def test_equal_scores_keep_the_first_box_as_torchvision_does():
    pair = np.array([[0, 0, 10, 10], [1, 0, 11, 10]], float)  # IoU 9/11
    for boxes in (pair, pair[::-1]):
        assert nms(boxes, np.array([0.5, 0.5], np.float32), 0.3).tolist() == [0]
    assert nms(pair, np.array([0.5, 0.6], np.float32), 0.3).tolist() == [1]
    row = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10], [40, 0, 50, 10]], float)
    assert nms(row, np.full(4, 0.5, np.float32), 0.3).tolist() == [0, 2, 3]  # 1 overlaps 0 by 1/3


def test_nms_from_many_threads_matches_one_thread():
    """Ray actors run two regions at once in threads: one shared session must give each call
    its own answer."""
    rng = np.random.default_rng(7)
    cases = []
    for n in (0, 1, 50, 400, 2000):
        xy = rng.uniform(0, 1500, (n, 2))
        boxes = np.hstack([xy, xy + rng.uniform(8, 60, (n, 2))])
        cases.append((boxes, rng.random(n).astype(np.float32)))
    alone = [nms(b, s, 0.3).tolist() for b, s in cases]
    with ThreadPoolExecutor(8) as ex:
        together = list(ex.map(lambda i: nms(*cases[i % 5], 0.3).tolist(), range(40)))
    assert together == [alone[i % 5] for i in range(40)]
    assert len(alone[4]) < 2000 and len(alone[1]) == 1  # the big case does suppress


def test_nms_does_not_import_torch():
    code = """
import sys
import numpy as np
from tiling.nms import nms
print(nms(np.array([[0, 0, 10, 10], [1, 0, 11, 10]], float), np.array([.4, .6], np.float32), .3))
sys.exit(1 if any(m.split(".")[0] in ("torch", "torchvision") for m in sys.modules) else 0)
"""
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": ""},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "[1]"


@pytest.mark.parametrize(
    "boxes,scores,iou,message",
    [
        (np.zeros((2, 4)), np.zeros(2, np.float32), 1.5, "iou=1.5"),
        (np.zeros((2, 4)), np.zeros(2, np.float32), float("nan"), "iou=nan"),
        (np.zeros((2, 4)), np.zeros(3, np.float32), 0.3, "2 rows but scores: 3"),
    ],
)
def test_nms_rejects_bad_input_by_name(boxes, scores, iou, message):
    with pytest.raises(ValueError, match=message):
        nms(boxes, scores, iou)
