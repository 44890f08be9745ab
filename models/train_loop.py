"""The training engine: ``train_one_epoch``, ``evaluate`` and the Ray Train per-worker function.

Shaped like torchvision's ``references/classification``: a small engine readable top to bottom.
:func:`train_per_worker` is what ``ray.train.torch.TorchTrainer`` runs on each worker; it reports
metrics and a checkpoint (safetensors weights + optimizer state, JSON for the rest) every epoch
and resumes from ``ray.train.get_checkpoint()``.

Data parallelism is exact by construction (see ``tests/test_train.py``): every worker averages a
per-sample loss over its own batch, DDP averages gradients over workers, and chips are dealt to
workers by a seeded ``DistributedSampler`` — so K workers × batch b take the same step as one
worker × batch K·b (for nets without batch statistics).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from models.augment import OPS, Augment, parse_ops
from models.nets import build_classifier
from models.scorer import Normalize
from models.threads import torch_threads

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "train_state.json"


@dataclass(frozen=True)
class LoopConfig:
    """Everything one worker needs to train; ``batch_size`` is per worker.

    ``mean``/``std``: per-channel normalisation on the 0..1 scale (the bundle's).
    ``class_weights``: per-class loss weights (None = unweighted). ``max_steps`` stops after that
    many optimiser steps in total (for tests); ``shuffle=False`` and ``dropout=False`` make a step
    reproducible across worker counts.
    """

    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    arch: str = "whalenet"
    arch_args: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 2
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.05
    optimizer: str = "adamw"
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    augment: tuple[str, ...] = ("flip", "rot90", "jitter")
    class_weights: tuple[float, ...] | None = None
    seed: int = 0
    shuffle: bool = True
    dropout: bool = True
    max_steps: int | None = None
    threads: int = 1
    fingerprint: str = ""
    augment_ops: ClassVar[tuple[str, ...]] = OPS  # the names ``augment`` may use

    def __post_init__(self) -> None:
        object.__setattr__(self, "augment", parse_ops(self.augment, self.augment_ops))
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer: {self.optimizer!r}, expected 'adamw' or 'sgd'")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule: {self.schedule!r}, expected 'cosine' or 'constant'")
        if self.batch_size < 1 or self.epochs < 1 or self.threads < 1:
            raise ValueError("batch_size, epochs and threads must be ≥ 1")


class ChipTensors(Dataset):
    """(N, S, S, 3) uint8 chips + (N,) labels → ((3, S, S) uint8 tensor, label), augmented.

    The augmentation RNG is seeded by (seed, epoch, index), so a chip's view does not depend on
    which worker draws it — runs are reproducible for any worker count and across resumes.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, augment: Augment, seed: int = 0):
        self.images, self.labels, self.augment, self.seed = images, labels, augment, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        chip = self.images[i]
        if self.augment.ops:
            chip = self.augment(chip, np.random.default_rng((self.seed, self.epoch, i)))
        return torch.from_numpy(np.ascontiguousarray(chip.transpose(2, 0, 1))), int(self.labels[i])


class WarmupCosine:
    """LR factor at optimiser step ``step``: linear warm-up, then cosine decay to ``floor``."""

    def __init__(self, total_steps: int, warmup_steps: int, floor: float = 0.01):
        self.total, self.warmup, self.floor = max(total_steps, 1), warmup_steps, floor

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * t))


def weighted_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None):
    """Σᵢ w[yᵢ]·CE(logitsᵢ, yᵢ) / N for (N, C) logits: linear in the samples, so it splits over
    workers exactly (unlike ``cross_entropy(weight=…)``, which divides by Σ w of the batch)."""
    per_sample = F.cross_entropy(logits, labels, reduction="none")
    if weights is not None:
        per_sample = per_sample * weights[labels]
    return per_sample.sum() / len(labels)


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    scheduler,
    normalize: nn.Module,
    weights: torch.Tensor | None = None,
    max_steps: int | None = None,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """One pass over ``loader`` of ((N, 3, S, S) uint8, (N,)) batches; returns local sums
    (and wall and CPU seconds of this process)."""
    model.train()
    loss_sum = correct = count = steps = 0
    t0, cpu0 = time.perf_counter(), time.process_time()
    for x, y in loader:
        if max_steps is not None and steps >= max_steps:
            break
        logits = model(normalize(x.float()))
        loss = weighted_loss(logits, y, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        steps += 1
        loss_sum += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        count += len(y)
        if on_step:
            on_step(steps)
    return {
        "loss_sum": loss_sum, "correct": correct, "count": count, "steps": steps,
        "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - cpu0,
    }  # fmt: skip


@torch.inference_mode()
def evaluate(model: nn.Module, loader, normalize: nn.Module) -> dict[str, float]:
    """Unweighted cross-entropy and accuracy sums over ``loader``; returns local sums."""
    model.eval()
    loss_sum = correct = count = 0
    for x, y in loader:
        logits = model(normalize(x.float()))
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        count += len(y)
    return {"loss_sum": loss_sum, "correct": correct, "count": count}


@torch.inference_mode()
def predict_logits(model: nn.Module, images: np.ndarray, normalize: nn.Module, batch: int = 256):
    """(N, S, S, 3) uint8 → (N, C) float32 logits on CPU, eval mode."""
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch].transpose(0, 3, 1, 2)))
        out.append(model(normalize(x.float())).float())
    return torch.cat(out) if out else torch.empty(0, 2)


def build_model(loop: LoopConfig) -> nn.Module:
    """The untrained classifier, seeded so every worker (and every run) starts identically."""
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(loop.seed)
        model = build_classifier(loop.arch, loop.input_size, loop.num_classes, **loop.arch_args)
    if not loop.dropout:
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
    return model


def make_optimizer(params, loop: LoopConfig) -> torch.optim.Optimizer:
    if loop.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=loop.lr, momentum=loop.momentum, weight_decay=loop.weight_decay
        )
    return torch.optim.AdamW(params, lr=loop.lr, weight_decay=loop.weight_decay)


def make_scheduler(optimizer, loop: LoopConfig, steps_per_epoch: int, done_steps: int = 0):
    """Per-step LambdaLR over ``loop.epochs``; ``done_steps`` fast-forwards after a resume, so a
    resume with more epochs stretches the schedule instead of restarting it."""
    for g in optimizer.param_groups:
        g["initial_lr"] = loop.lr
    if loop.schedule == "constant":
        factor: Callable[[int], float] = _constant
    else:
        warmup = max(1, round(loop.warmup_epochs * steps_per_epoch))
        factor = WarmupCosine(loop.epochs * steps_per_epoch, warmup)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=done_steps - 1)


def _constant(step: int) -> float:
    return 1.0


# --- checkpoint: weights and optimizer tensors in safetensors, everything else in JSON ---


def save_train_state(directory: Path, model: nn.Module, optimizer, state: dict[str, Any]) -> None:
    """Write ``model.safetensors``, ``optimizer.safetensors`` and ``train_state.json``."""
    from safetensors.torch import save_file

    save_file(_cpu_state(unwrap(model).state_dict()), str(directory / WEIGHTS))
    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, entry in opt["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    save_file(tensors, str(directory / OPTIMIZER))
    doc = {**state, "param_groups": opt["param_groups"], "optimizer_scalars": scalars}
    (directory / STATE).write_text(json.dumps(doc, indent=1))


def load_train_state(directory: Path, model: nn.Module, optimizer) -> dict[str, Any]:
    """Restore weights and optimizer state written by :func:`save_train_state`; return the JSON."""
    from safetensors.torch import load_file

    unwrap(model).load_state_dict(load_file(str(directory / WEIGHTS)))
    doc = json.loads((directory / STATE).read_text())
    state: dict[int, dict[str, Any]] = {}
    items = [*load_file(str(directory / OPTIMIZER)).items(), *doc["optimizer_scalars"].items()]
    for name, value in items:
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": doc["param_groups"]})
    return doc


def load_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """The model state dict stored in a training checkpoint directory."""
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / WEIGHTS))


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper."""
    return getattr(model, "module", model)


def _cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


# --- the Ray Train worker ---


def train_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point.

    ``config``: ``loop`` (:class:`LoopConfig`); ``data``, an ObjectRef of (train images, train
    labels, val images, val labels); ``progress``, a ``ray.util.queue.Queue`` for rank 0's
    progress events, or None.
    """
    import ray

    loop: LoopConfig = config["loop"]
    with torch_threads(loop.threads):
        _Worker(loop, ray.get(config["data"]), config.get("progress")).run()


class _Worker:
    """One Ray Train worker's state: model, optimizer, loaders; :meth:`run` does the epochs."""

    def __init__(self, loop: LoopConfig, data, progress):
        import ray.train
        import ray.train.torch as rt

        ctx = ray.train.get_context()
        self.loop, self.progress, self._last_notice = loop, progress, 0.0
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        device = rt.get_device()
        self.normalize = Normalize(loop.mean, loop.std).to(device)
        self.weights = (
            torch.tensor(loop.class_weights, dtype=torch.float32, device=device)
            if loop.class_weights
            else None
        )
        self.model = rt.prepare_model(self.build_model())
        self.optimizer = make_optimizer(self.model.parameters(), loop)
        self.doc = self._restore(ray.train.get_checkpoint())
        self._make_loaders(*data)
        self.steps_per_epoch = max(1, len(self.train_loader))
        self.epoch, self.step = self.doc.get("epoch", 0), self.doc.get("step", 0)
        self.scheduler = make_scheduler(self.optimizer, loop, self.steps_per_epoch, self.step)

    def build_model(self) -> nn.Module:
        return build_model(self.loop)

    def _make_loaders(self, train_images, train_labels, val_images, val_labels) -> None:
        import ray.train.torch as rt

        loop = self.loop
        self.train_set = ChipTensors(train_images, train_labels, Augment(loop.augment), loop.seed)
        self.sampler = DistributedSampler(
            self.train_set, self.world, self.rank, shuffle=loop.shuffle, seed=loop.seed
        )
        loader = DataLoader(
            self.train_set,
            batch_size=loop.batch_size,
            sampler=self.sampler,
            drop_last=len(self.sampler) >= loop.batch_size,
        )
        self.train_loader = rt.prepare_data_loader(loader)  # keeps our DistributedSampler
        val_set = ChipTensors(val_images, val_labels, Augment(()))
        shard = Subset(val_set, range(self.rank, len(val_set), self.world))  # exact, no padding
        self.val_loader = rt.prepare_data_loader(
            DataLoader(shard, batch_size=256), add_dist_sampler=False
        )

    def _restore(self, checkpoint) -> dict[str, Any]:
        """Load the last checkpoint (every rank reads it, so no broadcast is needed)."""
        if checkpoint is None:
            return {}
        with checkpoint.as_directory() as d:
            doc = json.loads((Path(d) / STATE).read_text())
            if self.loop.fingerprint and doc.get("fingerprint") != self.loop.fingerprint:
                raise ValueError(
                    "resume: the chips differ from the run's (data fingerprint "
                    f"{doc.get('fingerprint', '')[:12]}… vs {self.loop.fingerprint[:12]}…)"
                )
            load_train_state(Path(d), self.model, self.optimizer)
        log.info("rank %d: resuming after epoch %d", self.rank, doc["epoch"])
        return doc

    def run(self) -> None:
        history = list(self.doc.get("history", []))
        while self.epoch < self.loop.epochs and not self._out_of_steps():
            history.append(self._one_epoch())
            self._report(history)

    def _out_of_steps(self) -> bool:
        return self.loop.max_steps is not None and self.step >= self.loop.max_steps

    def _one_epoch(self) -> dict[str, float]:
        self.sampler.set_epoch(self.epoch)
        self.train_set.epoch = self.epoch
        budget = None if self.loop.max_steps is None else self.loop.max_steps - self.step
        train = train_one_epoch(
            self.model, self.train_loader, self.optimizer, self.scheduler, self.normalize,
            self.weights, budget, self._on_step,
        )  # fmt: skip
        val = evaluate(self.model, self.val_loader, self.normalize)
        train, val = _all_reduce(train), _all_reduce(val)
        self.step += round(train["steps"]) // self.world
        self.epoch += 1
        return {
            "epoch": self.epoch,
            "train_loss": train["loss_sum"] / max(train["count"], 1),
            "train_accuracy": train["correct"] / max(train["count"], 1),
            "val_loss": val["loss_sum"] / max(val["count"], 1),
            "val_accuracy": val["correct"] / max(val["count"], 1),
            "train_samples": round(train["count"]),
            # Workers run in parallel: the epoch took the mean worker time, not the sum.
            "train_seconds": train["seconds"] / self.world,
            "train_cpu_seconds": train["cpu_seconds"],  # summed over workers
            "lr": self.optimizer.param_groups[0]["lr"],
        }

    def _on_step(self, step_in_epoch: int) -> None:
        self._notify(("step", self.epoch, step_in_epoch, self.steps_per_epoch))

    def _notify(self, item, force: bool = False) -> None:
        """Rank 0 sends a progress event to the driver, at most ~4 per second unless ``force``."""
        now = time.monotonic()
        if (
            self.rank == 0
            and self.progress is not None
            and (force or now - self._last_notice > 0.25)
        ):
            self._last_notice = now
            self.progress.put_nowait(item)

    def _report(self, history: list[dict[str, float]]) -> None:
        import ray.train

        metrics = dict(history[-1])
        self._notify(("epoch", metrics), force=True)
        with tempfile.TemporaryDirectory(prefix="whalescan-ckpt-") as d:
            checkpoint = None
            if self.rank == 0:
                state = {
                    "epoch": self.epoch, "step": self.step, "history": history,
                    "fingerprint": self.loop.fingerprint, "loop": _jsonable(self.loop),
                }  # fmt: skip
                save_train_state(Path(d), self.model, self.optimizer, state)
                checkpoint = ray.train.Checkpoint.from_directory(d)
            ray.train.report(metrics, checkpoint=checkpoint)


def _all_reduce(sums: dict[str, float]) -> dict[str, float]:
    """Sum each value over the workers (gloo/nccl all-reduce); identity for one worker."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return sums
    keys = sorted(sums)
    t = torch.tensor([float(sums[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return dict(zip(keys, t.cpu().tolist(), strict=True))


def _jsonable(loop: LoopConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(loop)))
