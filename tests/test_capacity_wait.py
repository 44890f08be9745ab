"""``--capacity-wait``: the bounded wait for capacity is set from the command line of detect and
scan, and a run on a cluster that can host no actor ends when it says, with failed rows."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobs.detect import DetectConfig, detect
from jobs.scan import ScanConfig, scan
from tests.helpers import noise_scene, read_scene_rows, untrained_bundle

REPO = Path(__file__).resolve().parent.parent
GAVE_UP = "no Ray node could host a detection actor for 3 s"


@pytest.fixture(scope="module")
def no_capacity_cluster():
    """A real Ray cluster whose only node has no CPUs: no detection actor can ever be placed."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    yield cluster.address
    cluster.shutdown()


def _cli(module: str, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    t0 = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", module, *args], env=env, capture_output=True, text=True, timeout=600
    )
    return run, time.monotonic() - t0


def test_detect_and_scan_end_when_the_capacity_wait_says(no_capacity_cluster, tmp_path):
    bundle = untrained_bundle(tmp_path / "bundle")
    source = tmp_path / "scenes"
    source.mkdir()
    scene = noise_scene(source / "a.tif", 300, 200)
    address = ["--address", no_capacity_cluster, "--workers", "1", "--capacity-wait", "3"]
    runs = {
        "detect": _cli("jobs.detect", str(bundle), str(scene), "--out", str(tmp_path / "d"),
                       "--quiet", *address),
        "scan": _cli("jobs.scan", str(source), "--bundle", str(bundle), "--reports",
                     str(tmp_path / "s"), *address),
    }  # fmt: skip
    for name, (run, seconds) in runs.items():
        assert run.returncode == 1, f"{name}: {run.stdout}{run.stderr[-3000:]}"
        # 3 s of waiting plus Python, imports and joining Ray; the default wait alone is 300 s.
        assert seconds < 150, f"{name} took {seconds:.0f} s"
        rows = read_scene_rows(tmp_path / name[0]).to_pylist()
        assert [r["status"] for r in rows] == ["failed"], rows
        assert GAVE_UP in rows[0]["error"], rows[0]["error"]


@pytest.mark.parametrize(
    "command,args",
    [
        (detect, ["bundle", "scene.tif", "--out", "out"]),
        (scan, [".", "--bundle", "b", "--reports", "r"]),
    ],
)
@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_a_capacity_wait_that_is_not_a_positive_number_is_a_usage_error(command, args, value):
    result = CliRunner().invoke(command, [*args, "--capacity-wait", value])
    assert result.exit_code == 2, result.output
    assert "--capacity-wait" in result.output


def test_the_configs_default_is_the_options_and_scan_passes_its_wait_on(tmp_path):
    option = next(p for p in detect.params if p.name == "capacity_wait_s")
    assert option.default == DetectConfig("b", "o").capacity_wait_s == 300.0
    config = ScanConfig(str(tmp_path), bundle=str(tmp_path), reports="r", capacity_wait_s=7.5)
    assert config.detect_config().capacity_wait_s == 7.5
    with pytest.raises(ValueError, match="capacity_wait_s=0"):
        ScanConfig(str(tmp_path), bundle=str(tmp_path), reports="r", capacity_wait_s=0)
