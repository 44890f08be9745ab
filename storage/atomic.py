"""Atomic local writes: a temp file in the target's directory, then ``os.replace``."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["TMP_PREFIX", "atomic_path", "write_bytes_atomic"]

TMP_PREFIX = ".tmp-"  # partial writes: hidden files that never end in the target's suffix


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], mode: int = 0o644) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on a clean exit it replaces ``target`` in one step.

    Readers see the old file or the new one, never half of it; on an error the temp file is
    removed and ``target`` is left as it was. ``mode`` is set on the new file (``mkstemp`` makes
    0600; reports and caches are meant to be read by others).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TMP_PREFIX + target.name + ".")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` atomically, synced to disk before the rename."""
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
