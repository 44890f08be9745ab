"""Cut an ImageFolder chip dataset from labelled scenes: faces centred, negatives as surveys see them.

Layout written under ``out``::

    train/face/*.png  train/not_face/*.png  val/face/*.png  val/not_face/*.png  dataset.json

* **Positives**: each labelled face, ``per_face`` times, its box centre at the chip centre ±
  ``jitter_px`` (chip pixels). A chip may reach past the scene edge, filled there as
  ``detect`` fills its windows; only a face whose centre pixel is nodata is skipped (counted).
* **Negatives**, ``negatives`` per positive, four kinds (:data:`NEGATIVE_MIX`):
  ``near`` — centred 0.35–0.9 chip sides from a face (its body, flukes, a calf, foam beside it);
  ``salient`` — the scene's most unusual pixels away from faces (foam, boats, glint, debris,
  headless bodies), drawn with probability ∝ their squared deviation from the local background
  on a decimated read (so haze and cloud shadow do not count); ``water`` — anywhere;
  ``edge`` — reaching past a scene border, where a filled edge beside
  water must not look like a head. No negative is centred within ``0.35 · size`` chip px of
  a labelled face, so a face in a negative is always well off-centre (as in ``synth chips``).
* **Pixels** are read exactly as ``detect`` reads a scene for a bundle at ``gsd_m``: on the
  scored grid (:mod:`tiling.sampling`: native, a matching overview or a warped VRT), through
  :func:`tiling.read.read_window`, scaled by :mod:`tiling.bands`. Without ``gsd_m``: native.
* **Split**: by scene — ``val_fraction`` of the scenes (at least one) go wholly to ``val/``.

``dataset.json``: ``gsd_m`` (the chips' GSD; null when unknown), ``face_size_px`` (median face
box side ``(w + h) / 2`` in chip pixels — the detection box the classifier will draw),
``chip_size``, ``source`` (fingerprint of the labels and their scenes) and what went where.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labels.read import LabelsError, SceneLabels, read_labels

__all__ = ["NEGATIVE_MIX", "ChipsConfig", "ChipsSummary", "cut_chips"]

log = logging.getLogger(__name__)

NEGATIVE_MIX = {"near": 0.30, "salient": 0.35, "water": 0.25, "edge": 0.10}
OFF_CENTRE = 0.35
"""No negative is centred closer than this fraction of the chip side to a labelled face."""
NEAR_MAX = 0.9
SPLITS = ("train", "val")


@dataclass(frozen=True)
class ChipsConfig:
    """One chip cut: ``labels`` file → ImageFolder dataset at ``out`` (see the module doc)."""

    labels: Path  # DeepForest CSV or vector file (labels.read)
    out: Path
    size: int = 64  # chip side, px (16..512)
    gsd_m: float | None = None  # metres per chip px; None: the scenes' native pixels
    seed: int = 0
    val_fraction: float = 0.25  # share of the scenes (at least one) that go wholly to val/
    per_face: int = 4  # positives per labelled face
    negatives: float = 1.0  # negatives per positive
    jitter_px: float = 3.0  # a positive's centre is the chip centre ± this (chip px)
    scene_column: str | None = None  # vector labels: the column naming each row's scene
    point_box_m: float | None = None  # vector labels: box side for points, ground metres
    label: str | None = None  # the faces' class(es), comma-separated; None: every box

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", Path(self.labels))
        object.__setattr__(self, "out", Path(self.out))
        if (
            isinstance(self.size, bool)
            or not isinstance(self.size, int)
            or not 16 <= self.size <= 512
        ):
            raise ValueError(f"size={self.size!r}: expected an integer chip side in 16..512 px")
        if self.gsd_m is not None and not (math.isfinite(self.gsd_m) and self.gsd_m > 0):
            raise ValueError(
                f"gsd_m={self.gsd_m!r}: expected a positive ground sample distance (m)"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction={self.val_fraction!r}: expected 0 < val_fraction < 1")
        if (
            isinstance(self.per_face, bool)
            or not isinstance(self.per_face, int)
            or self.per_face < 1
        ):
            raise ValueError(f"per_face={self.per_face!r}: expected an integer >= 1")
        if not self.negatives >= 0:
            raise ValueError(f"negatives={self.negatives!r}: expected >= 0 per positive")
        if not 0 <= self.jitter_px < self.size * OFF_CENTRE:
            raise ValueError(
                f"jitter_px={self.jitter_px!r}: expected 0 <= jitter < {OFF_CENTRE} x size"
            )


@dataclass(frozen=True)
class ChipsSummary:
    """What :func:`cut_chips` wrote: chips per (split, class), scenes per split, skipped faces."""

    out: Path
    counts: dict[str, int]
    scenes: dict[str, tuple[str, ...]]
    skipped_faces: int
    gsd_m: float | None
    face_size_px: float
    seconds: float

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        gsd = "native pixels" if self.gsd_m is None else f"{self.gsd_m:g} m/px"
        return (
            f"{self.out}: {parts} chips; {len(self.scenes['train'])} train / "
            f"{len(self.scenes['val'])} val scenes; face {self.face_size_px:.1f} px at {gsd}; "
            f"{self.skipped_faces} faces on nodata skipped; {self.seconds:.1f} s"
        )


def cut_chips(config: ChipsConfig) -> ChipsSummary:
    """Cut the dataset ``config`` describes; existing PNGs under ``config.out`` are replaced."""
    start = time.perf_counter()
    scenes = read_labels(config.labels, scene_column=config.scene_column,
                         point_box_m=config.point_box_m, label=config.label)  # fmt: skip
    if len(scenes) < 2:
        raise LabelsError(
            f"{str(config.labels)!r}: {len(scenes)} scene(s); the train/val split is by scene, "
            "so chips need labels on at least 2 scenes"
        )
    if not any(len(s.boxes) for s in scenes):
        raise LabelsError(f"{str(config.labels)!r}: no labelled faces to cut chips around")
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(scenes))
    n_val = min(len(scenes) - 1, max(1, round(len(scenes) * config.val_fraction)))
    split_of = {int(i): ("val" if k < n_val else "train") for k, i in enumerate(order)}
    dirs = _fresh_dirs(config.out)
    counts = {f"{s}/{c}": 0 for s in SPLITS for c in ("face", "not_face")}
    faces_px: list[float] = []
    gsds: list[float | None] = []
    skipped = 0
    for index, labelled in enumerate(scenes):
        split = split_of[index]
        with _SceneReader(labelled.scene, config.gsd_m) as reader:
            gsds.append(reader.native_gsd_m)
            sizes = (labelled.boxes[:, 2:] - labelled.boxes[:, :2]).mean(axis=1) / reader.factor
            faces_px += sizes.tolist()
            chips = _scene_chips(
                labelled, reader, config, np.random.default_rng([config.seed, index])
            )
            skipped += chips.skipped
            for i, (cls, kind, chip) in enumerate(chips.items):
                _save(chip, dirs[split, cls] / f"s{index:03d}_{kind}_{i:05d}.png")
                counts[f"{split}/{cls}"] += 1
    gsd_m = config.gsd_m if config.gsd_m is not None else _common(gsds)
    face_size = float(np.median(faces_px))
    names = {
        s: tuple(scenes[i].scene for i in range(len(scenes)) if split_of[i] == s) for s in SPLITS
    }
    meta = {
        "gsd_m": gsd_m,
        "face_size_px": round(face_size, 3),
        "chip_size": config.size,
        "source": _fingerprint(config.labels, scenes),
        "labels": str(config.labels.resolve()),
        "scenes": names,
        "counts": counts,
        "seed": config.seed,
        "generator": "whalescan.chips",
    }
    (config.out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    summary = ChipsSummary(
        config.out, counts, names, skipped, gsd_m, face_size, time.perf_counter() - start
    )
    log.info("%s", summary)
    return summary


@dataclass(frozen=True)
class _Chips:
    items: list[tuple[str, str, np.ndarray]]  # (class, kind, (S, S, 3) uint8)
    skipped: int


def _scene_chips(labelled: SceneLabels, reader, config: ChipsConfig, rng) -> _Chips:
    """Positives then negatives of one scene (centres in native pixels, read at target scale)."""
    size, f = config.size, reader.factor
    centres = (labelled.boxes[:, :2] + labelled.boxes[:, 2:]) / 2
    items, skipped = [], 0
    margin = config.jitter_px * f
    for cx, cy in centres:
        for _ in range(config.per_face):
            jitter = rng.uniform(-margin, margin, size=2)
            chip = reader.chip(cx + jitter[0], cy + jitter[1], size)
            if chip is None:
                skipped += 1
                break
            items.append(("face", "face", chip))
    n_neg = round(len(items) * config.negatives) if len(centres) else config.per_face * 4
    kinds = rng.choice(list(NEGATIVE_MIX), size=n_neg, p=list(NEGATIVE_MIX.values()))
    clear = OFF_CENTRE * size * f  # native px
    salient = reader.salient_points(rng, centres, clear)
    for kind in kinds:
        for _ in range(50):
            x, y = _negative_centre(kind, rng, centres, salient, reader, size * f)
            if len(centres) and np.hypot(*(centres - (x, y)).T).min() < clear:
                continue
            chip = reader.chip(x, y, size)
            if chip is not None:
                items.append(("not_face", str(kind), chip))
                break
    return _Chips(items, skipped)


def _negative_centre(kind, rng, centres, salient, reader, side_native):
    if kind == "near" and len(centres):
        cx, cy = centres[rng.integers(len(centres))]
        angle = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(OFF_CENTRE, NEAR_MAX) * side_native
        return cx + dist * np.cos(angle), cy + dist * np.sin(angle)
    if kind == "salient" and len(salient):
        return salient[rng.integers(len(salient))]
    if kind == "edge":  # the chip reaches past a border, as detect's windows do
        x, y = rng.uniform(0, reader.width), rng.uniform(0, reader.height)
        inset = rng.uniform(0, side_native / 2)
        side = rng.integers(4)
        if side < 2:
            return (inset if side == 0 else reader.width - inset), y
        return x, (inset if side == 2 else reader.height - inset)
    return rng.uniform(0, reader.width), rng.uniform(0, reader.height)


class _SceneReader:
    """Reads square chips of one scene as ``detect`` reads its regions: on the scored grid at
    the target GSD (:mod:`tiling.sampling`, :mod:`tiling.resample`), through
    :func:`tiling.read.read_window` (filled past the edge and under nodata), scaled by
    :mod:`tiling.bands`. ``factor``: native px per chip px (the geometric mean of x and y)."""

    def __init__(self, uri: str, gsd_m: float | None):
        self.uri, self.gsd_m = uri, gsd_m

    def __enter__(self):
        from tiling.bands import resolve_scaling, select_bands
        from tiling.resample import ScoredView
        from tiling.sampling import scene_sampling
        from tiling.scene import open_scene, scene_env

        with contextlib.ExitStack() as stack:
            stack.enter_context(scene_env(self.uri))
            try:
                self.ds = stack.enter_context(open_scene(self.uri))
                self.bands = select_bands(self.ds, self.uri, None)
                self.scaling = resolve_scaling(self.ds, self.bands, "auto")
                sampling = scene_sampling(self.ds, self.uri, self.gsd_m)
                if self.gsd_m is not None and sampling.gsd is None:
                    raise LabelsError(
                        f"{self.uri!r}: ground sample distance unknown (no usable "
                        "georeferencing); cut chips at native pixels (no gsd_m) or "
                        "georeference the scene"
                    )
                view = ScoredView(self.ds, sampling.grid)
                stack.callback(view.close)
            except OSError as e:  # tiling.scene.SceneError: unreadable, too few bands...
                raise LabelsError(f"{self.uri!r}: {e}") from e
            self.reader, self.grid = view.reader, sampling.grid
            self.native_gsd_m = sampling.gsd_m
            self.factor = math.sqrt(self.grid.fx * self.grid.fy)
            self.width, self.height = self.ds.width, self.ds.height
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        self._stack.__exit__(*exc)

    def chip(self, cx: float, cy: float, size: int) -> np.ndarray | None:
        """(size, size, 3) uint8 centred on native (cx, cy), or None when its centre pixel is
        outside the scene or nodata. The chip may reach past the scene edge, filled there as
        detect's windows are, so faces at the edge and the edge itself are learnt as detect
        sees them."""
        from rasterio.windows import Window

        from tiling.read import read_window

        if not (0 <= cx < self.width and 0 <= cy < self.height):
            return None
        col = round(cx / self.grid.fx - size / 2)
        row = round(cy / self.grid.fy - size / 2)
        window = Window(col, row, size, size)
        pixels, valid = read_window(self.reader, self.uri, window, self.bands, self.scaling)
        if not valid[size // 2, size // 2]:
            return None
        return np.ascontiguousarray(np.rint(pixels).astype(np.uint8).transpose(1, 2, 0))

    def salient_points(self, rng, centres: np.ndarray, clear: float, n: int = 256) -> np.ndarray:
        """(n, 2) native (x, y) points drawn ∝ squared deviation from the local background,
        none within ``clear`` native px of a face centre in ``centres`` (k, 2)."""
        f = max(1, max(self.width, self.height) // 1024)
        h, w = max(1, self.height // f), max(1, self.width // f)
        sample = self.ds.read(self.bands, out_shape=(3, h, w), masked=True)
        pixels = self.scaling.apply(sample.filled(0))
        valid = ~np.ma.getmaskarray(sample).any(axis=0)
        score = (np.abs(pixels - _background(pixels)).sum(axis=0) ** 2) * valid
        ys, xs = np.mgrid[0:h, 0:w]
        px = (xs + 0.5) * self.width / w
        py = (ys + 0.5) * self.height / h
        for cx, cy in centres:
            score[np.hypot(px - cx, py - cy) < clear] = 0
        total = score.sum()
        if total <= 0:
            return np.empty((0, 2))
        pick = rng.choice(score.size, size=n, p=(score / total).ravel())
        jitter = rng.uniform(-0.5, 0.5, size=(n, 2)) * (self.width / w, self.height / h)
        return np.column_stack([px.ravel()[pick], py.ravel()[pick]]) + jitter


def _background(pixels: np.ndarray, shrink: int = 16) -> np.ndarray:
    """(3, h, w) float32 → its smooth background: shrunk ``shrink``-fold, enlarged bilinearly,
    so haze and cloud shadow are background and only small things stand out."""
    from PIL import Image

    _, h, w = pixels.shape
    small = (max(1, w // shrink), max(1, h // shrink))
    out = np.empty_like(pixels)
    for b, band in enumerate(pixels):
        coarse = Image.fromarray(band, mode="F").resize(small, Image.Resampling.BOX)
        out[b] = np.asarray(coarse.resize((w, h), Image.Resampling.BILINEAR))
    return out


def _common(gsds: list[float | None]) -> float | None:
    """The scenes' GSD when all agree within 2 %, else None (chips then mix pixel sizes)."""
    if not gsds or any(g is None for g in gsds):
        return None
    lo, hi = min(gsds), max(gsds)
    if hi > lo * 1.02:
        log.warning("scenes have GSDs from %.4g to %.4g m/px; dataset.json records none", lo, hi)
        return None
    return float(np.median(gsds))


def _fingerprint(labels: Path, scenes: list[SceneLabels]) -> str:
    """sha256 of the labels file and of each scene's name and size."""
    h = hashlib.sha256(labels.read_bytes())
    for s in scenes:
        size = Path(s.scene).stat().st_size if "://" not in s.scene else -1
        h.update(f"\0{Path(s.scene).name}\0{size}".encode())
    return f"sha256:{h.hexdigest()}"


def _fresh_dirs(out: Path) -> dict[tuple[str, str], Path]:
    dirs = {}
    for split in SPLITS:
        for cls in ("face", "not_face"):
            d = out / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for stale in d.glob("*.png"):
                stale.unlink()
            dirs[split, cls] = d
    return dirs


def _save(chip: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(chip).save(path, compress_level=3)
