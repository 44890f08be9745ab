"""The classifier's training: chips → data-parallel training on Ray Train → a model bundle
(the ``whalescan train`` command is :mod:`jobs.train`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from jobs.ray_train import (
    RunPaths,
    TrainError,
    check_field,
    check_run,
    fit_run,
    read_checkpoint,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig(RunPaths):
    """One training job. ``batch_size`` is the global batch (split evenly over ``workers``).

    ``storage``: where Ray Train keeps per-epoch checkpoints (local dir or ``s3://``); default
    ``<out>.runs`` next to the bundle. ``object_size``: face size in pixels for the detector;
    default ``dataset.json``'s ``face_size_px``, else half the chip size. ``gsd_m``: metres per
    pixel of the chips, recorded in the bundle so detection rescales scenes to it; default
    ``dataset.json``'s ``gsd_m``, else unknown. ``use_gpu``: None = use GPUs when the cluster has
    any.
    """

    data: Path
    out: Path
    epochs: int = 30
    workers: int = 2
    arch: str = "whalenet"
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    augment: tuple[str, ...] = ("flip", "rot90", "jitter")
    storage: str | None = None
    resume: bool = False
    address: str | None = None
    seed: int = 0
    object_size: float | None = None
    gsd_m: float | None = None
    cpus_per_worker: float = 1.0
    use_gpu: bool | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        from models.augment import parse_ops
        from models.nets import ARCHS

        object.__setattr__(self, "data", Path(self.data))
        object.__setattr__(self, "out", Path(self.out))
        try:
            object.__setattr__(self, "augment", parse_ops(self.augment))
        except ValueError as e:
            raise ValueError(f"augment: {e}") from e
        check_run(self)
        check_field(self.weight_decay >= 0, "weight_decay", self.weight_decay, "≥ 0")
        check_field(self.arch in ARCHS, "arch", self.arch, f"one of {sorted(ARCHS)}")
        check_field(self.object_size is None or self.object_size > 0, "object_size",
               self.object_size, "> 0 pixels")  # fmt: skip
        check_field(
            self.gsd_m is None or self.gsd_m > 0, "gsd_m", self.gsd_m, "> 0 metres per pixel"
        )
        check_field(self.cpus_per_worker > 0, "cpus_per_worker", self.cpus_per_worker, "> 0")


def run_train(config: TrainConfig):
    """Train as ``config`` says and write the bundle to ``config.out``; returns the ``Bundle``."""
    from models.data import read_dataset

    data = read_dataset(config.data)
    loop = loop_config(config, data)
    result, seconds = fit_run(config, loop, data)
    return write_bundle(config, data, loop, result.checkpoint, seconds)


def loop_config(config: TrainConfig, data):
    """The per-worker :class:`~models.train_loop.LoopConfig` for ``config`` and the chips."""
    from models.train_loop import LoopConfig

    counts = data.train.class_counts()
    if min(counts) == 0:
        empty = [c for c, n in zip(data.classes, counts, strict=True) if n == 0]
        raise TrainError(f"{str(data.root)!r}: train/ has no chips of class(es) {empty}")
    # Class-balanced loss: w_c = N / (C · n_c), so the mean weight over the train set is 1.
    weights = tuple(sum(counts) / (len(counts) * n) for n in counts)
    return LoopConfig(
        input_size=data.chip_size, mean=data.mean, std=data.std, arch=config.arch,
        num_classes=len(data.classes), epochs=config.epochs,
        batch_size=config.batch_size // config.workers, lr=config.lr,
        weight_decay=config.weight_decay, augment=config.augment, class_weights=weights,
        seed=config.seed, threads=max(1, int(config.cpus_per_worker)),
        fingerprint=data.fingerprint,
    )  # fmt: skip


def write_bundle(config: TrainConfig, data, loop, checkpoint, seconds: float):
    """Load the last checkpoint, calibrate on ``val/`` (held-out chips), save the model bundle."""
    import torch
    import torch.nn.functional as F

    from models.bundle import save_bundle
    from models.calibrate import fit_temperature, laplace_smoothing, nll
    from models.data import POSITIVE_CLASS
    from models.scorer import Normalize
    from models.train_loop import build_model, predict_logits

    weights, history = read_checkpoint(checkpoint, config.run_name)
    model = build_model(loop)
    model.load_state_dict(weights)
    logits = predict_logits(model, data.val.images, Normalize(data.mean, data.std))
    labels = torch.from_numpy(data.val.labels)
    temperature = fit_temperature(logits, labels)
    trained = sum(h["train_seconds"] for h in history)
    metrics = {
        "val_accuracy": float((logits.argmax(1) == labels).float().mean()),
        "val_loss": float(F.cross_entropy(logits, labels)),
        "val_nll_calibrated": nll(logits, labels, temperature),
        # temperature fitted on val/ with Laplace-smoothed targets (models/calibrate.py), so a
        # val set the model separates cannot drive every score to 1.00
        "calibration": {"held_out": len(labels), "label_smoothing": laplace_smoothing(len(labels))},
        "epochs": len(history),
        "workers": config.workers,
        "train_seconds": round(seconds, 3),
        "samples_per_s": sum(h["train_samples"] for h in history) / trained if trained else 0.0,
        "history": history,
    }
    return save_bundle(
        config.out, model, arch=loop.arch, arch_args=dict(loop.arch_args),
        input_size=loop.input_size, mean=data.mean, std=data.std, classes=list(data.classes),
        positive_class=POSITIVE_CLASS, output_stride=model.output_stride,
        receptive_field=model.receptive_field, object_size_px=_object_size(config, data),
        temperature=temperature, metrics=metrics, data_fingerprint=data.fingerprint,
        gsd_m=training_gsd(config, data),
    )  # fmt: skip


def training_gsd(config: TrainConfig, data) -> float | None:
    """Metres per pixel the bundle is trained at: ``--gsd``, else the chips' ``dataset.json``."""
    gsd_m = config.gsd_m or data.gsd_m
    if gsd_m is None:
        log.warning(
            "%s: no --gsd and no gsd_m in dataset.json; the bundle will not know its ground "
            "sample distance and detection will score scenes at their native pixels",
            data.root,
        )
    return gsd_m


def _object_size(config: TrainConfig, data) -> float:
    """Detection box side: ``--object-size``, else the chips' face size, else half a chip."""
    if config.object_size is not None:
        return config.object_size
    if data.face_size_px is not None:
        return data.face_size_px
    return 0.5 * data.chip_size
