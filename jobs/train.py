"""``whalescan train``: chips → data-parallel training on Ray Train → a model bundle.

``python -m jobs.train`` takes the same arguments, so
``ray job submit --working-dir . -- python -m jobs.train DATA --out B`` runs it on a cluster.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from jobs.chips import labels_options
from jobs.options import address_option, config_defaults, progress_option, verbose_option
from jobs.ray_train import TrainError
from jobs.run_config import run_config
from jobs.train_classifier import TrainConfig, run_train
from jobs.train_detector import DetectorTrainConfig
from jobs.train_from_labels import DETECTOR_OPTIONS

# --- CLI: builds the config, calls run_train ---

default_option = config_defaults(TrainConfig)


@click.command("train")
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Bundle directory to write."
)
@default_option(
    "--epochs",
    help="Total epochs (with --resume: including those already done); the box detector "
    f"(a labels file without --arch) defaults to {DetectorTrainConfig.epochs}.",
)
@default_option("--workers", help="Ray Train workers (one GPU each where the cluster has GPUs).")
@click.option(
    "--arch",
    default=None,
    help="Classifier: whalenet (default for chip folders), alexnet or resnet18. With a labels "
    "file, --arch trains a classifier on chips cut from it; without, the box detector.",
)
@default_option("--batch-size", help="Global batch, split evenly over the workers.")
@default_option("--lr", help="Peak learning rate (AdamW, warm-up + cosine).")
@click.option(
    "--augment",
    default=",".join(TrainConfig.augment),
    show_default=True,
    help="Comma list of flip,rot90,jitter,invert,look; 'none' for no augmentation.",
)
@click.option(
    "--storage", default=None, help="Checkpoint storage (dir or s3://…); default <out>.runs."
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run of the same --out/--storage from its last checkpoint.",
)
@default_option("--seed", help="Seeds the initial weights, shuffling and augmentation.")
@click.option(
    "--object-size",
    type=float,
    default=None,
    help="Face size in px for detection; default dataset.json's face_size_px, else chip/2.",
)
@click.option(
    "--gsd",
    "gsd_m",
    type=float,
    default=None,
    help="Metres per pixel of the chips; default dataset.json's gsd_m, else unknown. With a "
    "labels file and --arch: the chips are cut at this GSD.",
)
@click.option(
    "--face-px",
    type=float,
    default=None,
    help="Box detector: where the labelled faces' median side is over 1.5x this, train and detect "
    f"at the coarser GSD that makes it this many px [default {DetectorTrainConfig.face_px:g}; "
    "0: the scenes' own GSD].",
)
@click.option(
    "--second-look/--no-second-look",
    default=None,
    help="Box detector: also train the chip classifier that looks again at each candidate "
    "(models.second_look) [default: on].",
)
@default_option("--cpus-per-worker")
@progress_option
@click.option(
    "--chip-size",
    type=int,
    default=64,
    show_default=True,
    help="With a labels file and --arch: the chip side cut from the scenes.",
)
@labels_options
@address_option
@verbose_option
def train(data: Path, out: Path, **opts: Any) -> None:
    """Train on DATA into bundle --out: a chip folder (train/ and val/) trains the classifier;
    a labels file (DeepForest CSV or GIS vector file) trains the classifier on chips cut from
    it when --arch is given, else the box detector."""
    from models.bundle import BundleError
    from models.data import ChipDataError

    opts["augment"] = opts["augment"].split(",")
    reading = {k: opts.pop(k) for k in ("scene_column", "point_box_m", "label")}
    face_px, second_look = opts.pop("face_px"), opts.pop("second_look")
    if face_px is not None and opts["arch"] is not None:
        raise click.UsageError("--face-px: a box-detector option; leave out --arch to use it")
    if second_look is not None and opts["arch"] is not None:
        raise click.UsageError("--second-look: a box-detector option; leave out --arch to use it")
    chip_opts = {"size": opts.pop("chip_size"), **reading, "seed": opts["seed"],
                 "gsd_m": opts["gsd_m"]}  # fmt: skip
    if data.is_file():
        from jobs.train_from_labels import cut_training_chips

        if opts["arch"] is None:
            explicit = _given(opts) | {k: v for k, v in reading.items() if v is not None}
            if face_px is not None:
                explicit["face_px"] = face_px or None  # 0: the scenes' own GSD
            if second_look is not None:
                explicit["second_look"] = second_look
            bundle = train_detector_cli(data.resolve(), out.resolve(), explicit)
            click.echo(f"{bundle.path}  detector  {json.dumps(_scalars(bundle.metrics))}")
            if bundle.second_look:
                click.echo(
                    f"{bundle.path}  second look  {json.dumps(_scalars(bundle.second_look))}"
                )
            return
        data = cut_training_chips(data.resolve(), out.resolve(), **chip_opts)
    opts["arch"] = opts["arch"] or TrainConfig.arch
    bundle = run_config(
        lambda: TrainConfig(data=data.resolve(), out=out.resolve(), **opts),
        run_train,
        errors=(ChipDataError, TrainError, BundleError),
    )
    m = bundle.metrics
    click.echo(
        f"{bundle.path}  val_accuracy={m['val_accuracy']:.4f}  val_loss={m['val_loss']:.4f}  "
        f"epochs={m['epochs']}  {m['train_seconds']:.0f}s  {m['samples_per_s']:.0f} samples/s"
    )


def train_detector_cli(labels: Path, out: Path, explicit: dict[str, Any]):
    """Train the approach-3 detector on ``labels``; ``explicit``: options the user gave."""
    other = sorted(set(explicit) - set(DETECTOR_OPTIONS))
    if other:
        flags = ", ".join("--" + k.replace("_", "-") for k in other)
        raise click.UsageError(
            f"{flags}: classifier option(s); add --arch whalenet (or alexnet, resnet18) to train "
            "a classifier from LABELS, or leave them out to train the box detector"
        )
    try:
        from jobs.train_detector import train_detector
    except ModuleNotFoundError as e:
        if e.name != "jobs.train_detector":
            raise
        raise click.ClickException(
            f"{str(labels)!r}: training from labels without --arch needs the approach-3 box "
            "detector (jobs.train_detector), which this build lacks; pass a classifier --arch "
            "(whalenet, alexnet, resnet18) to train a classifier from LABELS"
        ) from e
    return train_detector(labels, out, **explicit)


def _given(opts: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave on the command line (not left at click's default)."""
    ctx = click.get_current_context()
    source = ctx.get_parameter_source
    return {k: v for k, v in opts.items() if source(k) is not click.core.ParameterSource.DEFAULT}


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | str)}


if __name__ == "__main__":
    train()
