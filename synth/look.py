"""How hard a scene is: whale sizes, calves, distractor density, haze and cloud shadow.

:data:`DEFAULT_LOOK` draws exactly the scenes synth always drew (same objects, same pixels);
:data:`HARD_LOOK` is the ``--hard`` set of ``whalescan synth scenes``: whales from 0.8 to 1.25
times the nominal face size, calves beside some adults, twice the hard negatives, and patches
of haze and cloud shadow that change the contrast and brightness across the scene.
"""

from __future__ import annotations

from dataclasses import dataclass

from synth.units import SIZE_JITTER

__all__ = ["DEFAULT_LOOK", "HARD_LOOK", "SceneLook"]


@dataclass(frozen=True)
class SceneLook:
    """``whale_scale``: (low, high) range of a whale's size factor (1.0 = ``FACE_SIZE_PX``).
    ``calves``: probability that an adult has a calf beside it (a smaller whale, face labelled).
    ``distractors``: factor on the hard-negative densities. ``haze``: peak haze opacity (0..1).
    ``shadow``: peak darkening by cloud shadow (0..1)."""

    whale_scale: tuple[float, float] = (1 - SIZE_JITTER, 1 + SIZE_JITTER)
    calves: float = 0.0
    distractors: float = 1.0
    haze: float = 0.0
    shadow: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.whale_scale
        if not 0 < lo <= hi:
            raise ValueError(f"whale_scale={self.whale_scale!r}: expected 0 < low <= high")
        for name in ("calves", "haze", "shadow"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value!r}: expected a fraction in [0, 1]")
        if not self.distractors >= 0:
            raise ValueError(f"distractors={self.distractors!r}: expected a factor >= 0")

    @property
    def atmosphere(self) -> bool:
        """Whether haze or shadow change the pixels (the default look leaves them alone)."""
        return self.haze > 0 or self.shadow > 0


DEFAULT_LOOK = SceneLook()
HARD_LOOK = SceneLook(whale_scale=(0.8, 1.25), calves=0.35, distractors=2.0, haze=0.4, shadow=0.5)
