"""The options every backend takes, as one frozen value."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackendOptions:
    """What every backend takes: ``device`` (None: the backend's own choice), intra-op CPU
    ``threads`` (None: all cores), ``precision`` (None: the backend's default) and ``max_batch``
    (larger batches are split; None: never)."""

    device: str | None = None
    threads: int | None = None
    precision: str | None = None
    max_batch: int | None = None

    def __post_init__(self):
        for field in ("threads", "max_batch"):
            value = getattr(self, field)
            if value is not None and value < 1:
                raise ValueError(f"backend {field} {value}: expected a positive count or None")

    def precision_or(self, default: str) -> str:
        """The precision asked for, else ``default`` (the backend's own)."""
        return self.precision or default


DEFAULT_OPTIONS = BackendOptions()
