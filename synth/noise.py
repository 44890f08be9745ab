"""Hashed value noise: pure functions of integer lattice coordinates and a seed.

Every value here depends only on the coordinate it is evaluated at and on the seed, never on
the window that asked for it, so a scene drawn block by block equals the scene drawn at once,
bit for bit. Two flavours:

* :func:`grid_noise` — on the global pixel grid, for axis-aligned windows (the sea). Separable
  bilinear interpolation of a small lattice, cheap enough for tens of megapixels per second.
* :func:`point_noise` — at arbitrary float coordinates (object-local frames that rotate
  with an object), for small windows.

All outputs are float32 in [0, 1).
"""

from __future__ import annotations

import numpy as np

__all__ = ["derive_seed", "grid_noise", "hash_uniform", "line_noise", "point_noise"]

_M1 = np.uint32(0x8DA6B343)
_M2 = np.uint32(0xD8163841)
_M3 = np.uint32(0xCB1AB31F)
_F1 = np.uint32(0x85EBCA6B)
_F2 = np.uint32(0xC2B2AE35)
_INV24 = np.float32(1.0 / (1 << 24))


def derive_seed(*parts: int) -> int:
    """A 32-bit seed mixed from integers (e.g. ``derive_seed(seed, octave)``); deterministic."""
    h = 0x9E3779B9
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFF)) * 0x01000193 & 0xFFFFFFFF
        h ^= h >> 15
        h = h * 0x2C1B3C6D & 0xFFFFFFFF
        h ^= h >> 12
    return h


def hash_uniform(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Uniform float32 in [0, 1) for integer lattice points ``(ix, iy)`` (broadcast), seeded.

    Integers are taken modulo 2**32, so negative lattice indices are fine.
    """
    x = np.asarray(ix).astype(np.uint32)
    y = np.asarray(iy).astype(np.uint32)
    if x.ndim == 0 and y.ndim == 0:  # numpy warns on 0-d (scalar) wrap-around; arrays don't
        return hash_uniform(x.reshape(1), y.reshape(1), seed)[0]
    x *= _M1  # unsigned array arithmetic wraps silently, as a hash wants
    y *= _M2
    h = x ^ y
    h ^= np.uint32((seed & 0xFFFFFFFF) * int(_M3) & 0xFFFFFFFF)
    # murmur3 finaliser: every input bit reaches every output bit
    h ^= h >> np.uint32(16)
    h *= _F1
    h ^= h >> np.uint32(13)
    h *= _F2
    h ^= h >> np.uint32(16)
    h >>= np.uint32(8)
    out = h.astype(np.float32)
    out *= _INV24
    return out


def _axis(start: int, length: int, cell: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Lattice index (relative), smoothstep weight, first lattice index and lattice count."""
    coords = np.arange(start, start + length, dtype=np.int64)
    cells = coords // cell
    frac = (coords - cells * cell).astype(np.float32) / np.float32(cell)
    weight = frac * frac * (np.float32(3.0) - np.float32(2.0) * frac)
    first = int(cells[0])
    return cells - first, weight, first, int(cells[-1]) - first + 2


def grid_noise(col_off: int, row_off: int, width: int, height: int, cell: int, seed: int):
    """Value noise on the global pixel grid: float32 array (height, width) in [0, 1).

    Pixel ``(col, row)`` (global, integer) gets the smooth interpolation of lattice values at
    multiples of ``cell`` pixels. A window is a pure slice of the infinite field.
    """
    jx, sx, fx, nx = _axis(col_off, width, cell)
    jy, sy, fy, ny = _axis(row_off, height, cell)
    lat = hash_uniform(
        np.arange(fx, fx + nx, dtype=np.int64)[None, :],
        np.arange(fy, fy + ny, dtype=np.int64)[:, None],
        seed,
    )
    # interpolate along x on the (small) lattice rows, then along y on full rows
    left = np.ascontiguousarray(lat[:, jx])  # fancy indexing on axis 1 yields F order
    rows = np.ascontiguousarray(lat[:, jx + 1])
    rows -= left
    rows *= sx
    rows += left
    step = rows[1:] - rows[:-1]
    out = np.take(step, jy, axis=0)
    out *= sy[:, None]
    out += np.take(rows, jy, axis=0)
    return out


def line_noise(coords: np.ndarray, cell: float, seed: int) -> np.ndarray:
    """1-D value noise at integer or float positions ``coords``: float32 in [0, 1)."""
    t = np.asarray(coords, dtype=np.float64) / cell
    i = np.floor(t)
    f = (t - i).astype(np.float32)
    w = f * f * (np.float32(3.0) - np.float32(2.0) * f)
    i = i.astype(np.int64)
    a = hash_uniform(i, 0, seed)
    b = hash_uniform(i + 1, 0, seed)
    return a + (b - a) * w


def point_noise(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Value noise at float coordinates ``(x, y)`` in lattice units (cell = 1): float32 [0, 1).

    ``x`` and ``y`` have the same shape; the lattice they span is hashed once and gathered.
    """
    fx0 = np.floor(x)
    fy0 = np.floor(y)
    tx = x - fx0
    ty = y - fy0
    tx = tx * tx * (np.float32(3.0) - np.float32(2.0) * tx)
    ty = ty * ty * (np.float32(3.0) - np.float32(2.0) * ty)
    ix = fx0.astype(np.int64)
    iy = fy0.astype(np.int64)
    x0, y0 = int(ix.min()), int(iy.min())
    ix -= x0
    iy -= y0
    lat = hash_uniform(
        np.arange(x0, x0 + int(ix.max()) + 2, dtype=np.int64)[None, :],
        np.arange(y0, y0 + int(iy.max()) + 2, dtype=np.int64)[:, None],
        seed,
    )
    flat = lat.ravel()
    stride = lat.shape[1]
    k = iy * stride
    k += ix
    a = flat.take(k)
    b = flat.take(k + 1)
    c = flat.take(k + stride)
    d = flat.take(k + stride + 1)
    b -= a
    b *= tx
    a += b  # top edge
    d -= c
    d *= tx
    c += d  # bottom edge
    c -= a
    c *= ty
    a += c
    return a.astype(np.float32, copy=False)
