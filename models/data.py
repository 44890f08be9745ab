"""Chip datasets in ImageFolder layout: ``<root>/<split>/<class>/*.png|jpg`` → uint8 arrays.

The layout is the course's whale lab: ``train/face``, ``train/not_face``, ``val/face``,
``val/not_face``; ``face`` is the positive class. Chips are square, all of one size, read as RGB.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

POSITIVE_CLASS = "face"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DATASET_JSON = "dataset.json"


class ChipDataError(ValueError):
    """A chip folder has the wrong layout or inconsistent chips."""


@dataclass(frozen=True)
class ChipSplit:
    """The chips of one folder, decoded.

    ``images``: (N, S, S, 3) uint8 RGB; ``labels``: (N,) int64 indices into ``classes``;
    ``paths``: the N files, relative to ``root``.
    """

    root: Path
    classes: tuple[str, ...]
    paths: tuple[str, ...]
    images: np.ndarray
    labels: np.ndarray

    @property
    def chip_size(self) -> int:
        return int(self.images.shape[1])

    def class_counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=len(self.classes)).tolist()


def list_classes(folder: Path) -> tuple[str, ...]:
    """Sorted class folder names under ``folder``; must hold ``face`` and at least one other."""
    if not folder.is_dir():
        raise ChipDataError(f"{str(folder)!r}: no such chip folder")
    classes = tuple(sorted(d.name for d in folder.iterdir() if d.is_dir()))
    if POSITIVE_CLASS not in classes or len(classes) < 2:
        raise ChipDataError(
            f"{str(folder)!r}: class folders {list(classes)}; expected 'face' and 'not_face' "
            "(ImageFolder layout: <split>/<class>/*.png)"
        )
    return classes


def read_split(folder: str | Path, classes: tuple[str, ...] | None = None) -> ChipSplit:
    """Decode every chip under ``folder/<class>/``; ``classes`` fixes the label order if given."""
    folder = Path(folder)
    found = list_classes(folder)
    classes = classes or found
    extra = sorted(set(found) - set(classes))
    if extra:
        raise ChipDataError(f"{str(folder)!r}: class folders {extra} are not in {list(classes)}")
    files = [(p, i) for i, c in enumerate(classes) for p in _images(folder / c)]
    if not files:
        raise ChipDataError(f"{str(folder)!r}: no .png/.jpg chips in {list(classes)}")
    images = _decode(folder, [p for p, _ in files])
    labels = np.array([i for _, i in files], dtype=np.int64)
    rel = tuple(p.relative_to(folder).as_posix() for p, _ in files)
    return ChipSplit(folder, classes, rel, images, labels)


@dataclass(frozen=True)
class ChipDataset:
    """A train/val chip dataset with what the model bundle records about it.

    ``mean``/``std``: per-channel (R, G, B) of the train chips on the 0..1 scale.
    ``face_size_px``, ``gsd_m`` (metres per pixel the chips were cut at): from ``dataset.json``
    if present, else None.
    """

    root: Path
    train: ChipSplit
    val: ChipSplit
    fingerprint: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    face_size_px: float | None
    gsd_m: float | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes

    @property
    def chip_size(self) -> int:
        return self.train.chip_size


def read_dataset(root: str | Path) -> ChipDataset:
    """Read ``root/train`` and ``root/val`` (same classes, same chip size) and describe them."""
    root = Path(root)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise ChipDataError(f"{str(root)!r}: no {split}/ folder (expected train/ and val/)")
    train = read_split(root / "train")
    val = read_split(root / "val", classes=train.classes)
    if val.chip_size != train.chip_size:
        raise ChipDataError(
            f"{str(root)!r}: val chips are {val.chip_size} px, train chips {train.chip_size} px"
        )
    mean, std = channel_stats(train.images)
    files = [root / "train" / p for p in train.paths] + [root / "val" / p for p in val.paths]
    meta = _dataset_meta(root)
    return ChipDataset(
        root, train, val, fingerprint(root, files), mean, std,
        _positive_or_none(meta, "face_size_px", root), _positive_or_none(meta, "gsd_m", root),
    )  # fmt: skip


def eval_split(folder: str | Path, classes: tuple[str, ...] | None = None) -> ChipSplit:
    """The chips to evaluate in ``folder``: its ``val/`` split if it has one, else the folder."""
    folder = Path(folder)
    return read_split(folder / "val" if (folder / "val").is_dir() else folder, classes)


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(N, H, W, 3) uint8 → per-channel mean and std on the 0..1 scale (std floored at 1/255)."""
    x = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    mean = tuple(float(v) for v in x.mean(axis=0))
    std = tuple(max(float(v), 1 / 255) for v in x.std(axis=0))
    return mean, std


def fingerprint(root: Path, files: list[Path]) -> str:
    """sha256 over the sorted (path relative to ``root``, size, content sha256) of ``files``."""
    h = hashlib.sha256()
    for p in sorted(files, key=lambda f: f.relative_to(root).as_posix()):
        data = p.read_bytes()
        h.update(f"{p.relative_to(root).as_posix()}\0{len(data)}\0".encode())
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _decode(folder: Path, paths: list[Path]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    first = None
    out = None
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                chip = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise ChipDataError(f"{str(p)!r}: not a readable image ({e})") from e
        if out is None:
            first = p
            if chip.shape[0] != chip.shape[1]:
                raise ChipDataError(
                    f"{str(p)!r}: chip is {chip.shape[1]}×{chip.shape[0]}, not square"
                )
            out = np.empty((len(paths), *chip.shape), dtype=np.uint8)
        elif chip.shape != out.shape[1:]:
            raise ChipDataError(
                f"{str(p)!r}: chip is {chip.shape[1]}×{chip.shape[0]} px, but "
                f"{str(first)!r} is {out.shape[2]}×{out.shape[1]}; all chips must be one size"
            )
        out[i] = chip
    log.debug("decoded %d chips from %s", len(paths), folder)
    return out


def _dataset_meta(root: Path) -> dict:
    """``root/dataset.json`` as a dict ({} when there is none)."""
    meta = root / DATASET_JSON
    if not meta.is_file():
        return {}
    try:
        doc = json.loads(meta.read_text())
    except json.JSONDecodeError as e:
        raise ChipDataError(f"{str(meta)!r}: not valid JSON ({e})") from e
    if not isinstance(doc, dict):
        raise ChipDataError(f"{str(meta)!r}: expected a JSON object, got {type(doc).__name__}")
    return doc


def _positive_or_none(meta: dict, key: str, root: Path) -> float | None:
    value = meta.get(key)
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not v > 0:
        raise ChipDataError(f"{str(root / DATASET_JSON)!r}: {key} {value!r}, expected a number > 0")
    return v
