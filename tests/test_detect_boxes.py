"""Detection with an approach-3 box detector bundle: mode from the bundle, tiling invisible."""

import numpy as np
import pytest
from click.testing import CliRunner

from jobs.detect import detect
from synth.scene import SceneSpec, write_scene
from tests.helpers import (
    detect_inline as run,
)
from tests.helpers import (
    read_detections,
    untrained_bundle,
    untrained_detector_bundle,
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    # Eight test-time views, as trained bundles have: the region-size checks cover them too.
    return untrained_detector_bundle(tmp_path_factory.mktemp("det") / "b", heat_bias=0.3, flips=8)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Synthetic sea with painted whales (and distractors), not a multiple of any region size."""
    path = tmp_path_factory.mktemp("scene") / "whales.tif"
    write_scene(path, SceneSpec(1100, 900, whales=8, seed=31))
    return path


def boxes_scores(reports):
    t = read_detections(reports)
    boxes = np.stack([t[c].to_numpy() for c in ("px_xmin", "px_ymin", "px_xmax", "px_ymax")], 1)
    return boxes, t["score"].to_numpy(), t["mode"].to_pylist()


@pytest.mark.parametrize("region_size", [512, 300])
def test_region_size_changes_no_box(bundle, scene, tmp_path, region_size):
    (one,) = run(bundle, scene, tmp_path / "one", region_size=4096, threshold=0.4)
    (tiled,) = run(bundle, scene, tmp_path / "tiled", region_size=region_size, threshold=0.4)
    assert one.status == tiled.status == "ok"
    rb, rs, modes = boxes_scores(tmp_path / "one")
    b, s, _ = boxes_scores(tmp_path / "tiled")
    assert len(rb) > 30 and set(modes) == {"boxes"}
    a, r = np.lexsort(b.T[::-1]), np.lexsort(rb.T[::-1])
    assert len(b) == len(rb)
    np.testing.assert_allclose(b[a], rb[r], atol=0.01)
    np.testing.assert_allclose(s[a], rs[r], atol=1e-5)


def test_mode_mismatch_is_a_one_line_error(bundle, scene, tmp_path):
    runner = CliRunner()
    res = runner.invoke(detect, [str(bundle), str(scene), "--out", str(tmp_path / "r"),
                                 "--mode", "fcn", "--workers", "0", "--quiet"])  # fmt: skip
    assert res.exit_code == 1
    assert (
        "runs in mode boxes, not 'fcn'" in res.output and len(res.output.strip().splitlines()) == 1
    )
    classifier = untrained_bundle(tmp_path / "cls")
    res = runner.invoke(detect, [str(classifier), str(scene), "--out", str(tmp_path / "r"),
                                 "--mode", "boxes", "--workers", "0", "--quiet"])  # fmt: skip
    assert res.exit_code == 1 and "runs in mode fcn or sliding, not 'boxes'" in res.output
