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
