"""Where region tasks run: a Ray actor pool (the default) or in-process (``--workers 0``).

Both expose ``submit_region / get_next_unordered / has_free / has_next`` (``ray.util.ActorPool``'s
protocol), so the driver loop in ``jobs.detect`` is the same for both; how the Ray pool survives
lost actors and nodes is in ``jobs.region_pool``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import replace

from jobs.region_pool import CAPACITY_WAIT_S, RegionPool
from jobs.worker import DetectorSettings, RegionDetector

log = logging.getLogger(__name__)

# Regions in flight per actor: one scoring, one reading ahead (RegionDetector's compute lock).
SLOTS_PER_ACTOR = 2


@contextlib.contextmanager
def actor_pool(
    bundle_path: str,
    settings: DetectorSettings,
    workers: int | None,
    address: str | None,
    capacity_wait_s: float = CAPACITY_WAIT_S,
) -> Iterator:
    """A pool of RegionDetector actors: one GPU each on GPU clusters, else CPU actors.

    Actors restart when their process or node dies (``max_restarts=-1``) wherever Ray finds room;
    their calls are not retried by Ray (``max_task_retries=0``): the pool moves them to a
    surviving actor at once (see :class:`RegionPool`). Actors are spread over nodes and each asks
    for half the CPUs it runs threads on (GPU actors: half a CPU), so a restarted actor fits beside a survivor instead of
    waiting for a whole free node that may never come (issue #11: a node loss hung the run).
    """
    import ray

    from jobs.ray_session import ray_session

    with ray_session(address):
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus:
            n, options, threads = workers or gpus, {"num_gpus": 1, "num_cpus": 0.5}, None
        else:
            cpus = max(1, int(ray.available_resources().get("CPU", os.cpu_count() or 1)))
            n = workers or default_cpu_workers(cpus)
            threads = max(1, cpus // n)
            options = {"num_cpus": threads / 2}
        settings = replace(settings, threads=threads)
        cls = ray.remote(_RemoteDetector)
        options.update(max_restarts=-1, max_task_retries=0, max_concurrency=SLOTS_PER_ACTOR)
        homes = spread_over_nodes(n, "GPU" if gpus else "CPU")
        actors = [
            cls.options(scheduling_strategy=home, **options).remote(settings) for home in homes
        ]
        if log.isEnabledFor(logging.INFO):
            _log_placement(actors, options)
        # Held for the pool's lifetime; travels with each task (see _RemoteDetector).
        bundle_ref = ray.put(_bundle_tar(bundle_path))
        try:
            yield RegionPool(actors, bundle_ref, SLOTS_PER_ACTOR, capacity_wait_s)
        finally:
            for a in actors:
                ray.kill(a)


def spread_over_nodes(n: int, resource: str) -> list:
    """Scheduling strategies for ``n`` actors: round-robin over the live nodes with ``resource``.

    Soft node affinity: Ray's ``SPREAD`` is best effort and packed both actors on one node when
    it had room for two (so one node loss took every actor); a soft affinity still lets Ray
    restart an actor anywhere once its node is gone.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = sorted(
        node["NodeID"]
        for node in ray.nodes()
        if node["Alive"] and node["Resources"].get(resource, 0) > 0
    )
    if not nodes:
        return ["DEFAULT"] * n  # e.g. an autoscaling cluster with no worker node yet
    return [NodeAffinitySchedulingStrategy(nodes[i % len(nodes)], soft=True) for i in range(n)]


def _log_placement(actors: list, options: dict, wait_s: float = 30.0) -> None:
    """Log where the actors run; bounded, since an actor may have no node to start on."""
    import ray

    refs = [a.placement.remote() for a in actors]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=wait_s)
    placed = []
    for ref in ready:
        with contextlib.suppress(ray.exceptions.RayActorError):  # died meanwhile: not placed
            placed.append(ray.get(ref))
    log.info("%d detection actor(s), %s: %s", len(actors), options, placed)
    if len(placed) < len(actors):
        log.info("%d actor(s) not placed after %.0f s", len(actors) - len(placed), wait_s)


def default_cpu_workers(cpus: int) -> int:
    """On CPU nodes: one actor per 8 cores, each using its share of the cores.

    On 2 cores, 1 actor × 2 threads and 2 actors × 1 thread showed no consistent winner within
    the machine's noise (bench/README.md, Detection), while every extra actor holds its own
    model and libraries. Threads scale less well past ~8 per process, hence more actors on
    bigger nodes.
    """
    return max(1, cpus // 8)


class _RemoteDetector:
    """The Ray actor: a RegionDetector built from the bundle that arrives with the first task.

    Not a constructor argument: an actor whose constructor arguments live in the object store
    may fail to restart (ray#53727), and restarting is the point here. Loaded once per process.
    """

    def __init__(self, settings: DetectorSettings):
        import threading

        self.settings = settings
        self.detector: RegionDetector | None = None
        self.lock = threading.Lock()

    def placement(self) -> dict:
        """Where this actor runs: node, process and the GPUs Ray assigned it (CUDA_VISIBLE_DEVICES)."""
        import ray

        ctx = ray.get_runtime_context()
        return {"node": ctx.get_node_id(), "pid": os.getpid(), "gpus": ray.get_gpu_ids()}

    def detect(self, bundle: list, task):
        with self.lock:
            if self.detector is None:
                import ray

                self.detector = RegionDetector(_materialise(ray.get(bundle[0])), self.settings)
        return self.detector(task)


def _bundle_tar(path: str) -> bytes:
    """The bundle directory (or .tar) as tar bytes, engines excluded (they are per-GPU caches)."""
    import io
    import tarfile
    from pathlib import Path

    p = Path(path)
    if p.is_file():
        return p.read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for f in sorted(p.rglob("*")):  # a detector's second_look/ travels with it
            name = f.relative_to(p)
            if f.is_file() and name.parts[0] != "engines":
                tf.add(f, arcname=str(name))
    return buf.getvalue()


def _materialise(tar_bytes: bytes) -> str:
    """The bundle tar shipped through the object store, as a file in this node's per-user cache."""
    import hashlib

    from storage.cache import write_cached_bytes

    key = hashlib.sha256(tar_bytes).hexdigest()[:16]
    return str(write_cached_bytes("bundles", f"{key}.tar", tar_bytes))


@contextlib.contextmanager
def inline_pool(bundle_path: str, settings: DetectorSettings) -> Iterator:
    """Run regions in this process, one after the other (tests, debugging, small jobs).

    No read-ahead thread: on CPU the model already keeps every core busy, and a reader competing
    with it made the pipeline slower, not faster (bench/README.md).
    """
    yield _InlinePool(RegionDetector(bundle_path, settings))


class _InlinePool:
    def __init__(self, detector: RegionDetector):
        self.detector = detector
        self.done: deque = deque()

    def submit_region(self, task) -> None:
        self.done.append(self.detector(task))

    def has_free(self) -> bool:
        return True

    def has_next(self) -> bool:
        return bool(self.done)

    def get_next_unordered(self):
        return self.done.popleft()
