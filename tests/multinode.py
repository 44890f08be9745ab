"""Detection on a real three-node Ray cluster in one process tree while worker nodes come and go.

Run as ``python -m tests.multinode BUNDLE OUT SCENE...`` (its own process: one Ray per process,
and the test session already holds ``ray_local``). A ``ray.cluster_utils.Cluster`` with a head
without CPUs and two one-CPU worker nodes runs three detections of the same scenes:

- ``clean``: nothing happens;
- ``node_lost``: the worker node hosting an actor is killed mid-run, a new node joins later;
- ``all_lost``: both worker nodes are killed mid-run and none comes back (capacity wait 20 s).

Prints one JSON object: per run the scene outcomes, seconds and what was done to the cluster.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

import psutil

ACTOR = "ray::_RemoteDetector"


def actor_processes(nodes: list) -> dict[int, object]:
    """Detection actor processes on ``nodes`` (children of their raylets): pid -> node."""
    found = {}
    for node in nodes:
        raylet = node.all_processes["raylet"][0].process.pid
        try:
            children = psutil.Process(raylet).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for child in children:
            try:
                cmd = child.cmdline()
            except psutil.NoSuchProcess:  # gone, or a zombie (a NoSuchProcess too) of a lost node
                continue
            if (cmd or [""])[0].startswith(ACTOR):
                found[child.pid] = node
    return found


def run(bundle: str, scenes: list[str], out: Path, chaos=None, **options) -> dict:
    """One detection with 2 workers; ``chaos(report)`` runs beside it once both actors are up."""
    from jobs.detect import DetectConfig, run_detect

    config = DetectConfig(
        bundle=bundle, out=str(out), scenes=tuple(scenes), backend="torch", workers=2,
        region_size=128, progress=False, **options,
    )  # fmt: skip
    report: dict = {}
    t0 = time.monotonic()

    def detect():
        try:
            report["outcomes"] = run_detect(config)
        except Exception:
            report["error"] = traceback.format_exc()
            raise

    detection = threading.Thread(target=detect)
    detection.start()
    try:
        if chaos:
            chaos(report, detection)
    finally:  # a failing chaos step still lets the run end before Ray shuts down under it
        detection.join(timeout=600)
    report["ended_at"] = time.monotonic()
    report["seconds"] = report["ended_at"] - t0
    report["finished"] = not detection.is_alive()
    report["outcomes"] = [
        {"uri": o.uri, "status": o.status, "error": o.error} for o in report.get("outcomes", [])
    ]
    return report


def wait_for_new_actors(cluster, n: int, old: set[int], detection, timeout: float = 120) -> dict:
    """Wait until ``n`` actor processes not in ``old`` (an earlier run's) run; pid -> node."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and detection.is_alive():
        new = {
            pid: node
            for pid, node in actor_processes(list(cluster.worker_nodes)).items()
            if pid not in old
        }
        if len(new) >= n:
            return new
        time.sleep(0.1)
    raise TimeoutError(
        f"fewer than {n} new detection actors while the run lasted ({timeout} s max)"
    )


def main() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray.cluster_utils import Cluster

    bundle, root, scenes = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            # Notice a dead node in ~2 s instead of ~30 s: the test measures our waits, not Ray's.
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 4},
        },
    )
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    results = {}
    try:
        results["clean"] = run(bundle, scenes, root / "clean")

        def lose_one(report, detection):
            actors = wait_for_new_actors(cluster, 2, seen, detection)
            report["actor_nodes"] = len({id(node) for node in actors.values()})
            time.sleep(1.0)  # both actors have taken regions
            report["alive_at_loss"] = detection.is_alive()
            cluster.remove_node(next(iter(actors.values())), allow_graceful=False)
            cluster.add_node(num_cpus=1)
            # The lost actor restarts (beside the survivor, or on the new node) while the run goes on.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and detection.is_alive():
                if len(set(actor_processes(list(cluster.worker_nodes))) - seen) >= 2:
                    break
                time.sleep(0.2)
            report["actors_after_loss"] = len(
                set(actor_processes(list(cluster.worker_nodes))) - seen
            )

        seen = set(actor_processes(list(cluster.worker_nodes)))

        results["node_lost"] = run(bundle, scenes, root / "node_lost", lose_one)

        def lose_all(report, detection):
            wait_for_new_actors(cluster, 2, seen, detection)
            time.sleep(1.0)
            report["alive_at_loss"] = detection.is_alive()
            for node in list(cluster.worker_nodes):
                cluster.remove_node(node, allow_graceful=False)
            report["lost_at"] = time.monotonic()

        seen = set(actor_processes(list(cluster.worker_nodes)))
        results["all_lost"] = run(bundle, scenes, root / "all_lost", lose_all, capacity_wait_s=20)
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
