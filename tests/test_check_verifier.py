"""``bench.check_verifier``'s scoring: F1 along the ranking equals F1 of the detections kept at
each threshold, and chips are read centred on the candidate, filled past the scene edge."""

import numpy as np

from bench.check_verifier import chips, f1_curve, figures
from reports.truth import match_centres
from synth.scene import SceneSpec, write_scene


def _candidates(rng, truth):
    """Noisy copies of most truths, a duplicate, and false alarms, with random scores."""
    hits = truth[:8] + rng.normal(0, 2, (8, 4))
    dup = truth[:1] + 3
    far = rng.uniform(500, 900, (6, 2)).repeat(2, 1) + [0, 0, 20, 20]
    boxes = np.concatenate([hits, dup, far])
    return boxes, rng.uniform(0.05, 1, len(boxes))


def test_f1_along_the_ranking_is_f1_at_each_threshold():
    rng = np.random.default_rng(5)
    corner = rng.uniform(0, 400, (10, 2))
    truth = np.concatenate([corner, corner + 24], 1)
    boxes, scores = _candidates(rng, truth)
    ranked, f1 = f1_curve(boxes, scores, truth)
    assert np.all(np.diff(ranked) <= 0)
    for k, threshold in enumerate(ranked):
        keep = scores >= threshold
        assert np.isclose(f1[k], match_centres(boxes[keep], scores[keep], truth, 12.0).f1)
    best = figures(boxes, scores, truth, threshold=0.0)
    assert best["best_f1"] == round(float(f1.max()), 4) >= best["f1"]
    assert figures(boxes, scores, truth, threshold=2.0)["f1"] == 0.0  # nothing kept


def test_chips_are_centred_and_filled_past_the_edge(tmp_path):
    import rasterio

    scene = tmp_path / "s.tif"
    write_scene(scene, SceneSpec(300, 200, whales=2, seed=3))
    with rasterio.open(scene) as ds:
        pixels = ds.read().astype(np.float32)
    boxes = np.array([[140.0, 90, 160, 110], [-10, -10, 10, 10]])
    out = chips(scene, boxes, 32)
    assert out.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(out[0], pixels[:, 84:116, 134:166])
    np.testing.assert_array_equal(out[1, :, 16:, 16:], pixels[:, :16, :16])
    # past the edge: one flat colour (the scene's fill), not zeros
    outside = out[1, :, :16, :16].reshape(3, -1)
    assert np.all(outside == outside[:, :1]) and outside.max() > 0
