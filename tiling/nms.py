"""Non-maximum suppression of boxes within one region, with ONNX Runtime's ``NonMaxSuppression``.

Not ``torchvision.ops.nms``: importing torch and torchvision for it cost ~4 s of every run's
start-up (bench/README.md, Start-up), while onnxruntime is a core dependency that the default
backend loads anyway. onnx and onnxruntime are imported on first use, so ``import tiling`` stays
light. The operator is greedy and quadratic, as torchvision's: call it per region (thousands of
boxes), never on a whole scene's worth at once.

Semantics match torchvision's (checked against it in tests/test_nms.py): in descending score
order a box is kept unless its IoU with a kept box is *greater* than the threshold, IoU computed in
float32 as ``inter / (area1 + area2 - inter)`` (ONNX Runtime's ``SuppressByIOU``); equal scores
go in index order (torchvision sorts stably; ORT's priority queue would not, so it is given ranks).
"""

from __future__ import annotations

import threading

import numpy as np

_session = None
_session_lock = threading.Lock()


def _nms_session():
    """One InferenceSession per process for the one-node graph; ``run`` is thread-safe.

    Inputs: ``boxes`` (1, N, 4) float32 [y1, x1, y2, x2] (``center_point_box=0``), ``scores``
    (1, 1, N) float32, ``max_out`` int64 (1,), ``iou`` float32 (1,). Output ``selected``
    (K, 3) int64 rows (batch, class, box) in the order the boxes were kept.
    """
    global _session
    with _session_lock:
        if _session is None:
            import onnxruntime as ort
            from onnx import TensorProto, helper

            node = helper.make_node(
                "NonMaxSuppression", ["boxes", "scores", "max_out", "iou"], ["selected"],
                center_point_box=0,
            )  # fmt: skip
            graph = helper.make_graph(
                [node], "nms",
                [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, None, 4]),
                 helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, None]),
                 helper.make_tensor_value_info("max_out", TensorProto.INT64, [1]),
                 helper.make_tensor_value_info("iou", TensorProto.FLOAT, [1])],
                [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])],
            )  # fmt: skip
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
            model.ir_version = 7  # opset 11's IR: any onnxruntime ≥ 1.18 loads it
            options = ort.SessionOptions()
            # One small kernel per region, called from each actor's region threads: no pool.
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.log_severity_level = 3  # warnings about unused thread pools are noise here
            _session = ort.InferenceSession(
                model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        return _session


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of ``boxes`` (N, 4) [xmin, ymin, xmax, ymax] kept at IoU threshold ``iou``.

    ``scores`` (N,); a box is dropped when its IoU with a higher-scored kept box is > ``iou``.
    Returned as int64, sorted ascending, so callers keep their original (raster) order.
    """
    if not 0.0 <= iou <= 1.0:
        raise ValueError(f"iou={iou}: an IoU threshold must lie in 0..1")
    if len(boxes) != len(scores):
        raise ValueError(f"boxes: {len(boxes)} rows but scores: {len(scores)} values")
    n = len(boxes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # Ranks as scores: descending by score, ties by index, exact in float32 below 2**24 boxes.
    order = np.lexsort((np.arange(n), -np.asarray(scores)))
    ranks = np.empty(n, np.float32)
    ranks[order] = np.arange(n, 0, -1, dtype=np.float32)
    yxyx = np.asarray(boxes, np.float32)[:, [1, 0, 3, 2]]
    (selected,) = _nms_session().run(
        None,
        {"boxes": yxyx[None], "scores": ranks[None, None],
         "max_out": np.array([n], np.int64), "iou": np.array([iou], np.float32)},
    )  # fmt: skip
    return np.sort(selected[:, 2])
