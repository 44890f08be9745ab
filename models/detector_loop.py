"""The box detector's training engine: the Ray Train worker that learns from labelled scenes.

The classifier's worker (:mod:`models.train_loop`) with the detector's model, crops and epoch:
same optimiser, schedule, checkpoints (safetensors + JSON), resume and progress events. Each
epoch trains on :class:`models.scene_crops.SceneCrops` and then measures AP on the held-out
scenes with the same region decoding as ``whalescan detect``. At ``mine_epoch`` (and on a resume
past it) every worker runs the model over its share of the training scenes and the false alarms
(peaks ≥ ``mine_threshold`` away from every label) become the centres of hard-negative crops.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from models.centre_loss import detector_loss
from models.detector import BoxOutputs, build_detector
from models.scene_augment import DETECTOR_OPS
from models.scene_crops import SceneCrops
from models.scene_predict import predict_scene
from models.threads import torch_threads
from models.train_loop import LoopConfig, _all_reduce, _Worker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorLoopConfig(LoopConfig):
    """:class:`LoopConfig` (``input_size`` = the crop side) plus the detector's crop sampling,
    hard-negative mining and validation settings. ``match_radius``: centre-match radius in px."""

    arch: str = "centrenet"
    crops_per_epoch: int = 512
    positive_fraction: float = 0.5
    hard_fraction: float = 0.25
    mine_epoch: int | None = None
    mine_threshold: float = 0.2
    val_threshold: float = 0.3
    max_box_px: float = 96.0
    match_radius: float = 12.0
    augment_ops: ClassVar[tuple[str, ...]] = DETECTOR_OPS

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.crops_per_epoch < 1:
            raise ValueError(f"crops_per_epoch: got {self.crops_per_epoch}, expected ≥ 1")
        if not 0 <= self.positive_fraction + self.hard_fraction <= 1:
            raise ValueError("positive_fraction + hard_fraction must lie in [0, 1]")


def build_detector_model(loop: DetectorLoopConfig) -> nn.Module:
    """The untrained detector, seeded so every worker (and every run) starts identically."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(loop.seed)
        return build_detector(loop.arch, **loop.arch_args)


def train_detector_epoch(model, loader, optimizer, scheduler, normalize, outputs: BoxOutputs,
                         receptive_field: int, max_steps=None, on_step=None) -> dict[str, float]:  # fmt: skip
    """One pass over ``loader``'s (image, heat, boxes, weight) batches; returns local sums."""
    model.train()
    sums = {"loss_sum": 0.0, "focal_sum": 0.0, "box_sum": 0.0, "count": 0, "steps": 0}
    t0, cpu0 = time.perf_counter(), time.process_time()
    for x, heat, boxes, weight in loader:
        if max_steps is not None and sums["steps"] >= max_steps:
            break
        raw = model(normalize(x.float()))
        loss, focal, box = detector_loss(raw, heat, boxes, weight, outputs, receptive_field)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        n = len(x)
        sums["steps"] += 1
        sums["count"] += n
        sums["loss_sum"] += float(loss.detach()) * n
        sums["focal_sum"] += float(focal) * n
        sums["box_sum"] += float(box) * n
        if on_step:
            on_step(sums["steps"])
    sums["seconds"], sums["cpu_seconds"] = time.perf_counter() - t0, time.process_time() - cpu0
    return sums


def scene_metrics(boxes, scores, truth, threshold: float, radius: float) -> dict[str, float]:
    """Centre AP/F1 (F1 at ``threshold``) and IoU-AP50 of one or more scenes' detections."""
    from torchvision.ops import box_iou

    from reports.truth import greedy_match, iou_pairs, match_centres, match_report

    keep = scores >= threshold
    iou = box_iou(torch.from_numpy(boxes).double(), torch.from_numpy(truth).double()).numpy()
    return {
        "val_ap": match_centres(boxes, scores, truth, radius).average_precision,
        "val_f1": match_centres(boxes[keep], scores[keep], truth, radius).f1,
        "val_ap50": match_report(greedy_match(scores, *iou_pairs(iou, 0.5))).average_precision,
    }


def pool_scenes(found, truths, widths) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-scene ((N, 4) boxes, (N,) scores), (M, 4) truth px and width px → (boxes, scores,
    truth) of all scenes placed side by side in one coordinate space, so one ranking covers
    them all."""
    offsets = np.cumsum([0] + [w + 1000 for w in widths])
    boxes = np.concatenate(
        [b + [o, 0, o, 0] for (b, _), o in zip(found, offsets, strict=False)]
    ).reshape(-1, 4)
    scores = np.concatenate([s for _, s in found])
    truth = np.concatenate(
        [np.asarray(t).reshape(-1, 4) + [o, 0, o, 0] for t, o in zip(truths, offsets, strict=False)]
    ).reshape(-1, 4)
    return boxes, scores, truth


def _gather_dict(part: dict, world: int) -> dict:
    """Merge every rank's ``part`` (all ranks get the union); the identity on one worker."""
    import torch.distributed as dist

    if world == 1 or not dist.is_initialized():
        return dict(part)
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, part)
    return {k: v for p in gathered for k, v in p.items()}


def train_detector_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point; ``config`` as :func:`models.train_loop.train_per_worker`'s, with
    ``data`` = (train scenes, train boxes, val scenes, val boxes)."""
    import ray

    loop: DetectorLoopConfig = config["loop"]
    with torch_threads(loop.threads):
        _DetectorWorker(loop, ray.get(config["data"]), config.get("progress")).run()


class _DetectorWorker(_Worker):
    loop: DetectorLoopConfig

    def build_model(self) -> nn.Module:
        model = build_detector_model(self.loop)
        self.rf, self.stride = model.receptive_field, model.output_stride
        self.outputs = BoxOutputs(model.output_stride, model.size_ref)
        return model

    def _make_loaders(self, train_scenes, train_boxes, train_fills,
                      val_scenes, val_boxes, val_fills) -> None:  # fmt: skip
        import ray.train.torch as rt

        loop = self.loop
        self.train_set = SceneCrops(
            train_scenes, train_boxes, crop=loop.input_size, receptive_field=self.rf,
            stride=self.stride, crops_per_epoch=loop.crops_per_epoch,
            positive_fraction=loop.positive_fraction, hard_fraction=loop.hard_fraction,
            augment=loop.augment, seed=loop.seed, fills=train_fills,
        )  # fmt: skip
        self.sampler = DistributedSampler(
            self.train_set, self.world, self.rank, shuffle=loop.shuffle, seed=loop.seed
        )
        loader = DataLoader(
            self.train_set, batch_size=loop.batch_size, sampler=self.sampler,
            drop_last=len(self.sampler) >= loop.batch_size,
        )  # fmt: skip
        self.train_loader = rt.prepare_data_loader(loader)
        self.val_scenes, self.val_boxes, self.val_fills = val_scenes, val_boxes, val_fills

    def _one_epoch(self) -> dict[str, float]:
        loop = self.loop
        if (
            loop.mine_epoch is not None
            and self.epoch >= loop.mine_epoch
            and not len(self.train_set.hard)
        ):
            self.train_set.hard = self._mine()
        self.sampler.set_epoch(self.epoch)
        self.train_set.epoch = self.epoch
        budget = None if loop.max_steps is None else loop.max_steps - self.step
        train = train_detector_epoch(
            self.model, self.train_loader, self.optimizer, self.scheduler, self.normalize,
            self.outputs, self.rf, budget, self._on_step,
        )  # fmt: skip
        train = _all_reduce(train)
        self.step += round(train["steps"]) // self.world
        self.epoch += 1
        n = max(train["count"], 1)
        metrics = {
            "epoch": self.epoch,
            "train_loss": train["loss_sum"] / n,
            "train_focal": train["focal_sum"] / n,
            "train_giou": train["box_sum"] / n,
            **self._validate(),
            "hard_negatives": len(self.train_set.hard),
            "train_samples": round(train["count"]),
            "train_seconds": train["seconds"] / self.world,
            "train_cpu_seconds": train["cpu_seconds"],
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        return metrics

    def _predict(self, image: np.ndarray, fill: np.ndarray, threshold: float):
        return predict_scene(
            self._plain(), self.normalize, self.outputs, image, receptive_field=self.rf,
            threshold=threshold, max_box_px=self.loop.max_box_px, fill=fill,
        )  # fmt: skip

    def _plain(self) -> nn.Module:
        return getattr(self.model, "module", self.model)

    def _validate(self) -> dict[str, float]:
        """Each rank predicts its share of the held-out parts; rank 0 scores them all."""
        if not len(self.val_scenes):
            return {}
        mine = range(self.rank, len(self.val_scenes), self.world)
        found = {k: self._predict(self.val_scenes[k], self.val_fills[k], 0.05) for k in mine}
        found = _gather_dict(found, self.world)
        if self.rank != 0:
            return {}
        pooled = pool_scenes([found[k] for k in range(len(self.val_scenes))], self.val_boxes,
                             [img.shape[2] for img in self.val_scenes])  # fmt: skip
        return scene_metrics(*pooled, self.loop.val_threshold, self.loop.match_radius)

    def _mine(self) -> np.ndarray:
        """(K, 3) [scene, x, y] false-alarm centres on the training scenes, gathered over workers."""
        rows = []
        scenes, labels = self.train_set.scenes, self.train_set.boxes
        for s in range(self.rank, len(scenes), self.world):
            boxes, _ = self._predict(scenes[s], self.train_set.fills[s], self.loop.mine_threshold)
            c = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
            t = labels[s]
            tc = np.stack([(t[:, 0] + t[:, 2]) / 2, (t[:, 1] + t[:, 3]) / 2], 1)
            d = np.hypot(*(c[:, None] - tc[None]).transpose(2, 0, 1)) if len(tc) else None
            far = np.ones(len(c), bool) if d is None else d.min(1) > self.loop.match_radius
            rows += [(s, x, y) for x, y in c[far]]
        rows = sorted(r for part in _gather_dict({self.rank: rows}, self.world).values()
                      for r in part)  # fmt: skip
        log.info("rank %d: %d hard negatives mined", self.rank, len(rows))
        return np.array(rows, np.float64).reshape(-1, 3)
