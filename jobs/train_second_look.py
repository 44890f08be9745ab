"""Approach 3's second look, trained beside the detector on the same labelled scenes.

After the detector: chips are cut from the labels as for approach 1 (faces; near, salient, water
and edge negatives: :mod:`labels.chips`), the detector's own false alarms on the labelled scenes
join the negatives, and a whalenet classifier trains on them as approach 1's does. The fused score
sqrt(detector × classifier) gets its threshold as the detector's own is tuned, on the same
scenes and candidates; the classifier bundle goes into the detector bundle's ``second_look``
folder (:mod:`models.second_look`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from models.second_look import FOLDER, SecondLookSpec, cut_chips, fuse, view_mean

log = logging.getLogger(__name__)

CHIP = 64  # px: about 2.5 faces across at the detector's working scale


def train_second_look(config, data, bundle, scenes, found, radius: float):
    """Train the second look for the detector ``bundle`` (config: its ``DetectorTrainConfig``;
    ``data``: its ``LabelledScenes``; ``scenes``: the ``Tuning`` scenes and ``found`` their
    candidates at 0.05; ``radius``: the centre-match radius, px); returns the bundle with its
    ``second_look`` entry."""
    from jobs.train_classifier import TrainConfig, run_train
    from jobs.train_from_labels import cut_training_chips
    from models.backends import load_backend
    from models.bundle import update_manifest
    from models.tuning import best_threshold

    chips = cut_training_chips(
        config.labels, config.out, size=CHIP, gsd_m=data.gsd_m, seed=config.seed,
        scene_column=config.scene_column, point_box_m=config.point_box_m, label=config.label,
    )  # fmt: skip
    faces = len(list((chips / "train" / "face").glob("*.png")))
    mined = write_false_alarms(chips / "train" / "not_face", scenes, found, radius, faces)
    classifier = run_train(TrainConfig(
        data=chips, out=Path(config.out) / FOLDER, arch="whalenet",
        workers=config.workers, storage=config.storage_path, resume=False,  # ~2 min: afresh
        address=config.address, seed=config.seed, gsd_m=data.gsd_m,
        cpus_per_worker=config.cpus_per_worker, use_gpu=config.use_gpu, progress=config.progress,
    ))  # fmt: skip
    backend = load_backend("torch", classifier)
    fused = [
        (boxes, fuse(scores, view_mean(backend, cut_chips(img, (0, 0), boxes, CHIP, fill))))
        for img, fill, (boxes, scores) in zip(scenes.images, scenes.fills, found, strict=True)
    ]
    threshold, f1 = best_threshold(fused, scenes, radius)
    entry = SecondLookSpec(FOLDER, threshold).manifest() | {
        "labels_f1_at_threshold": f1, "false_alarm_chips": mined,
        "val_accuracy": classifier.metrics["val_accuracy"],
    }  # fmt: skip
    log.info("second look: fused threshold %.2f, F1 %.3f on the labelled scenes", threshold, f1)
    return update_manifest(bundle, second_look=entry)


def write_false_alarms(folder: Path, scenes, found, radius: float, limit: int) -> int:
    """PNG chips of the candidates farther than ``radius`` px from every labelled face (the
    detector's false alarms at 0.05) into ``folder``, the ``limit`` highest-scoring at most (a
    weak detector's thousands would drown the faces); returns how many."""
    from PIL import Image

    from reports.truth import centre_radius_pairs

    false = []  # (score, scene, box)
    for s, (truth, (boxes, scores)) in enumerate(zip(scenes.boxes, found, strict=True)):
        near, _ = centre_radius_pairs(boxes, truth, radius)
        false += [(float(scores[i]), s, boxes[i]) for i in np.flatnonzero(~near.any(1))]
    false = sorted(false, key=lambda f: -f[0])[:limit]
    for i, (_, s, box) in enumerate(false):
        (chip,) = cut_chips(scenes.images[s], (0, 0), box[None], CHIP, scenes.fills[s])
        pixels = np.clip(np.rint(chip.transpose(1, 2, 0)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"mined_{s:03d}_{i:05d}.png", compress_level=3)
    return len(false)
