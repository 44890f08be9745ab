"""Detection on a real local Ray: worker count doesn't change results, lost actors are redone."""

import os
import signal
import threading
import time

import numpy as np
import psutil
import pytest

from jobs.detect import DetectConfig, run_detect
from tests.helpers import noise_scene, px_boxes, read_detections, untrained_bundle


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-detect")
    bundle = untrained_bundle(root / "bundle")
    scenes = [noise_scene(root / f"s{i}.tif", 900, 700, seed=i) for i in range(2)]
    return bundle, scenes


def detect(inputs, out, workers):
    bundle, scenes = inputs
    config = DetectConfig(
        bundle=str(bundle), out=str(out), scenes=tuple(map(str, scenes)), backend="torch",
        workers=workers, region_size=128, progress=False,
    )  # fmt: skip
    return run_detect(config)


def assert_same_detections(a, b):
    """Same detections: same boxes (to 1e-3 px) and ids, scores equal to float noise.

    Bits may differ: actors with different thread counts sum convolutions in different orders.
    An id hashes its box rounded to 1e-3 px, so where that noise carries a coordinate across a
    rounding edge the id may differ; everywhere else it must not.
    """
    ta, tb = read_detections(a), read_detections(b)
    assert ta.num_rows > 50
    assert ta["scene_uri"].to_pylist() == tb["scene_uri"].to_pylist()
    boxes_a, boxes_b = px_boxes(ta), px_boxes(tb)
    np.testing.assert_allclose(boxes_a, boxes_b, atol=1e-3)
    np.testing.assert_allclose(ta["score"].to_numpy(), tb["score"].to_numpy(), atol=1e-5)
    same_key = (np.round(boxes_a, 3) == np.round(boxes_b, 3)).all(axis=1)
    ids_a, ids_b = (np.array(t["detection_id"].to_pylist()) for t in (ta, tb))
    assert (ids_a == ids_b)[same_key].all()
    assert same_key.mean() > 0.99, (
        f"{(~same_key).sum()} of {len(same_key)} boxes moved past 1e-3 px rounding"
    )


def actor_pids(busy: bool = False) -> set[int]:
    """Detection actors' processes; ``busy``: those running a region (Ray titles them by method)."""
    title = "ray::_RemoteDetector.detect" if busy else "ray::_RemoteDetector"
    pids = set()
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if cmd and cmd[0].startswith(title):
            pids.add(p.pid)
    return pids


def wait_until(condition, timeout: float):
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return value


def test_one_and_two_workers_give_identical_detections(ray_local, inputs, tmp_path):
    one = detect(inputs, tmp_path / "w1", workers=1)
    two = detect(inputs, tmp_path / "w2", workers=2)
    assert [o.status for o in one + two] == ["ok"] * 4
    assert_same_detections(tmp_path / "w1", tmp_path / "w2")


def test_sigkilled_actor_is_replaced_and_its_regions_rerun(ray_local, inputs, tmp_path):
    clean = detect(inputs, tmp_path / "clean", workers=2)
    # ray.kill is asynchronous: the clean run's actors must be gone, or they pass for this run's.
    assert wait_until(lambda: not actor_pids(), 60), "the clean run's actors did not exit"

    def both_busy() -> set[int]:
        pids = actor_pids(busy=True)
        return pids if len(pids) == 2 else set()

    outcome: dict = {}
    run = threading.Thread(target=lambda: outcome.update(r=detect(inputs, tmp_path / "k", 2)))
    run.start()

    busy = wait_until(both_busy, 180)  # start-up is slow on a loaded 2-core machine
    assert busy, f"two detection actors did not take regions within 180 s (alive: {actor_pids()})"
    assert run.is_alive(), "the run ended before an actor could be killed: make the scene bigger"
    victim = min(busy)
    os.kill(victim, signal.SIGKILL)
    run.join(timeout=300)
    assert not run.is_alive()
    assert [o.status for o in outcome["r"]] == [o.status for o in clean] == ["ok", "ok"]
    assert_same_detections(tmp_path / "k", tmp_path / "clean")
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == "zombie"


@pytest.mark.slow
def test_ray_job_submit_detects_against_a_started_head(ray_head, inputs):
    bundle, scenes = inputs
    out = ray_head.tmp / "reports"
    job = ray_head.submit(
        "jobs.detect", str(bundle), *map(str, scenes), "--out", str(out), "--workers", "1",
        "--backend", "torch", "--region-size", "256", "--no-progress",
    )  # fmt: skip
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "2/2 scene(s) ok" in job.stdout
    assert read_detections(out).num_rows > 50
