"""Atomic local publishing: a file or directory appears whole under its final name, or not at all.

Everything is first written under a unique, dot-prefixed temporary name in the destination's own
directory (same file system, so the final ``rename`` is atomic; the dot hides it from the
``*.parquet`` globs of DuckDB and from pyarrow's dataset discovery). A writer killed half way
leaves only such a temporary, which no reader takes for the real thing.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "TMP_PREFIX",
    "atomic_path",
    "publish_dir",
    "replace_dir",
    "temp_dir",
    "write_bytes_atomic",
]

TMP_PREFIX = ".tmp-"  # temporaries are ".tmp-<final name>.<random>.tmp": hidden, never *.parquet
_RENAME_EXCHANGE = 2  # linux/fs.h: swap two paths atomically (renameat2, Linux ≥ 3.15)
_AT_FDCWD = -100


def _temp_name(target: Path) -> str:
    return f"{TMP_PREFIX}{target.name}."


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], mode: int = 0o644) -> Iterator[Path]:
    """Yield a unique temp path beside ``target``; on a clean exit it replaces ``target``.

    Readers see the old file or the new one, never half of it; on an error the temp file is
    removed and ``target`` is left as it was. ``mode``: the new file's permissions (``mkstemp``
    makes 0600; reports and caches are meant to be read by others).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_name(target), suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``target`` atomically, synced to disk before the rename; returns it."""
    with atomic_path(target, mode) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(target)


@contextlib.contextmanager
def temp_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh, unique temporary directory beside ``target``; removed on exit if still there."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_name(target), suffix=".tmp", dir=target.parent))
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def publish_dir(target: str | os.PathLike[str], fill: Callable[[Path], None]) -> Path:
    """Make directory ``target`` exist, complete, built once by ``fill(tmp_dir)``.

    If ``target`` exists it is returned as is. Otherwise ``fill`` builds it in a temporary sibling
    that is renamed into place; when several processes race, the first rename wins and the others
    discard their copy (same key, same content). ``fill`` raising leaves nothing behind.
    """
    target = Path(target)
    if target.is_dir():
        return target
    with temp_dir(target) as tmp:
        fill(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700
        try:
            os.rename(tmp, target)
        except OSError as err:
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not target.is_dir():
                raise
    return target


def replace_dir(src: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Move directory ``src`` to ``target``, replacing an existing ``target`` atomically.

    Linux ``renameat2(RENAME_EXCHANGE)`` swaps the two in one step, so readers of ``target`` see
    the old tree or the new one, never neither; elsewhere the old one is first renamed aside (a
    short window without ``target``). The old tree is then deleted.
    """
    src, target = Path(src), Path(target)
    if not target.exists():
        os.rename(src, target)
        return
    if _exchange(src, target):
        shutil.rmtree(src)  # src now holds the old tree
        return
    with temp_dir(target) as aside:
        os.rename(target, aside / "old")
        os.rename(src, target)


def _exchange(a: Path, b: Path) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False  # kernel or file system without RENAME_EXCHANGE
    raise OSError(err, os.strerror(err), str(b))
