"""One detection actor per GPU, each pinned to its own GPU — checked on CPU with fake GPUs.

Needs its own Ray instance (``ray.init(num_gpus=2)``), so it runs in a subprocess beside the
session's ``ray_local``.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import noise_scene, untrained_bundle

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import ray
    from jobs.pool import actor_pool
    from jobs.worker import DetectorSettings
    from jobs.detect import DetectConfig, run_detect

    bundle, scene, out = sys.argv[1:4]
    ray.init("local", num_cpus=2, num_gpus=2, include_dashboard=False)
    with actor_pool(bundle, DetectorSettings(backend="torch"), None, None) as pool:
        placements = ray.get([a.placement.remote() for a in pool.actors])
    (outcome,) = run_detect(DetectConfig(bundle=bundle, out=out, scenes=(scene,),
                                         backend="torch", region_size=256, progress=False))
    print(json.dumps({"placements": placements, "status": outcome.status,
                      "detections": outcome.detections}))
    """
)


@pytest.mark.slow
def test_one_actor_per_gpu_each_pinned(tmp_path):
    bundle = untrained_bundle(tmp_path / "b")
    scene = noise_scene(tmp_path / "s.tif", 600, 500)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(bundle), str(scene), str(tmp_path / "r")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    import json

    result = json.loads(run.stdout.strip().splitlines()[-1])
    gpus = [p["gpus"] for p in result["placements"]]
    assert len(gpus) == 2  # one actor per GPU by default
    assert all(len(g) == 1 for g in gpus)  # each holds exactly one
    assert {str(g[0]) for g in gpus} == {"0", "1"}  # and they are different GPUs
    assert result["status"] == "ok" and result["detections"] > 0
