"""torch's intra-op thread count, set for a block and restored on exit (a process-wide setting)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["torch_threads"]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Use ``n`` intra-op threads inside the block (None: leave the count as it is).

    Nothing is changed when the count already is ``n`` (the usual case inside a Ray worker,
    whose ``OMP_NUM_THREADS`` Ray sets to its CPUs), so the common path costs one query.
    """
    old = torch.get_num_threads()
    if not n or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
