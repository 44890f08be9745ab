"""TensorRT engine cache: one engine file per (ONNX, TensorRT version, GPU, precision, profile).

An engine is only valid for the exact ONNX file, TensorRT version and GPU model it was built
with, and only runs shapes inside its optimisation profile; all five go into the cache key, so a
re-exported model, an upgraded TensorRT or another GPU builds a new engine instead of loading a
wrong one. Engines live in ``<bundle>/engines/<key>.engine`` with a ``<key>.json`` that spells
the key out (read back to find an engine that covers a shape). Pure Python: no TensorRT needed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from models.bundle import Bundle
from storage.atomic import write_bytes_atomic

Shape = tuple[int, int, int, int]


@dataclass(frozen=True)
class ShapeProfile:
    """A TensorRT optimisation profile of the (N, 3, H, W) input: ``min`` ≤ ``opt`` ≤ ``max``.

    TensorRT tunes its kernels for ``opt`` and accepts every shape between ``min`` and ``max``
    (element-wise).
    """

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        for field in ("min", "opt", "max"):
            shape = tuple(int(v) for v in getattr(self, field))
            if len(shape) != 4 or shape[1] != 3 or min(shape) < 1:
                raise ValueError(f"profile {field}={shape}: expected (N, 3, H, W), all ≥ 1")
            object.__setattr__(self, field, shape)
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max, strict=True)):
            raise ValueError(
                f"profile min {self.min} ≤ opt {self.opt} ≤ max {self.max} does not hold "
                "element-wise; change --tile/--max-batch"
            )

    @classmethod
    def for_tiles(
        cls, chip: int, tile_hw: tuple[int, int], max_batch: int, opt_batch: int | None = None
    ) -> ShapeProfile:
        """Batches of 1..``max_batch`` region tiles from one chip up to ``tile_hw`` (rows, cols).

        Kernels are tuned for full batches of full tiles (``opt``), the shape of a detection
        run; smaller edge regions and partial batches still run.
        """
        th, tw = (int(v) for v in tile_hw)
        if th < chip or tw < chip:
            raise ValueError(f"tile {th}×{tw} px is smaller than the model's {chip} px chip")
        if max_batch < 1:
            raise ValueError(f"max_batch {max_batch}: expected ≥ 1")
        opt = max_batch if opt_batch is None else opt_batch
        return cls(min=(1, 3, chip, chip), opt=(opt, 3, th, tw), max=(max_batch, 3, th, tw))

    def covers(self, shape: tuple[int, ...]) -> bool:
        """Whether an input of ``shape`` (N, 3, H, W) runs under this profile."""
        return len(shape) == 4 and all(
            lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max, strict=True)
        )

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShapeProfile:
        return cls(min=tuple(d["min"]), opt=tuple(d["opt"]), max=tuple(d["max"]))


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. ``name`` is the file stem: ``<precision>-<digest>``."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    precision: str
    profile: ShapeProfile

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["profile"] = self.profile.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineKey:
        return cls(**{**d, "profile": ShapeProfile.from_dict(d["profile"])})

    @property
    def digest(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    @property
    def name(self) -> str:
        return f"{self.precision}-{self.digest}"


def engine_dir(bundle: Bundle) -> Path:
    """``<bundle>/engines`` (or under the fallback of :func:`models.export.artifact_dir`)."""
    from models.export import artifact_dir

    return artifact_dir(bundle) / "engines"


def engine_path(bundle: Bundle, key: EngineKey) -> Path:
    return engine_dir(bundle) / f"{key.name}.engine"


def cached_engines(bundle: Bundle) -> Iterator[tuple[EngineKey, Path]]:
    """Every (key, engine path) in the bundle's cache whose engine file and key file both exist."""
    d = engine_dir(bundle)
    if not d.is_dir():
        return
    for meta in sorted(d.glob("*.json")):
        engine = meta.with_suffix(".engine")
        try:
            key = EngineKey.from_dict(json.loads(meta.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a foreign or half-written file is not a cache entry
        if engine.is_file() and key.name == meta.stem:
            yield key, engine


def find_engine(
    bundle: Bundle,
    onnx_sha256: str,
    tensorrt_version: str,
    gpu_name: str,
    precision: str,
    shape: tuple[int, ...],
) -> tuple[EngineKey, Path] | None:
    """A cached engine for this model/TensorRT/GPU/precision whose profile covers ``shape``.

    Among several, the one with the smallest ``max`` volume (tightest fit) wins.
    """
    hits = [
        (key, path)
        for key, path in cached_engines(bundle)
        if (key.onnx_sha256, key.tensorrt_version, key.gpu_name, key.precision)
        == (onnx_sha256, tensorrt_version, gpu_name, precision)
        and key.profile.covers(tuple(shape))
    ]
    if not hits:
        return None
    return min(hits, key=lambda kp: _volume(kp[0].profile.max))


def write_engine(bundle: Bundle, key: EngineKey, blob: bytes) -> Path:
    """Store ``blob`` as ``<key>.engine`` (+ ``<key>.json``), atomically; return the engine path."""
    path = engine_path(bundle, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, blob)  # the engine first: a key file names only a whole engine
    write_bytes_atomic(path.with_suffix(".json"), json.dumps(key.to_dict(), indent=2).encode())
    return path


def _volume(shape: Shape) -> int:
    n = 1
    for v in shape:
        n *= v
    return n
