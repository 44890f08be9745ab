"""Approach 3's second look: chips centred on candidates, the eight views, the fused score and its
threshold, tiling invisible, the bundle that carries it (and ships it to Ray actors)."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest

from jobs.detect import DetectConfig
from models.bundle import BundleError, load_bundle, update_manifest
from models.second_look import (
    FOLDER,
    SecondLookSpec,
    candidate_threshold,
    check_halo,
    cut_chips,
    eight_views,
    fuse,
    view_mean,
)
from synth.scene import SceneSpec, write_scene
from tests.helpers import (
    detect_inline,
    px_boxes,
    read_detections,
    untrained_bundle,
    untrained_detector_bundle,
)

THRESHOLD = 0.45


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A random-weight detector (peaks often) carrying a random-weight second look."""
    path = tmp_path_factory.mktemp("second") / "b"
    untrained_detector_bundle(path, heat_bias=0.3, flips=2)
    untrained_bundle(path / FOLDER, seed=5)
    update_manifest(load_bundle(path), second_look={"folder": FOLDER, "threshold": THRESHOLD})
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    path = tmp_path_factory.mktemp("scene") / "whales.tif"
    write_scene(path, SceneSpec(900, 700, whales=6, seed=41))
    return path


def run(bundle, scene, out, **kw):
    """(boxes, scores) ``detect`` reports for ``scene``."""
    (outcome,) = detect_inline(bundle, scene, out, **kw)
    assert outcome.status == "ok", outcome.error
    t = read_detections(out)
    return px_boxes(t), t["score"].to_numpy()


def test_chips_are_centred_on_the_boxes_and_filled_past_the_edge():
    pixels = np.random.default_rng(0).random((3, 50, 60)).astype(np.float32)
    boxes = np.array(
        [[20.0, 30.0, 30.0, 40.0], [40.0, 10.0, 50.0, 20.0]]
    )  # centres (25,35) (45,15)
    chips = cut_chips(pixels, (5, 2), boxes, 8)  # window's top-left is scene px (5, 2)
    np.testing.assert_array_equal(chips[0], pixels[:, 29:37, 16:24])
    np.testing.assert_array_equal(chips[1], pixels[:, 9:17, 36:44])
    # past the array: the fill colour, as detect reads past a scene's edge
    (edge,) = cut_chips(pixels, (5, 2), np.array([[3.0, 0.0, 7.0, 4.0]]), 8, fill=(7, 8, 9))
    # centre (5, 2) is the array's top-left pixel: the chip starts 4 px up and left of it
    np.testing.assert_array_equal(edge[:, 4:, 4:], pixels[:, :4, :4])
    fill = np.reshape([7.0, 8.0, 9.0], (3, 1, 1))
    assert np.all(edge[:, :4] == fill) and np.all(edge[:, :, :4] == fill)
    with pytest.raises(ValueError, match="half the 64-px"):
        check_halo(32, 64)
    check_halo(33, 64)


def test_the_eight_views_are_every_turn_and_mirror_once():
    chips = np.arange(2 * 1 * 3 * 3, dtype=np.float32).reshape(2, 1, 3, 3)
    views = eight_views(chips).reshape(8, 2, 1, 3, 3)
    for n in range(2):
        seen = {v[n, 0].tobytes() for v in views}
        assert len(seen) == 8  # an asymmetric chip: eight different views
        assert chips[n, 0].tobytes() in seen and chips[n, 0].T.copy().tobytes() in seen

    # a "classifier" that looks at the top-left pixel only sees each corner in two views
    def corner(x):
        return x[:, 0, 0, 0]

    corners = chips[:, 0][:, [0, 0, -1, -1], [0, -1, 0, -1]]
    np.testing.assert_allclose(view_mean(corner, chips), corners.mean(1))
    assert view_mean(corner, chips[:0]).shape == (0,)


def test_no_candidate_below_the_squared_threshold_can_pass_the_fused_one():
    rng = np.random.default_rng(1)
    det, cls = rng.random(10_000), rng.random(10_000)
    passed = fuse(det, cls) >= 0.6
    assert passed.any() and np.all(det[passed] >= candidate_threshold(0.6) - 1e-6)


def test_detect_reports_the_fused_score_of_each_candidate(bundle, scene, tmp_path):
    import rasterio
    import torch

    from models.scorer import build_scorer
    from tiling.bands import resolve_scaling, select_bands
    from tiling.read import read_window

    boxes, scores = run(bundle, scene, tmp_path / "fused", threshold=0.3)
    alone_boxes, alone = run(bundle, scene, tmp_path / "alone", second_look=False,
                             threshold=candidate_threshold(0.3))  # fmt: skip
    assert len(boxes) > 5
    # each kept box is a detector candidate; its score sqrt(detector x classifier on its chip)
    classifier = build_scorer(load_bundle(bundle / FOLDER))
    with rasterio.open(scene) as ds:
        bands = select_bands(ds, str(scene), None)
        scaling = resolve_scaling(ds, bands, "auto")
        big, _ = read_window(ds, str(scene), rasterio.windows.Window(-64, -64, 1028, 828),
                             bands, scaling)  # fmt: skip
    for box, score in zip(boxes, scores, strict=True):
        (i,) = np.flatnonzero(np.all(np.abs(alone_boxes - box) < 1e-6, axis=1))
        chip = cut_chips(big, (-64, -64), box[None], 64)
        with torch.no_grad():
            seen = view_mean(lambda x: classifier(torch.from_numpy(x)).numpy(), chip)[0]
        assert score == pytest.approx(np.sqrt(alone[i] * seen), abs=1e-5)
    # the threshold applies to the fused score
    middle = float(np.median(scores))
    kept, kept_scores = run(bundle, scene, tmp_path / "middle", threshold=middle)
    assert 0 < len(kept) == int((scores >= middle).sum()) < len(boxes)
    assert kept_scores.min() >= middle


def test_the_second_looks_threshold_is_the_default(bundle):
    from jobs.detect import for_bundle

    b = load_bundle(bundle)
    config = DetectConfig(bundle=str(bundle), out="unused")
    assert for_bundle(config, b).threshold == THRESHOLD
    off = DetectConfig(bundle=str(bundle), out="unused", second_look=False)
    assert for_bundle(off, b).threshold == 0.5  # an untrained detector's: no tuned one


@pytest.mark.parametrize("region_size", [256, 400])
def test_region_size_changes_no_box_with_a_second_look(bundle, scene, tmp_path, region_size):
    one = run(bundle, scene, tmp_path / "one", region_size=4096)
    tiled = run(bundle, scene, tmp_path / "tiled", region_size=region_size)
    assert len(one[0]) == len(tiled[0]) > 5
    a, r = np.lexsort(tiled[0].T[::-1]), np.lexsort(one[0].T[::-1])
    np.testing.assert_allclose(tiled[0][a], one[0][r], atol=0.01)
    np.testing.assert_allclose(tiled[1][a], one[1][r], atol=1e-5)


def test_the_bundle_names_its_second_look_and_rejects_a_bad_one(bundle, tmp_path):
    import shutil

    spec = SecondLookSpec.of(load_bundle(bundle))
    assert spec == SecondLookSpec(FOLDER, THRESHOLD)
    assert spec.load(load_bundle(bundle)).kind == "classifier"
    bad = tmp_path / "bad"
    shutil.copytree(bundle, bad)
    b = update_manifest(load_bundle(bad), second_look={"folder": FOLDER, "threshold": 1.5})
    with pytest.raises(BundleError, match="threshold 1.5 not in"):
        SecondLookSpec.of(b)
    b = update_manifest(b, second_look={"threshold": 0.5})
    with pytest.raises(BundleError, match="malformed second_look"):
        SecondLookSpec.of(b)
    shutil.rmtree(bad / FOLDER)
    untrained_detector_bundle(bad / FOLDER)  # a detector where a classifier belongs
    b = update_manifest(b, second_look={"folder": FOLDER, "threshold": 0.5})
    with pytest.raises(BundleError, match="must be a classifier bundle"):
        SecondLookSpec.of(b).load(b)


def test_the_bundle_shipped_to_ray_actors_carries_its_second_look(bundle, tmp_path):
    from jobs.pool import _bundle_tar

    with tarfile.open(fileobj=io.BytesIO(_bundle_tar(str(bundle)))) as tf:
        tf.extractall(tmp_path / "x", filter="data")
    shipped = load_bundle(tmp_path / "x")
    second = SecondLookSpec.of(shipped).load(shipped)
    assert second.weights_sha256 == load_bundle(bundle / FOLDER).weights_sha256


def test_runs_with_and_without_the_second_look_keep_apart(bundle):
    """They report other scores, so a scene detected one way is not 'already done' the other."""
    from jobs.detect import run_stamp

    b = load_bundle(bundle)
    on = run_stamp(DetectConfig(bundle=str(bundle), out="x", threshold=0.5), b)
    off = run_stamp(DetectConfig(bundle=str(bundle), out="x", threshold=0.5, second_look=False), b)
    assert on.scene_key("a.tif", "v1") != off.scene_key("a.tif", "v1")
    assert on.key_parameters["second_look"] == load_bundle(bundle / FOLDER).weights_sha256


def test_export_covers_the_second_look_and_onnxruntime_scores_it_as_torch(bundle, tmp_path):
    import shutil

    from click.testing import CliRunner

    from jobs.export import export

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    res = CliRunner().invoke(export, [str(copy)])
    assert res.exit_code == 0, res.output
    written = [line.split()[0] for line in res.output.strip().splitlines()]
    assert written == [str(copy / "model.onnx"), str(copy / FOLDER / "model.onnx")]
    # the exported second look scores chips as torch does
    from models.backends import load_backend

    second = load_bundle(copy / FOLDER)
    chips = np.random.default_rng(3).uniform(0, 255, (5, 3, 64, 64)).astype(np.float32)
    seen = {name: view_mean(load_backend(name, second), chips) for name in ("torch", "onnxruntime")}
    np.testing.assert_allclose(seen["onnxruntime"], seen["torch"], atol=1e-5)
