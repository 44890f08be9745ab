"""The SAHI adapter of ``bench.bench_sahi``: the same detector as ``whalescan detect``, sliced by SAHI."""

import numpy as np
import pytest

from bench.bench_sahi import run_sahi, run_whalescan, sahi_slices, score, slice_geometry
from models.bundle import load_bundle
from synth.scene import SceneSpec, write_scene
from tests.helpers import untrained_detector_bundle


@pytest.fixture(autouse=True, scope="module")
def _restore_cuda_visible_devices():
    """SAHI's ``select_device("cpu")`` sets ``CUDA_VISIBLE_DEVICES=-1`` process-wide; a Ray
    instance started later in this session would inherit it and refuse fake GPUs."""
    import os

    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    yield
    if saved is None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = saved


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    path = tmp_path_factory.mktemp("sahi") / "whales.tif"
    write_scene(path, SceneSpec(700, 560, whales=6, seed=77))
    return str(path)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """An approach-3 detector with random weights that peak often (many boxes to compare)."""
    return str(untrained_detector_bundle(tmp_path_factory.mktemp("det") / "b", heat_bias=0.3))


def _interior(boxes, width, height, margin):
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    return boxes[(c[:, 0] > margin) & (c[:, 0] < width - margin)
                 & (c[:, 1] > margin) & (c[:, 1] < height - margin)]  # fmt: skip


def test_one_slice_gives_whalescans_boxes_away_from_the_border(bundle, scene):
    """Region ≥ scene: one SAHI slice (the scene) and one whalescan region. Away from the
    border (where whalescan scores windows reaching past the scene and SAHI cannot) the boxes
    are the same: the adapter runs the same backend and decoder."""
    side, overlap, settings = slice_geometry(bundle, 4096)
    ws_boxes, ws_scores = run_whalescan(bundle, scene, 0, 4096)
    sahi_boxes, sahi_scores = run_sahi(bundle, scene, "torch", 4096)
    margin = settings.decode_params(load_bundle(bundle)).halo
    a = _interior(ws_boxes, 700, 560, margin)
    b = _interior(sahi_boxes, 700, 560, margin)
    assert len(a) >= 3
    # SAHI's GREEDYNMM (IOS 0.5) may merge boxes whalescan's NMS (IoU 0.3) keeps, never add any.
    assert len(b) <= len(a)
    for box in b:
        assert np.abs(a - box).max(axis=1).min() < 0.01
    assert len(ws_scores) and len(sahi_scores)


def test_slices_step_by_whalescans_core(bundle):
    side, overlap, settings = slice_geometry(bundle, 512)
    assert side - overlap == 512
    boxes = sahi_slices(3000, 1500, side, overlap)
    xs = sorted({b[0] for b in boxes})
    assert all(b[2] - b[0] == side and b[3] - b[1] == side for b in boxes)
    assert np.diff(xs)[:-1].tolist() == [512] * (len(xs) - 2)
    assert xs[-1] + side == 3000


def test_score_counts_duplicates_and_seam_cuts():
    truth = np.array([[90.0, 10, 130, 50], [300, 300, 340, 340]])
    det = np.array(
        [[92.0, 12, 128, 48], [100, 12, 136, 48], [85, 20, 101, 60], [301, 301, 339, 339]]
    )
    scores = np.array([0.9, 0.8, 0.95, 0.7], np.float32)
    # a seam at x = 100 cuts face 0: its best-scored detection (a sliver) matches by centre
    r = score(det, scores, truth, ({100}, set()))
    assert (r["centre_tp"], r["duplicates"], r["seam_cuts"]) == (2, 2, 1)
    assert score(det, scores, truth, (set(), set()))["seam_cuts"] == 0


def test_repeats_keep_the_fastest_run_and_the_largest_memory():
    from bench.bench_sahi import fastest

    def run(job, rss, load):
        return {"contender": "ws-inline", "job_s": job, "detect_s": job - 1, "peak_rss_gib": rss,
                "loadavg_1m": load, "centre_f1": 1.0}  # fmt: skip

    row = fastest([run(30.0, 1.5, 9.0), run(20.0, 1.2, 2.0), run(25.0, 1.7, 4.0)])
    assert (row["job_s"], row["detect_s"], row["loadavg_1m"]) == (20.0, 19.0, 2.0)
    assert row["peak_rss_gib"] == 1.7
    assert row["job_s_all"] == [30.0, 20.0, 25.0] and row["runs"] == 3


def test_a_failed_repeat_is_kept_and_the_others_still_count():
    from bench.bench_sahi import fastest, table

    ok = {"contender": "ws-ray", "job_s": 40.0, "detect_s": 39.0, "peak_rss_gib": 2.5,
          "loadavg_1m": 3.0, "centre_f1": 1.0}  # fmt: skip
    boom = {"contender": "ws-ray", "loadavg_1m": 30.0, "error": "node timed out during startup"}
    row = fastest([boom, ok])
    assert row["job_s"] == 40.0 and row["runs"] == 1
    assert row["failed_runs"] == 1 and row["errors"] == ["node timed out during startup"]
    only = fastest([boom])
    assert only["error"] and "job_s" not in only
    assert "failed" in table([only]).splitlines()[-1]
