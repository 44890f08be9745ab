"""Placed objects: what an object is, where it is, and the capsule it occupies.

Every object in a chip or scene is a :class:`SceneObject` — a kind, an anchor point in global
pixel coordinates, a heading, a size factor and a seed from which all its details (callosity
pattern, hull colour, foam texture...) follow. The same object draws identically into any
canvas window, so scenes can be written block by block.

Anchors: for ``whale`` (a whale with its head visible) and ``body`` (a whale whose head is
under water) the anchor is the HEAD centre; for ``flukes`` the centre of the fluke; for the
others the centre of the object (for boats, of the hull).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KINDS", "NEGATIVE_KINDS", "SceneObject"]

KINDS = ("whale", "body", "flukes", "foam", "boat", "debris", "glint")
NEGATIVE_KINDS = KINDS[1:]
"""Kinds that look like parts of the sea or of whales but show no face."""


@dataclass(frozen=True)
class SceneObject:
    """One object: ``kind``, anchor ``(cx, cy)`` in global pixels, compass ``heading_deg``
    (0° = up/-row, 90° = right/+col), ``scale`` (1.0 = nominal size) and detail ``seed``."""

    kind: str
    cx: float
    cy: float
    heading_deg: float
    scale: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}: expected one of {', '.join(KINDS)}")
        if not self.scale > 0:
            raise ValueError(f"scale={self.scale!r}: expected > 0")
