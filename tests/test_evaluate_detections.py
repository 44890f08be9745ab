"""``whalescan evaluate``: hand-counted cases, and the same numbers as pycocotools and a slow,
obvious reference on real written reports and a DeepForest labels CSV."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from bench.check_evaluate import coco_eval, sampled_precision
from jobs.evaluate_detections import EvaluateConfig, box_iou, evaluate, run_evaluate
from reports.evaluate import pair_scenes
from reports.store import open_store
from tests.helpers import record_attempt, write_tif

W, H = 400, 300

# scene -> truth boxes and (box, score) detections; a: hand-counted below.
TRUTH = {
    "a.tif": [[50, 50, 70, 70], [150, 50, 170, 70], [250, 50, 270, 70], [50, 150, 70, 170]],
    "b.tif": [[100, 100, 124, 124], [300, 200, 320, 220]],
    "c.tif": [],  # a labelled scene without faces
    "d.tif": [[10, 10, 30, 30]],  # its latest attempt failed
}
DETECTIONS = {
    "a.tif": [
        ([50, 50, 70, 70], 0.9),  # T1, exact
        ([52, 50, 72, 70], 0.8),  # T1 again: a duplicate (IoU 0.82, centre in T1)
        ([153, 52, 173, 72], 0.7),  # T2: IoU 0.62
        ([58, 158, 78, 178], 0.7),  # T4: IoU 0.22, but its centre (68, 168) is inside T4
        ([350, 250, 370, 270], 0.85),  # a false alarm, tied with b's first detection
    ],
    "b.tif": [([100, 100, 124, 124], 0.85), ([10, 10, 30, 30], 0.5), ([301, 201, 321, 221], 0.3)],
    "c.tif": [([200, 200, 220, 220], 0.95)],
    "e.tif": [([5, 5, 25, 25], 0.99)],  # detected, not labelled: ignored
}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Scenes a–e as GeoTIFFs, their labels CSV, and a reports root with older attempts."""
    root = tmp_path_factory.mktemp("eval")
    for name in ("a.tif", "b.tif", "c.tif", "d.tif", "e.tif"):
        write_tif(root / name, np.zeros((3, H, W), np.uint8))
    rows = [["image_path", "xmin", "ymin", "xmax", "ymax", "label"]]
    for name, boxes in TRUTH.items():
        rows += [[name, *b, "whale_face"] for b in boxes] or [[name, 0, 0, 0, 0, "whale_face"]]
    labels = root / "labels.csv"
    with labels.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    store = open_store(root / "reports")
    # Older attempts that must not count: a perfect run on a (another model), an ok run on d.
    record_attempt(store, root / "a.tif", [(b, 0.99) for b in TRUTH["a.tif"]], model="0" * 64)
    record_attempt(store, root / "d.tif", [(TRUTH["d.tif"][0], 0.9)])
    for name, dets in DETECTIONS.items():
        record_attempt(store, root / name, dets, minutes=5)
    record_attempt(store, root / "d.tif", [], minutes=9, status="failed")
    return root, labels


def test_hand_counted_scene(case):
    root, labels = case
    result = run_evaluate(EvaluateConfig(str(root / "reports"), str(labels))).to_dict()
    a = next(s for s in result["scenes"] if s["scene"].endswith("a.tif"))
    iou, centre = a["iou"], a["centre"]
    assert (iou["true_positives"], iou["false_positives"], iou["misses"], iou["duplicates"]) == (
        2, 3, 2, 1,
    )  # fmt: skip
    assert (centre["true_positives"], centre["false_positives"], centre["misses"]) == (3, 2, 1)
    assert centre["duplicates"] == 1
    assert iou["precision"] == pytest.approx(2 / 5) and iou["recall"] == pytest.approx(2 / 4)
    assert centre["f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    # Ranked 0.9 TP, 0.85 FP, 0.8 FP(dup), 0.7 TP, 0.7 TP (ties by box position), by centre:
    # AP = 1/4·1 + 1/4·3/5 + 1/4·3/5 (the last two share precision 3/5 after interpolation).
    assert centre["average_precision"] == pytest.approx(0.25 + 0.25 * 0.6 * 2)
    assert centre["pr_curve"]["recall"] == pytest.approx([0.25, 0.25, 0.25, 0.5, 0.75])
    assert {s["scene"].rsplit("/", 1)[-1] for s in result["scenes"]} == {"a.tif", "b.tif", "c.tif"}
    assert [u["scene"].rsplit("/", 1)[-1] for u in result["unscored"]] == ["d.tif"]
    assert "failed" in result["unscored"][0]["reason"]
    overall = result["overall"]["iou"]
    assert (overall["truths"], overall["detections"], overall["true_positives"]) == (6, 9, 4)


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.75])
def test_same_numbers_as_pycocotools(case, threshold):
    root, labels = case
    evaluation = run_evaluate(EvaluateConfig(str(root / "reports"), str(labels), threshold))
    ev, matched = coco_eval(evaluation, threshold)
    data = evaluation.to_dict()
    for image_id, scene in enumerate(data["scenes"], 1):
        assert scene["iou"]["true_positives"] == matched.get(image_id, 0), scene["scene"]
    _, _, recall = evaluation.overall("iou").pr_curve()
    assert ev.eval["recall"][0, 0, 0, 0] == pytest.approx(recall[-1])
    # COCO's precision at its 101 recall points = our interpolated curve sampled there.
    ours = sampled_precision(evaluation, ev.params.recThrs)
    np.testing.assert_allclose(ev.eval["precision"][0, :, 0, 0, 0], ours, atol=1e-9)


def _slow_reference(evaluation, criterion):
    """Greedy matching written out with loops over Python lists, and AP as a sum of steps."""
    ranked = []  # (score, scene index, rank within scene, is_tp)
    n_truth = dups = 0
    for k, s in enumerate(evaluation.scenes):
        taken = [False] * len(s.truth_boxes)
        n_truth += len(s.truth_boxes)
        for rank, (box, score) in enumerate(
            zip(s.det_boxes.tolist(), s.scores.tolist(), strict=True)
        ):
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            best, best_key, any_ok = None, None, False
            for j, t in enumerate(s.truth_boxes.tolist()):
                if criterion == "centre":
                    ok = t[0] <= cx < t[2] and t[1] <= cy < t[3]
                    key = -math.dist((cx, cy), ((t[0] + t[2]) / 2, (t[1] + t[3]) / 2))
                else:
                    iw = max(0.0, min(box[2], t[2]) - max(box[0], t[0]))
                    ih = max(0.0, min(box[3], t[3]) - max(box[1], t[1]))
                    area = (box[2] - box[0]) * (box[3] - box[1]) + (t[2] - t[0]) * (t[3] - t[1])
                    key = iw * ih / (area - iw * ih)
                    ok = key >= evaluation.iou_threshold
                any_ok |= ok
                if ok and not taken[j] and (best is None or key > best_key):
                    best, best_key = j, key
            if best is not None:
                taken[best] = True
            dups += best is None and any_ok
            ranked.append((score, k, rank, best is not None))
    ranked.sort(key=lambda r: (-r[0], r[1], r[2]))
    tp = sum(r[3] for r in ranked)
    ap, found = 0.0, 0
    for i, r in enumerate(ranked):
        if r[3]:
            found += 1
            best_after = max(
                sum(q[3] for q in ranked[: j + 1]) / (j + 1) for j in range(i, len(ranked))
            )
            ap += best_after / n_truth
    return tp, dups, ap


@pytest.mark.parametrize("criterion", ["iou", "centre"])
def test_same_numbers_as_a_slow_reference(case, criterion):
    root, labels = case
    evaluation = run_evaluate(EvaluateConfig(str(root / "reports"), str(labels), 0.5))
    overall = evaluation.to_dict()["overall"][criterion]
    tp, dups, ap = _slow_reference(evaluation, criterion)
    assert (overall["true_positives"], overall["duplicates"]) == (tp, dups)
    assert overall["average_precision"] == pytest.approx(ap)


def test_random_scenes_agree_with_pycocotools_and_the_reference(tmp_path):
    """Other sizes and seeds: jittered boxes around random faces, ties in the scores."""
    rng = np.random.default_rng(7)
    store = open_store(tmp_path / "reports")
    rows = [["image_path", "xmin", "ymin", "xmax", "ymax", "label"]]
    for k in range(3):
        path = write_tif(tmp_path / f"r{k}.tif", np.zeros((3, H, W), np.uint8))
        size = rng.uniform(12, 40, 6)
        xy = rng.uniform(0, [W - 40, H - 40], (6, 2))
        truth = np.concatenate([xy, xy + size[:, None]], axis=1).round(1)
        rows += [[path.name, *b, "whale_face"] for b in truth.tolist()]
        jitter = rng.normal(0, 4, (9, 4))
        dets = np.concatenate([truth, truth[:3]])[:9] + jitter
        dets[:, 2:] = np.maximum(dets[:, 2:], dets[:, :2] + 2)
        dets = np.clip(dets, 0, [W, H, W, H])
        scores = rng.choice([0.2, 0.4, 0.6, 0.8], 9)
        record_attempt(
            store, path, list(zip(dets.tolist(), scores.tolist(), strict=True)), minutes=1
        )
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    evaluation = run_evaluate(EvaluateConfig(str(tmp_path / "reports"), str(labels), 0.5))
    _, matched = coco_eval(evaluation, 0.5)
    assert [s.by_iou.tp.sum() for s in evaluation.scenes] == [matched[i + 1] for i in range(3)]
    for criterion in ("iou", "centre"):
        tp, dups, ap = _slow_reference(evaluation, criterion)
        overall = evaluation.to_dict()["overall"][criterion]
        assert (overall["true_positives"], overall["duplicates"]) == (tp, dups)
        assert overall["average_precision"] == pytest.approx(ap)


def test_box_iou_is_torchvision():
    iou = box_iou(np.array([[0, 0, 10, 10], [5, 0, 15, 10]]), np.array([[0, 0, 10, 10]]))
    np.testing.assert_allclose(iou[:, 0], [1.0, 50 / 150])
    assert box_iou(np.zeros((0, 4)), np.zeros((2, 4))).shape == (0, 2)


def test_scene_pairing_by_path_then_unambiguous_name():
    pairs = pair_scenes(["/data/x/a.tif", "/data/x/b.tif"], ["/data/x/a.tif", "s3://bk/b.tif"])
    assert pairs == {"/data/x/a.tif": "/data/x/a.tif", "/data/x/b.tif": "s3://bk/b.tif"}
    with pytest.raises(ValueError, match="'b.tif' is ambiguous"):
        pair_scenes(["/data/x/b.tif"], ["s3://one/b.tif", "s3://two/b.tif"])
    assert pair_scenes(["/data/x/c.tif"], ["s3://one/b.tif"]) == {}


def test_cli_json_and_table(case):
    root, labels = case
    runner = CliRunner()
    out = runner.invoke(evaluate, [str(root / "reports"), str(labels), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["iou_threshold"] == 0.5 and len(data["scenes"]) == 3
    table = runner.invoke(evaluate, [str(root / "reports"), str(labels), "--iou", "0.3"])
    assert table.exit_code == 0, table.output
    assert "a.tif" in table.output and "overall" in table.output
    assert "PR curve (centre)" in table.output and "not scored:" in table.output
    bad = runner.invoke(evaluate, [str(root / "reports"), str(labels), "--iou", "0"])
    assert bad.exit_code == 2 and "EvaluateConfig.iou=0.0" in bad.output
    empty = runner.invoke(evaluate, [str(root / "nothing"), str(labels)])
    assert empty.exit_code == 1 and "no labelled scene has detections" in empty.output
    # boats labelled too are truth unless --label names the faces' class
    boats = root / "boats.csv"
    boats.write_text(labels.read_text() + "a.tif,1,1,9,9,boat\nb.tif,2,2,12,12,boat\n")
    args = [str(root / "reports"), str(boats), "--json"]
    out = runner.invoke(evaluate, [*args, "--label", "whale_face"])
    assert out.exit_code == 0 and json.loads(out.output) == data
    out = runner.invoke(evaluate, args)
    assert out.exit_code == 0 and json.loads(out.output) != data


def test_s3_reports_of_s3_scenes_pair_by_file_name(case, bucket):
    """Reports on S3 name the scenes by s3:// URI; local labels pair with them by file name."""
    root, labels = case
    store = open_store(f"s3://{bucket}/reports")
    for name, dets in DETECTIONS.items():
        record_attempt(store, root / name, dets, minutes=5, uri=f"s3://{bucket}/scenes/{name}")
    local = run_evaluate(EvaluateConfig(str(root / "reports"), str(labels))).to_dict()
    remote = run_evaluate(EvaluateConfig(f"s3://{bucket}/reports", str(labels))).to_dict()
    assert [s["scene"] for s in remote["scenes"]] == [
        f"s3://{bucket}/scenes/{n}" for n in ("a.tif", "b.tif", "c.tif")
    ]
    assert [u["reason"] for u in remote["unscored"]] == [f"no attempt under s3://{bucket}/reports"]
    for key in ("overall", "scenes"):
        strip = json.loads(json.dumps(local[key]).replace(str(root), f"s3://{bucket}/scenes"))
        assert _without_names(remote[key]) == _without_names(strip)


def _without_names(value):
    if isinstance(value, dict):
        return {
            k: _without_names(v) for k, v in value.items() if k not in ("scene_key", "labels_scene")
        }
    if isinstance(value, list):
        return [_without_names(v) for v in value]
    return value


def test_lonlat_geopackage_labels_give_the_csv_numbers(case, tmp_path):
    """The same faces as lon/lat polygons in a GeoPackage (scene column ``scene``)."""
    import geopandas as gpd
    import shapely
    from rasterio.transform import xy

    from tests.helpers import ORIGIN, UTM19N

    root, labels = case
    rows = []
    for name, boxes in TRUTH.items():
        for x0, y0, x1, y1 in boxes:
            (mx0, mx1), (my0, my1) = xy(ORIGIN, [y0, y1], [x0, x1], offset="ul")
            rows.append({"scene": str(root / name), "geometry": shapely.box(mx0, my1, mx1, my0)})
    gpkg = tmp_path / "faces.gpkg"
    gpd.GeoDataFrame(rows, crs=UTM19N).to_crs("EPSG:4326").to_file(gpkg, driver="GPKG")
    from_csv = run_evaluate(EvaluateConfig(str(root / "reports"), str(labels))).to_dict()
    from_gpkg = run_evaluate(EvaluateConfig(str(root / "reports"), str(gpkg))).to_dict()
    # c.tif has no faces, so the GeoPackage does not name it: it is simply not scored
    assert [s["scene"] for s in from_gpkg["scenes"]] == [
        s["scene"] for s in from_csv["scenes"] if not s["scene"].endswith("c.tif")
    ]
    for got, want in zip(from_gpkg["scenes"], from_csv["scenes"][:2], strict=True):
        for criterion in ("iou", "centre"):
            curve, want_curve = got[criterion].pop("pr_curve"), want[criterion].pop("pr_curve")
            assert got[criterion] == pytest.approx(want[criterion], abs=1e-9)
            for k in curve:
                assert curve[k] == pytest.approx(want_curve[k], abs=1e-9)
