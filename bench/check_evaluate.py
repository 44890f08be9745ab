"""``whalescan evaluate`` against pycocotools' COCOeval on the same reports and labels.

Scores REPORTS against LABELS with ``jobs.evaluate_detections.run_evaluate`` and again with
COCOeval (the independent scorer the tests also use), at each IoU threshold, and prints per
scene the true positives of both, the overall recall of both, and the largest difference between
COCOeval's 101-point precision and our interpolated PR curve sampled at the same recalls; writes
bench/results/evaluate.json.

Usage: python -m bench.check_evaluate REPORTS LABELS [--iou 0.5,0.75]
"""

from __future__ import annotations

import argparse
import contextlib
import io

import numpy as np

from bench.common import save


def coco_eval(evaluation, threshold: float):
    """COCOeval (bbox, one class, every detection kept, any area) on ``evaluation``'s scenes as
    images 1..n in its scene order, detections in its rank order; returns ``(COCOeval,
    {image id: true positives})``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for image_id, s in enumerate(evaluation.scenes, 1):
        images.append({"id": image_id})
        for x0, y0, x1, y1 in s.truth_boxes.tolist():
            w, h = x1 - x0, y1 - y0
            anns.append({
                "id": len(anns) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "bbox": [x0, y0, w, h], "area": w * h,
            })  # fmt: skip
        for (x0, y0, x1, y1), score in zip(s.det_boxes.tolist(), s.scores.tolist(), strict=True):
            dets.append({
                "image_id": image_id, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                "score": score,
            })  # fmt: skip
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "f"}]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets) if dets else COCO(), "bbox")
        ev.params.iouThrs = np.array([threshold])
        ev.params.maxDets = [10_000]
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e12]], ["all"]
        ev.evaluate()
        ev.accumulate()
    matched = {
        e["image_id"]: int((e["dtMatches"][0] > 0).sum()) for e in ev.evalImgs if e is not None
    }
    return ev, matched


def sampled_precision(evaluation, recall_points: np.ndarray) -> np.ndarray:
    """Our overall IoU PR curve, interpolated (max precision at ≥ recall), at ``recall_points``
    (COCO's rule: the first rank reaching each recall; 0 past the curve's end)."""
    _, precision, recall = evaluation.overall("iou").pr_curve()
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    at = np.searchsorted(recall, recall_points, side="left")
    return np.where(at < len(recall), envelope[np.minimum(at, len(recall) - 1)], 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports")
    parser.add_argument("labels")
    parser.add_argument("--iou", default="0.5,0.75")
    args = parser.parse_args()
    from jobs.evaluate_detections import EvaluateConfig, run_evaluate

    results = []
    for threshold in (float(v) for v in args.iou.split(",")):
        evaluation = run_evaluate(EvaluateConfig(args.reports, args.labels, threshold))
        ev, matched = coco_eval(evaluation, threshold)
        ours = [int(s.by_iou.tp.sum()) for s in evaluation.scenes]
        coco = [matched.get(i + 1, 0) for i in range(len(evaluation.scenes))]
        gap = float(
            np.abs(
                ev.eval["precision"][0, :, 0, 0, 0]
                - sampled_precision(evaluation, ev.params.recThrs)
            ).max()
        )
        overall = evaluation.to_dict()["overall"]
        row = {
            "iou": threshold, "scenes": len(ours), "tp_ours": ours, "tp_coco": coco,
            "recall_ours": overall["iou"]["recall"],
            "recall_coco": float(ev.eval["recall"][0, 0, 0, 0]), "max_precision_gap": gap,
            # ours, without the PR curves: by IoU ≥ threshold and by centre-in-box
            "overall": {c: {k: v for k, v in m.items() if k != "pr_curve"}
                        for c, m in overall.items()},
        }  # fmt: skip
        print(row)
        results.append(row)
    save("evaluate", {"reports": args.reports, "labels": args.labels, "results": results})


if __name__ == "__main__":
    main()
