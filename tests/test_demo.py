"""``make demo`` end to end, small: three approaches on one held-out scene, one table."""

from __future__ import annotations

import re

import pytest

from jobs.demo import APPROACHES, DemoConfig, run_demo


@pytest.mark.parametrize(
    ("field", "value"),
    [("detector_scenes", 1), ("scene_size", 256), ("whales", 0), ("sliding_stride", 0),
     ("epochs", 0), ("detector_crop", 100)],
)  # fmt: skip
def test_config_names_the_field_to_change(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        DemoConfig(tmp_path, **{field: value})


@pytest.mark.slow
def test_demo_scores_three_approaches_on_one_scene(ray_local, tmp_path, capsys):
    config = DemoConfig(
        tmp_path / "demo", scene_size=1024, whales=8, scene_seed=11, chips=1200, epochs=8,
        detector_scenes=3, detector_scene_size=768, detector_whales=8, detector_epochs=8,
        detector_crops=256,
    )  # fmt: skip
    figures = run_demo(config)
    printed = capsys.readouterr().out

    rows = {}
    for name, mode, _ in APPROACHES:  # one table row per approach, with every column filled
        match = re.search(rf"^{re.escape(name)}\s+{mode}\s+(\d+)\s+([\d.]+)\s+(\d+)\s+(\d+)"
                          r"\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$",
                          printed, re.MULTILINE)  # fmt: skip
        assert match, f"no table row for approach {name!r} in:\n{printed}"
        rows[mode] = match.groups()
        assert int(match[3]) == 8, f"approach {name}: scored against {match[3]} faces, not 8"
        assert (config.out / "reports" / mode / "scenes").is_dir(), mode
    assert figures["fcn"]["detections"] == int(rows["fcn"][3])  # the table shows what was scored
    # Approaches 2 and 3 find the faces; the box detector's boxes also fit them (IoU ≥ 0.5).
    for mode in ("fcn", "boxes"):
        f = figures[mode]
        assert f["recall"] >= 0.75 and f["precision"] >= 0.5, (mode, f)
        assert f["duplicates"] == 0, (mode, f)
    assert figures["boxes"]["ap_iou"] >= 0.5, figures["boxes"]
    assert "scale: model trained at 10.0 cm/px" in printed
    assert re.search(r"^done in \d+ s$", printed, re.MULTILINE)
    assert printed.count("faces found") == 3


def _evaluation(det_boxes, scores, truth_boxes):
    """An Evaluation of one scene, matched the way ``reports.evaluate`` matches."""
    import numpy as np

    from jobs.evaluate_detections import box_iou
    from reports.evaluate import Evaluation, SceneEval
    from reports.truth import centre_in_box_pairs, greedy_match, iou_pairs

    det, truth = np.asarray(det_boxes, float).reshape(-1, 4), np.asarray(truth_boxes, float)
    scores = np.asarray(scores, float)
    scene = SceneEval(
        "s.tif", "k", "s.tif", det, scores, truth,
        by_iou=greedy_match(scores, *iou_pairs(box_iou(det, truth), 0.5)),
        by_centre=greedy_match(scores, *centre_in_box_pairs(det, truth)),
    )  # fmt: skip
    return Evaluation(0.5, (scene,))


def test_comparison_table_rows_carry_each_approachs_scores():
    from jobs.compare import ApproachRun, format_comparison

    truth = [[0, 0, 32, 32], [100, 100, 132, 132]]
    # A: both faces, a shifted second box (centre inside, IoU 0.24) and a duplicate on face 1.
    a = _evaluation([[0, 0, 32, 32], [112, 112, 144, 144], [2, 2, 34, 34]], [0.9, 0.8, 0.7], truth)
    # B: one face and one false alarm ranked above it.
    b = _evaluation([[500, 500, 532, 532], [100, 100, 132, 132]], [0.9, 0.5], truth)
    table = format_comparison(
        [ApproachRun("A", "fcn", 12.0, 3.25, a), ApproachRun("B", "boxes", 40.0, 7.5, b)]
    )
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[2:4]}
    # mode, train s, detect s, faces, dets, P, R, AP@IoU, AP@centre, dup
    assert rows["A"] == ["fcn", "12", "3.2", "2", "3", "0.667", "1.000", "0.500", "1.000", "1"]
    assert rows["B"] == ["boxes", "40", "7.5", "2", "2", "0.500", "0.500", "0.250", "0.250", "0"]


def test_approach_run_rejects_negative_seconds():
    from jobs.compare import ApproachRun

    with pytest.raises(ValueError, match="detect_s"):
        ApproachRun("A", "fcn", 1.0, -1.0, None)
