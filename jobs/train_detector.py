"""Approach-3 training: labelled scenes → the box detector on Ray Train → a ``kind: detector`` bundle.

``train_detector(LABELS, OUT)`` reads the labels (DeepForest CSV or a vector file), loads each
labelled scene whole (bands, scaling and pixel size as ``whalescan detect`` reads them:
:mod:`jobs.labelled_scenes`), holds out the bottom
``val_strip`` of every scene (:mod:`models.scene_holdout`) and the last ``val_scenes`` scenes for
per-epoch AP, and trains :mod:`models.detector` data-parallel with the
classifier's machinery (:func:`jobs.ray_train.fit`: checkpoints, ``resume``, progress).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jobs.labelled_scenes import FACE_PX, LabelledScenes, load_labelled_scenes
from jobs.ray_train import RunPaths, TrainError, check_field, check_run, fit_run, read_checkpoint
from models.bundle import TEST_TIME_VIEWS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorTrainConfig(RunPaths):
    """One detector training job. ``batch_size`` is the global batch (split over ``workers``).

    ``crop``: training crop side in px (≥ the receptive field, 135 px); ``crops_per_epoch``:
    crops drawn per epoch over all scenes; ``val_strip``: the fraction of each training scene's
    rows (a strip at the bottom) held out for validation (0 = none); ``val_scenes``: whole
    scenes (the last ones) held out as well; ``mine_epoch``: the epoch at which hard negatives
    are mined (default: a third of the way; 0 = never); ``test_time_flips``: views (mirrors and
    quarter turns) the bundle's scorer averages (:class:`models.detector.FlipAverage`; the
    threshold is tuned with them). ``scene_column``, ``point_box_m``: how to read a vector labels
    file; ``label``: the faces' class(es), comma-separated (:func:`labels.read.read_labels`;
    None: every labelled box); ``face_px``: the median face size training and detection work at
    when the labelled faces are much larger (:mod:`jobs.labelled_scenes`; None: the scenes' GSD);
    ``second_look``: also train the chip classifier that re-scores each candidate
    (:mod:`jobs.train_second_look`).
    """

    labels: Path
    out: Path
    epochs: int = 120
    workers: int = 2
    batch_size: int = 16
    lr: float = 5e-3
    weight_decay: float = 1e-4
    crop: int = 263
    crops_per_epoch: int = 448
    width: int = 16
    val_strip: float = 0.125
    val_scenes: int = 0
    mine_epoch: int | None = None
    augment: tuple[str, ...] = ("flip", "rot90", "jitter", "scale", "look")
    storage: str | None = None
    resume: bool = False
    address: str | None = None
    seed: int = 0
    cpus_per_worker: float = 1.0
    use_gpu: bool | None = None
    progress: bool = True
    max_steps: int | None = None
    # Eight views (mirrors and quarter turns) raised held-out centre-F1 by about 0.05 over none,
    # for about 6.5× the detection time (docs/approach3.md).
    test_time_flips: int = 8
    scene_column: str | None = None
    point_box_m: float | None = None
    label: str | None = None
    face_px: float | None = FACE_PX
    second_look: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", Path(self.labels))
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "augment", tuple(self.augment))
        check_run(self)
        check_field(self.crop >= 135, "crop", self.crop, "≥ 135 px (the receptive field)")
        check_field(self.crops_per_epoch >= self.batch_size, "crops_per_epoch",
               self.crops_per_epoch, f"≥ batch_size ({self.batch_size})")  # fmt: skip
        check_field(self.width >= 4, "width", self.width, "≥ 4")
        check_field(self.face_px is None or self.face_px >= 8, "face_px", self.face_px, "≥ 8 px")
        check_field(self.test_time_flips in TEST_TIME_VIEWS, "test_time_flips",
                    self.test_time_flips, f"one of {TEST_TIME_VIEWS}")  # fmt: skip
        check_field(self.val_scenes >= 0, "val_scenes", self.val_scenes, "≥ 0")
        check_field(0 <= self.val_strip < 1, "val_strip", self.val_strip, "in [0, 1)")


def train_detector(labels_path: str | Path, out: str | Path, **opts: Any):
    """Train the box detector on the labels at ``labels_path`` into bundle ``out``; returns it.

    ``opts``: the other :class:`DetectorTrainConfig` fields.
    """
    return run_train_detector(DetectorTrainConfig(labels=labels_path, out=out, **opts))


def run_train_detector(config: DetectorTrainConfig):
    """Train as ``config`` says and write the bundle to ``config.out``; returns the ``Bundle``."""
    from models.detector_loop import train_detector_per_worker
    from models.tuning import best_threshold, scene_candidates

    data, parts, loop = _prepare(config)
    payload = (parts.train_images, parts.train_boxes, parts.train_fills,
               parts.val_images, parts.val_boxes, parts.val_fills)  # fmt: skip
    result, seconds = fit_run(config, loop, payload, per_worker=train_detector_per_worker)
    model, history = trained_model(config, loop, result.checkpoint)
    scenes = tuning_scenes(parts)
    found = scene_candidates(model, loop, scenes, config.test_time_flips)
    threshold, f1 = best_threshold(found, scenes, loop.match_radius)
    bundle = write_detector_bundle(config, data, parts, loop, model, history, seconds,
                                   threshold, f1)  # fmt: skip
    if not config.second_look:
        return bundle
    if len(data.uris) < 2:  # its chips hold out a whole scene for calibration
        log.warning("%s: one labelled scene; the second look needs two or more, trained none",
                    config.labels)  # fmt: skip
        return bundle
    from jobs.train_second_look import train_second_look

    return train_second_look(config, data, bundle, scenes, found, loop.match_radius)


def add_second_look(labels_path: str | Path, bundle_path: str | Path, **opts: Any):
    """Train the second look for a detector bundle trained without one (``--no-second-look``, or
    before it existed), on the labels it was trained on; ``opts``: the other
    :class:`DetectorTrainConfig` fields it was trained with. Returns the updated bundle."""
    from jobs.train_second_look import train_second_look
    from models.bundle import load_bundle, load_model
    from models.tuning import scene_candidates

    config = DetectorTrainConfig(labels=labels_path, out=bundle_path, **opts)
    bundle = load_bundle(bundle_path)
    data, parts, loop = _prepare(config)
    scenes = tuning_scenes(parts)
    found = scene_candidates(load_model(bundle), loop, scenes, bundle.test_time_flips)
    return train_second_look(config, data, bundle, scenes, found, loop.match_radius)


def _prepare(config: DetectorTrainConfig):
    """The labelled scenes, their training / held-out parts and the per-worker loop config."""
    data = load_labelled_scenes(
        config.labels, config.face_px, scene_column=config.scene_column,
        point_box_m=config.point_box_m, label=config.label,
    )  # fmt: skip
    parts = hold_out(config, data)
    return data, parts, detector_loop_config(config, parts, data.fingerprint)


def tuning_scenes(parts: HeldOut):
    """What thresholds are tuned on: the held-out strips hold a dozen faces, and one face more
    or less found moves their best threshold by 0.1–0.15. The training parts join them (a little
    optimistic, but ten times the faces): on unseen 30 MP scenes the pooled choice landed about
    0.05 below the best threshold, the strips' alone up to 0.1 off either way
    (docs/approach3.md)."""
    from models.tuning import Tuning

    return Tuning(parts.val_images + parts.train_images, parts.val_boxes + parts.train_boxes,
                  parts.val_fills + parts.train_fills)  # fmt: skip


@dataclass(frozen=True)
class HeldOut:
    """Training and validation parts of the labelled scenes (uint8 (3, H, W) images, (N, 4) px
    boxes of their own part, their scene's past-edge colour) and what each part is, for the bundle."""

    train_images: tuple[np.ndarray, ...]
    train_boxes: tuple[np.ndarray, ...]
    train_fills: tuple[np.ndarray, ...]
    val_images: tuple[np.ndarray, ...]
    val_boxes: tuple[np.ndarray, ...]
    val_fills: tuple[np.ndarray, ...]
    train_names: tuple[str, ...]
    val_names: tuple[str, ...]


def hold_out(config: DetectorTrainConfig, data: LabelledScenes) -> HeldOut:
    """The last ``val_scenes`` scenes whole and the bottom ``val_strip`` of the others → validation."""
    from models.scene_holdout import split_scene

    if config.val_scenes >= len(data.uris):
        raise TrainError(f"{str(config.labels)!r}: {len(data.uris)} scene(s), "
                         f"cannot hold out {config.val_scenes}")  # fmt: skip
    scenes = [_Part(*p) for p in zip(data.images, data.boxes, data.fills, data.uris, strict=True)]
    split = len(scenes) - config.val_scenes
    train, val = scenes[:split], scenes[split:]
    if config.val_strip > 0:
        cuts = [(split_scene(p.image, p.boxes, config.val_strip), p) for p in train]
        val = [_Part(c.val_image, c.val_boxes, p.fill, f"{p.name} rows {c.cut}:")
               for c, p in cuts] + val  # fmt: skip
        train = [_Part(c.train_image, c.train_boxes, p.fill, f"{p.name} rows :{c.cut}")
                 for c, p in cuts]  # fmt: skip
    (ti, tb, tf, tn), (vi, vb, vf, vn) = _columns(train), _columns(val)
    return HeldOut(ti, tb, tf, vi, vb, vf, tn, vn)


class _Part(NamedTuple):
    """One scene, or the part of one, with its boxes, its scene's fill and a name saying which."""

    image: np.ndarray
    boxes: np.ndarray
    fill: np.ndarray
    name: str


def _columns(parts: list[_Part]) -> tuple[tuple, ...]:
    """(images, boxes, fills, names) of ``parts``: the layout :class:`HeldOut` keeps."""
    return tuple(zip(*parts, strict=True)) if parts else ((),) * 4


def detector_loop_config(config: DetectorTrainConfig, parts: HeldOut, fingerprint: str = ""):
    """The per-worker loop config: normalisation from the training scenes, sizes from the labels."""
    from models.detector_loop import DetectorLoopConfig

    train_boxes = np.concatenate(parts.train_boxes)
    if not len(train_boxes):
        raise TrainError(f"{str(config.labels)!r}: the training scenes have no labelled faces")
    sides = np.concatenate(
        [train_boxes[:, 2] - train_boxes[:, 0], train_boxes[:, 3] - train_boxes[:, 1]]
    )
    mean, std = _channel_stats(parts.train_images)
    mine = config.mine_epoch if config.mine_epoch is not None else max(1, config.epochs // 3)
    return DetectorLoopConfig(
        input_size=config.crop, mean=mean, std=std,
        arch_args={"width": config.width, "size_ref": float(np.median(sides))},
        epochs=config.epochs, batch_size=config.batch_size // config.workers, lr=config.lr,
        weight_decay=config.weight_decay, augment=config.augment, seed=config.seed,
        threads=max(1, int(config.cpus_per_worker)), fingerprint=fingerprint,
        crops_per_epoch=config.crops_per_epoch, mine_epoch=mine or None,
        max_box_px=float(2 * sides.max()), match_radius=float(np.median(sides) / 2),
        max_steps=config.max_steps, warmup_epochs=1.0,
    )  # fmt: skip


def _channel_stats(images) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std on the 0..1 scale over the scenes' in-scene (non-zero) pixels."""
    sums, sq, n = np.zeros(3), np.zeros(3), 0
    for img in images:
        sample = img[:, ::4, ::4].reshape(3, -1).astype(np.float64) / 255
        sample = sample[:, sample.max(0) > 0]
        sums += sample.sum(1)
        sq += (sample**2).sum(1)
        n += sample.shape[1]
    mean = sums / max(n, 1)
    std = np.sqrt(np.maximum(sq / max(n, 1) - mean**2, 1e-6))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def trained_model(config: DetectorTrainConfig, loop, checkpoint):
    """The detector with the last checkpoint's weights, and the run's per-epoch history."""
    from models.detector_loop import build_detector_model

    weights, history = read_checkpoint(checkpoint, config.run_name)
    model = build_detector_model(loop)
    model.load_state_dict(weights)
    return model, history


def write_detector_bundle(config: DetectorTrainConfig, data: LabelledScenes, parts: HeldOut,
                          loop, model, history, seconds: float, threshold: float,
                          f1: float | None):  # fmt: skip
    """The trained detector + everything detection needs, as a ``kind: detector`` bundle."""
    from models.bundle import save_bundle

    last = history[-1]
    trained = sum(h["train_seconds"] for h in history)
    metrics = {
        **{k: last[k] for k in ("val_ap", "val_f1", "val_ap50", "train_loss") if k in last},
        "threshold": threshold, "labels_f1_at_threshold": f1,  # on train + held-out parts
        "epochs": len(history), "workers": config.workers, "train_seconds": round(seconds, 3),
        "samples_per_s": sum(h["train_samples"] for h in history) / trained if trained else 0.0,
        "train_scenes": list(parts.train_names), "val_scenes": list(parts.val_names),
        "history": history,
    }  # fmt: skip
    return save_bundle(
        config.out, model, kind="detector", arch=loop.arch, arch_args=dict(loop.arch_args),
        input_size=model.receptive_field, mean=loop.mean, std=loop.std, classes=[data.label],
        positive_class=data.label, output_stride=model.output_stride,
        receptive_field=model.receptive_field, object_size_px=loop.arch_args["size_ref"],
        max_box_px=loop.max_box_px, gsd_m=data.gsd_m, metrics=metrics,
        test_time_flips=config.test_time_flips,
        data_fingerprint=data.fingerprint,
    )  # fmt: skip
