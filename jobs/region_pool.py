"""Region tasks over Ray actors that may die: a dead actor's regions go to the survivors at once.

``ray.util.ActorPool`` binds each call to one actor. With Ray retrying that call
(``max_task_retries=-1``) a region waits for *its* actor to restart, and when the actor's node
is gone for good the run hangs (issue #11). Here Ray does not retry actor calls; the pool does:
a call that fails because its actor died (``RayActorError``: ``ActorDiedError`` /
``ActorUnavailableError``), or whose result was lost with its node (``ObjectLostError``), goes
back to the front of the queue for the next live actor. Ray keeps restarting the dead actor
(``max_restarts=-1``) where capacity allows; a probe call tells the pool when it is back (and
when a new actor has started: no region waits on an actor that was never placed). With no live
actor for ``capacity_wait_s`` — after losing the last one, or from the start when no node can
host one — the pool gives up: every remaining region comes back as a failed result naming the
reason, so the run ends with failed scene rows instead of a hang.

Why not Ray Data ``map_batches`` with an autoscaling ``ActorPoolStrategy``: it gives the same
fault tolerance for a stream of batches, but per-scene completion (write each scene when its
last region is back, a failed scene row when one region fails) would have to be rebuilt on top
of an unordered output stream, and its executor adds start-up time that issue #11 asks us to
cut: with two warm actors, 16 trivial items took 1.8 s to the first and 3.2 s to the last
through Ray Data vs 1.2 s and 1.3 s through an ActorPool (``python -m bench.bench_startup``,
``pool_overhead_s`` in bench/results/startup.json). Same protocol as ``ray.util.ActorPool``
(``submit_region / get_next_unordered / has_free / has_next``), so ``jobs.detect`` is unchanged.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from jobs.worker import RegionResult, RegionTask

log = logging.getLogger(__name__)

# How long a run waits with no live actor for Ray to place one again before it gives up: the
# default of ``--capacity-wait`` (jobs.options) and of ``DetectConfig.capacity_wait_s``.
CAPACITY_WAIT_S = 300.0
# Probes of one actor that fail in a row before it counts as gone (Ray restarts it otherwise).
MAX_PROBE_FAILURES = 10


class RegionPool:
    """Region tasks over ``actors`` (Ray handles of ``_RemoteDetector``), ``slots`` each in flight.

    ``bundle_ref`` travels with every call (the bundle's tar bytes in the object store).
    """

    def __init__(self, actors: list, bundle_ref, slots: int, capacity_wait_s: float):
        if capacity_wait_s <= 0:
            raise ValueError(f"capacity_wait_s {capacity_wait_s}: must be > 0")
        self.actors = list(actors)
        self.bundle = [bundle_ref]  # in a list: Ray passes the reference, not the bytes
        self.slots = slots
        self.capacity_wait_s = capacity_wait_s
        self.load: dict[int, int] = {}  # index of an actor known alive -> calls in flight
        self.calls: dict = {}  # ObjectRef -> (actor index, task)
        self.probes: dict = {}  # ObjectRef -> index of an actor not (or no longer) known alive
        self.queue: deque[RegionTask] = deque()
        self.no_live_actor_since: float | None = time.monotonic()
        self.gave_up: str | None = None  # why the remaining regions fail
        self.probe_failures = dict.fromkeys(range(len(self.actors)), 0)
        for index in range(len(self.actors)):
            self._probe(index)  # an actor takes regions once it answers: placed and started

    def submit_region(self, task: RegionTask) -> None:
        self.queue.append(task)
        self._dispatch()

    def has_free(self) -> bool:
        """Room for another region: ``slots`` per actor, queued or in flight, dead actors too
        (their share waits in the queue for the survivors, so memory stays bounded)."""
        if self.gave_up:
            return True
        return len(self.queue) + len(self.calls) < self.slots * len(self.actors)

    def has_next(self) -> bool:
        return bool(self.calls or self.queue)

    def get_next_unordered(self) -> RegionResult:
        """The next finished region; waits while actors restart, at most ``capacity_wait_s``."""
        import ray

        while True:
            if self.gave_up and self.queue:
                return failed_region(self.queue.popleft(), self.gave_up)
            self._dispatch()
            refs = [*self.calls, *self.probes]
            if not refs:
                self._give_up("every detection actor died and cannot be restarted")
                continue
            done, _ = ray.wait(refs, num_returns=1, timeout=self._wait_budget())
            if not done:
                self._give_up(
                    f"no Ray node could host a detection actor for {self.capacity_wait_s:.0f} s "
                    "(nodes lost and no capacity left; add nodes or raise the wait)"
                )
                continue
            ref = done[0]
            if ref in self.probes:
                self._probed(ref)
                continue
            index, task = self.calls.pop(ref)
            if self.load.get(index):  # not when the actor is known lost (or has restarted)
                self.load[index] -= 1
            try:
                return ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as e:
                log.warning("region %s of %s: actor %d lost (%s); rescheduled",
                            task.region.index, task.uri, index, type(e).__name__)  # fmt: skip
                self._lost(index)
                self.queue.appendleft(task)
            except ray.exceptions.RayTaskError as e:
                return failed_region(task, f"region {task.region.index}: {e.cause!r}")

    def _dispatch(self) -> None:
        while self.queue and not self.gave_up:
            free = [i for i, n in self.load.items() if n < self.slots]
            if not free:
                return
            index = min(free, key=self.load.__getitem__)
            task = self.queue.popleft()
            ref = self.actors[index].detect.remote(self.bundle, task)
            self.calls[ref] = (index, task)
            self.load[index] += 1

    def _lost(self, index: int) -> None:
        """Actor ``index`` died: no new calls until a probe shows Ray restarted it."""
        if self.load.pop(index, None) is None:
            return  # already known lost (several of its calls fail)
        self._probe(index)
        if not self.load and self.no_live_actor_since is None:
            self.no_live_actor_since = time.monotonic()

    def _probe(self, index: int) -> None:
        """A cheap call that returns once Ray has (re)started actor ``index`` somewhere: Ray
        retries it through restarts (region calls it does not retry: they move instead)."""
        probe = self.actors[index].placement.options(max_task_retries=-1)
        self.probes[probe.remote()] = index

    def _probed(self, ref) -> None:
        import ray

        index = self.probes.pop(ref)
        try:
            where = ray.get(ref)
        except ray.exceptions.RayActorError as e:
            self.probe_failures[index] += 1
            if self.probe_failures[index] < MAX_PROBE_FAILURES:
                self._probe(index)  # died again, or still restarting: ask again
            else:
                log.warning("detection actor %d is gone for good: %s", index, e)
            return
        log.info("detection actor %d ready on node %s", index, where["node"])
        self.probe_failures[index] = 0
        self.load[index] = 0
        self.no_live_actor_since = None

    def _wait_budget(self) -> float | None:
        if self.no_live_actor_since is None:
            return None
        return max(0.0, self.no_live_actor_since + self.capacity_wait_s - time.monotonic())

    def _give_up(self, reason: str) -> None:
        """No actor to run on: every region still queued or in flight fails with ``reason``."""
        self.queue.extendleft(task for _, task in reversed(self.calls.values()))
        self.calls.clear()  # dropped: the actors are killed when the pool closes
        self.probes.clear()
        log.error("giving up on %d region(s): %s", len(self.queue), reason)
        self.gave_up = reason


def failed_region(task: RegionTask, error: str) -> RegionResult:
    """A region that produced no result: no boxes, ``error`` says why (its scene is failed)."""
    import numpy as np

    core = task.region.core
    mp = core.width * core.height / 1e6
    return RegionResult(
        task.scene, task.region.index, np.zeros((0, 4)), np.zeros(0, np.float32), mp, error
    )
