"""synth scenes: labelled sets in DeepForest's layout, the --hard look (sizes, calves, haze,
shadow, distractors), and that the default look draws what it always drew."""

from __future__ import annotations

import csv

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from jobs.synth import synth
from labels.read import read_labels
from synth.atmosphere import apply_atmosphere
from synth.calves import CALF_SIZE
from synth.draw import FACE_SIZE_PX
from synth.labelled import write_labelled_scenes
from synth.look import DEFAULT_LOOK, HARD_LOOK, SceneLook
from synth.placement import CALF_SPACING, place_objects
from synth.scene import SceneSpec, plan_scene, render_scene_window
from synth.units import SIZE_JITTER


@pytest.fixture(scope="module")
def hard_set(tmp_path_factory):
    return write_labelled_scenes(tmp_path_factory.mktemp("hard"), 2, size=1200, seed=21, hard=True)


def test_annotations_csv_is_deepforest_layout_and_equals_truth(hard_set):
    with hard_set.annotations.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image_path", "xmin", "ymin", "xmax", "ymax", "label"]
    assert {r[5] for r in rows[1:]} == {"whale_face"}
    labelled = {s.scene: s for s in read_labels(hard_set.annotations)}
    assert sorted(labelled) == sorted(str(p.resolve()) for p in hard_set.scenes)
    assert sum(len(s.boxes) for s in labelled.values()) == hard_set.n_faces > 0
    for scene in hard_set.scenes:
        truth = pq.read_table(scene.with_suffix(".truth.parquet")).to_pydict()
        boxes = np.column_stack([truth[c] for c in ("px_xmin", "px_ymin", "px_xmax", "px_ymax")])
        np.testing.assert_allclose(labelled[str(scene.resolve())].boxes, boxes, atol=5e-4)


def test_hard_look_sizes_calves_and_distractors():
    spec = {"width": 3000, "height": 3000, "whales": 12}
    for seed in (1, 2, 3):
        easy = place_objects(**spec, seed=seed)
        hard = place_objects(**spec, seed=seed, look=HARD_LOOK)
        scales = np.array([o.scale for o in hard if o.kind == "whale"])
        adults, calves = scales[:12], scales[12:]
        assert adults.min() >= 0.8 and adults.max() <= 1.25
        assert len(calves) >= 1
        assert calves.max() <= 1.25 * CALF_SIZE[1]
        easy_scales = [o.scale for o in easy if o.kind == "whale"]
        assert min(easy_scales) >= 1 - SIZE_JITTER and max(easy_scales) <= 1 + SIZE_JITTER
        assert sum(o.kind != "whale" for o in hard) > 1.5 * sum(o.kind != "whale" for o in easy)
        heads = np.array([(o.cx, o.cy) for o in hard if o.kind == "whale"])
        gaps = np.hypot(*(heads[:, None] - heads[None]).transpose(2, 0, 1))
        np.fill_diagonal(gaps, np.inf)
        # a calf sits by its mother: closer than adults may be, never on her head
        assert gaps[12:].min() >= CALF_SPACING
        assert gaps[12:].min(axis=1).max() < 3 * FACE_SIZE_PX * 1.25


def test_atmosphere_darkens_and_hazes_and_is_blockwise_exact():
    plain = np.full((3, 2400, 2400), 0.1, np.float32)
    hazy = plain.copy()
    apply_atmosphere(hazy, 100, 50, HARD_LOOK, seed=4)
    assert (hazy[0] < 0.09).mean() > 0.01  # some cloud shadow
    assert (hazy[0] > 0.12).mean() > 0.1  # some haze
    part = np.full((3, 300, 500), 0.1, np.float32)
    apply_atmosphere(part, 100 + 700, 50 + 900, HARD_LOOK, seed=4)
    np.testing.assert_array_equal(part, hazy[:, 900:1200, 700:1200])


def test_default_look_leaves_pixels_and_objects_as_an_all_zero_look_would():
    """The default look is the look with no calves, haze or shadow and ±SIZE_JITTER whales."""
    spec = SceneSpec(700, 600, whales=3, seed=9)
    spelled = SceneSpec(700, 600, whales=3, seed=9, look=SceneLook((0.9, 1.1), 0.0, 1.0, 0.0, 0.0))
    a, b = plan_scene(spec), plan_scene(spelled)
    assert a.objects == b.objects and spec.look == DEFAULT_LOOK
    np.testing.assert_array_equal(
        render_scene_window(a, 0, 0, 700, 600), render_scene_window(b, 0, 0, 700, 600)
    )
    hazy = plan_scene(SceneSpec(700, 600, whales=3, seed=9, look=SceneLook(haze=0.5)))
    assert hazy.objects == a.objects
    assert (render_scene_window(hazy, 0, 0, 700, 600) != render_scene_window(a, 0, 0, 700, 600)).any()  # fmt: skip


@pytest.mark.parametrize("kwargs", [{"whale_scale": (1.2, 0.9)}, {"calves": 1.5}, {"haze": -0.1}])
def test_look_is_validated(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SceneLook(**kwargs)


def test_cli_synth_scenes(tmp_path):
    result = CliRunner().invoke(
        synth, ["scenes", str(tmp_path / "set"), "--n", "2", "--size", "600", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "2 scenes" in result.output
    labelled = read_labels(tmp_path / "set" / "annotations.csv")
    assert [len(s.boxes) for s in labelled] == [1, 1]  # 1.2 whales/MP x 0.36 MP, at least 1
    result = CliRunner().invoke(synth, ["scenes", str(tmp_path / "x"), "--n", "0"])
    assert result.exit_code != 0 and "n=0" in result.output
