"""Where region tasks run: a Ray actor pool (the default) or in-process (``--workers 0``).

Both expose ``ray.util.ActorPool``'s ``submit / get_next_unordered / has_free / has_next``, so
the driver loop in ``jobs.detect`` is the same for both.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import replace

from jobs.worker import DetectorSettings, RegionDetector

log = logging.getLogger(__name__)

# Regions in flight per actor: one scoring, one reading ahead (RegionDetector's compute lock).
SLOTS_PER_ACTOR = 2


@contextlib.contextmanager
def actor_pool(
    bundle_path: str, settings: DetectorSettings, workers: int | None, address: str | None
) -> Iterator:
    """An ActorPool of RegionDetector actors: one GPU each on GPU clusters, else CPU actors.

    Actors restart when their process dies (``max_restarts=-1``) and Ray retries the tasks they
    held (``max_task_retries=-1``): a SIGKILLed or preempted actor costs time, not regions.
    """
    import ray
    from ray.util import ActorPool

    from jobs.ray_session import ray_session

    with ray_session(address):
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus:
            n, options, threads = workers or gpus, {"num_gpus": 1, "num_cpus": 1}, None
        else:
            cpus = max(1, int(ray.available_resources().get("CPU", os.cpu_count() or 1)))
            n = workers or default_cpu_workers(cpus)
            threads = max(1, cpus // n)
            options = {"num_cpus": threads}
        settings = replace(settings, threads=threads)
        # Held for the pool's lifetime, so a restarted actor can fetch it again (ray#53727).
        bundle_ref = ray.put(_bundle_tar(bundle_path))
        cls = ray.remote(_RemoteDetector).options(
            max_restarts=-1, max_task_retries=-1, max_concurrency=SLOTS_PER_ACTOR, **options
        )
        actors = [cls.remote(bundle_ref, settings) for _ in range(n)]
        log.info("%d detection actor(s), %s", n, options)
        yield ActorPool([a for a in actors for _ in range(SLOTS_PER_ACTOR)])
        for a in actors:
            ray.kill(a)


def default_cpu_workers(cpus: int) -> int:
    """On CPU nodes: one actor using every core measured fastest (bench/bench_detect.py)."""
    return 1


class _RemoteDetector(RegionDetector):
    """RegionDetector that receives its bundle as bytes, so workers need no shared filesystem."""

    def __init__(self, bundle_tar: bytes, settings: DetectorSettings):
        super().__init__(_materialise(bundle_tar), settings)


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
        for f in sorted(p.iterdir()):
            if f.is_file():
                tf.add(f, arcname=f.name)
    return buf.getvalue()


def _materialise(tar_bytes: bytes) -> str:
    import hashlib
    import tempfile
    from pathlib import Path

    key = hashlib.sha256(tar_bytes).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / "whalescan-bundles" / f"{key}.tar"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(tar_bytes)
        tmp.replace(path)
    return str(path)


@contextlib.contextmanager
def inline_pool(bundle_path: str, settings: DetectorSettings) -> Iterator:
    """Run regions in this process, one at a time (tests, debugging, tiny jobs)."""
    yield _InlinePool(RegionDetector(bundle_path, settings))


class _InlinePool:
    def __init__(self, detector: RegionDetector):
        self.detector = detector
        self.done: deque = deque()

    def has_free(self) -> bool:
        return True

    def has_next(self) -> bool:
        return bool(self.done)

    def submit(self, fn, task) -> None:
        self.done.append(self.detector(task))

    def get_next_unordered(self):
        return self.done.popleft()
