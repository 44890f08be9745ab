"""Join a Ray cluster or start a local instance for the duration of a job."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Connect to ``address`` (or ``RAY_ADDRESS``), else start a local Ray; shut down only what we started.

    Inside ``ray job submit`` Ray is already reachable through ``RAY_ADDRESS``, so the same job
    code runs on a laptop and on a cluster.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=log.isEnabledFor(logging.INFO))
    else:
        ray.init(
            "local",
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=log.isEnabledFor(logging.INFO),
            configure_logging=False,
        )
    try:
        yield
    finally:
        ray.shutdown()
