"""Ray Train runs shared by the classifier and the detector: run paths, config checks, ``fit``,
progress and checkpoints (``jobs.train`` and ``jobs.train_detector`` both build on it)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class TrainError(ValueError):
    """A training run cannot start or finish as asked (e.g. ``--resume`` with nothing to resume)."""


class RunPaths:
    """Where a training config's run lives: needs ``out`` (Path) and ``storage`` (str | None)."""

    out: Path
    storage: str | None

    @property
    def run_name(self) -> str:
        """Ray Train run name: the bundle's file name, so ``--resume`` finds the same run."""
        return self.out.name

    @property
    def storage_path(self) -> str:
        """Checkpoints: ``storage`` (a dir or URI), else ``<out>.runs`` beside the bundle."""
        if self.storage:
            return self.storage if "://" in self.storage else str(Path(self.storage).resolve())
        return str(self.out.resolve().parent / f"{self.out.name}.runs")


def check_run(config) -> None:
    """Validate the fields every training config has: epochs, workers, batch_size, lr."""
    check_field(config.epochs >= 1, "epochs", config.epochs, "an integer ≥ 1")
    check_field(config.workers >= 1, "workers", config.workers, "an integer ≥ 1")
    check_field(
        config.batch_size >= config.workers and config.batch_size % config.workers == 0,
        "batch_size", config.batch_size, f"a multiple of workers ({config.workers})",
    )  # fmt: skip
    check_field(config.lr > 0, "lr", config.lr, "> 0")


def check_field(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name}: got {value!r}, expected {expected}")


def fit_run(config, loop, data, per_worker=None):
    """Prepare ``config``'s run directory, join or start Ray and :func:`fit`; (result, seconds).

    ``config``: any training config with the run fields (out/storage/resume/address/workers…).
    """
    from jobs.ray_session import ray_session

    prepare_run_dir(config.storage_path, config.run_name, config.resume)
    num_cpus = max(os.cpu_count() or 1, math.ceil(config.workers * config.cpus_per_worker))
    t0 = time.perf_counter()
    with ray_session(config.address, num_cpus=num_cpus):
        result = fit(
            loop, data, workers=config.workers, storage_path=config.storage_path,
            name=config.run_name, cpus_per_worker=config.cpus_per_worker,
            use_gpu=config.use_gpu, progress=config.progress, per_worker=per_worker,
        )  # fmt: skip
    return result, time.perf_counter() - t0


def prepare_run_dir(storage_path: str, name: str, resume: bool) -> None:
    """Check there is a run to resume, or clear an old one so a fresh run starts from scratch.

    Ray Train V2 restores from whatever a run of the same (storage_path, name) left behind.
    """
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(
        storage_path if "://" in storage_path else Path(storage_path).as_uri()
    )
    path = f"{root.rstrip('/')}/{name}"
    exists = fs.get_file_info(path).type != pafs.FileType.NotFound
    if resume and not exists:
        raise TrainError(f"--resume: no earlier run {name!r} under {storage_path!r}")
    if exists and not resume:
        log.info("starting afresh: removing the earlier run at %s/%s", storage_path, name)
        fs.delete_dir(path)


def fit(loop, data, *, workers: int, storage_path: str, name: str, cpus_per_worker: float = 1.0,
        use_gpu: bool | None = None, progress: bool = False, per_worker=None):  # fmt: skip
    """Run ``per_worker`` (default :func:`models.train_loop.train_per_worker`, the classifier's)
    on ``workers`` Ray Train workers; it gets ``data`` through the object store — the chips'
    (train images, labels, val images, labels) for the classifier, ``data`` itself otherwise.

    Needs a connected Ray. Returns the ``ray.train.Result`` (its checkpoint is the last epoch's).
    """
    import ray
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from models.train_loop import train_per_worker

    if use_gpu is None:
        use_gpu = ray.cluster_resources().get("GPU", 0) >= 1
    resources = {"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    if per_worker is None:
        per_worker = train_per_worker
        data = (data.train.images, data.train.labels, data.val.images, data.val.labels)
    arrays = ray.put(data)
    with progress_events(loop.epochs, progress) as queue:
        trainer = TorchTrainer(
            per_worker,
            train_loop_config={"loop": loop, "data": arrays, "progress": queue},
            scaling_config=ScalingConfig(
                num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources
            ),
            run_config=RunConfig(
                name=name,
                storage_path=storage_path,
                checkpoint_config=CheckpointConfig(num_to_keep=2),
            ),
        )
        return trainer.fit()


@contextlib.contextmanager
def progress_events(epochs: int, enabled: bool) -> Iterator[Any]:
    """A Ray queue that rank 0 fills with progress events, shown here as a tqdm bar on stderr."""
    if not enabled:
        yield None
        return
    import ray
    from ray.util.queue import Queue

    queue = Queue(actor_options={"num_cpus": 0})
    display = _ProgressDisplay(queue, epochs)
    thread = threading.Thread(target=display.pump, name="train-progress", daemon=True)
    thread.start()
    try:
        yield queue
    finally:
        display.stop.set()
        thread.join()
        display.drain()
        display.close()
        ray.kill(queue.actor)


class _ProgressDisplay:
    """Turns ("step", epoch, i, n) and ("epoch", metrics) events into a bar and epoch lines."""

    def __init__(self, queue, epochs: int):
        from tqdm import tqdm

        self.queue, self.epochs, self.stop = queue, epochs, threading.Event()
        fmt = "{l_bar}{bar}| {n:.1f}/{total} epochs [{elapsed}<{remaining}]{postfix}"
        self.bar = tqdm(total=epochs, desc="train", file=sys.stderr, dynamic_ncols=True,
                        bar_format=fmt)  # fmt: skip

    def pump(self) -> None:
        from ray.util.queue import Empty

        while not self.stop.is_set():
            with contextlib.suppress(Empty):
                self.show(self.queue.get(timeout=0.5))

    def drain(self) -> None:
        from ray.util.queue import Empty

        with contextlib.suppress(Empty):
            while True:
                self.show(self.queue.get_nowait())

    def show(self, event: tuple) -> None:
        if event[0] == "step":
            _, epoch, i, n = event
            self.bar.n = epoch + i / n
            self.bar.refresh()
        elif event[0] == "epoch":
            m = event[1]
            self.bar.n = m["epoch"]
            if "val_accuracy" in m:
                self.bar.set_postfix(val_acc=f"{m['val_accuracy']:.3f}", refresh=False)
            self.bar.write(format_epoch(m, self.epochs), file=sys.stderr)
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def format_epoch(m: dict[str, float], epochs: int) -> str:
    if "val_accuracy" not in m:  # the box detector: its own metrics, in the order it gives them
        rest = "  ".join(f"{k} {v:.4f}" for k, v in m.items() if k.startswith(("train_l", "val_")))
        return f"epoch {m['epoch']:>3}/{epochs}  {rest}"
    return (
        f"epoch {m['epoch']:>3}/{epochs}  train loss {m['train_loss']:.4f} acc "
        f"{m['train_accuracy']:.3f}  val loss {m['val_loss']:.4f} acc {m['val_accuracy']:.3f}"
    )


def read_checkpoint(checkpoint, run_name: str) -> tuple[dict, list[dict]]:
    """The weights and per-epoch history of a run's last Ray Train ``checkpoint``;
    ``TrainError`` naming ``run_name`` when the run reported none."""
    from models.train_loop import STATE, load_weights

    if checkpoint is None:
        raise TrainError(f"run {run_name!r} reported no checkpoint")
    with checkpoint.as_directory() as d:
        return load_weights(d), json.loads((Path(d) / STATE).read_text())["history"]
