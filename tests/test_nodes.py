"""Node loss on a real three-node Ray cluster (``tests/multinode.py`` in its own process): a lost
worker node costs time, not detections; losing every node ends the run with failed scenes."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import noise_scene, untrained_bundle
from tests.test_detect_ray import assert_same_detections

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("nodes")
    bundle = untrained_bundle(root / "bundle")
    # Other sizes and seeds than the other Ray tests; big enough to outlast the actors' start.
    scenes = [noise_scene(root / f"s{i}.tif", 960 - 64 * i, 640, seed=40 + i) for i in range(3)]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    run = subprocess.run(
        [sys.executable, "-m", "tests.multinode", str(bundle), str(root), *map(str, scenes)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    return root, json.loads(run.stdout.strip().splitlines()[-1])


def test_clean_run_on_three_nodes(cluster_runs):
    _, runs = cluster_runs
    assert [o["status"] for o in runs["clean"]["outcomes"]] == ["ok"] * 3


def test_lost_node_costs_time_not_detections(cluster_runs):
    root, runs = cluster_runs
    lost = runs["node_lost"]
    assert lost["actor_nodes"] == 2  # the two actors were on different nodes
    assert lost["alive_at_loss"], "the run ended before the node was lost: make scenes bigger"
    assert lost["actors_after_loss"] == 2  # the lost actor came back while the run went on
    assert lost["finished"]
    assert [o["status"] for o in lost["outcomes"]] == ["ok"] * 3
    assert_same_detections(root / "node_lost", root / "clean")


def test_losing_every_node_fails_the_scenes_in_bounded_time(cluster_runs):
    _, runs = cluster_runs
    lost = runs["all_lost"]
    assert lost["alive_at_loss"]
    assert lost["finished"]
    assert lost["ended_at"] - lost["lost_at"] < 90  # capacity wait 20 s + Ray noticing the loss
    assert [o["status"] for o in lost["outcomes"]] == ["failed"] * 3
    errors = [o["error"] for o in lost["outcomes"]]
    assert all("no Ray node could host a detection actor" in e for e in errors), errors
