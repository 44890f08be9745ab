"""Ground scale shared by chips and scenes: a face has the same size in pixels in both.

A right whale's head (rostrum tip to blowholes) is about 3.2 m long; at the default ground
sample distance of 0.10 m per pixel that is :data:`FACE_SIZE_PX` = 32 pixels along the head's
long axis. Individual whales vary by :data:`SIZE_JITTER` (±10 %).
"""

from __future__ import annotations

__all__ = ["FACE_SIZE_PX", "GSD_M", "HEAD_LENGTH_M", "SIZE_JITTER"]

GSD_M = 0.10
"""Ground sample distance, metres per pixel (both axes)."""

FACE_SIZE_PX = 32
"""Head (face) long-axis length in pixels at :data:`GSD_M` — a ~3.2 m right-whale head."""

HEAD_LENGTH_M = FACE_SIZE_PX * GSD_M

SIZE_JITTER = 0.10
"""Whales are drawn at ``scale`` in ``[1 - SIZE_JITTER, 1 + SIZE_JITTER]`` of the nominal size."""
