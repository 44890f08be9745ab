"""Approach-3 training: data-parallel exactness, a tiny run end to end (train → resume → detect)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import (
    assert_same_step,
    labelled_set,
    one_worker_reference,
    read_detections,
    two_worker_weights,
)

from jobs.labelled_scenes import load_labelled_scenes
from jobs.train_detector import train_detector
from models.bundle import load_bundle
from models.detector import BoxOutputs
from models.detector_loop import DetectorLoopConfig, build_detector_model, train_detector_epoch
from models.scene_crops import SceneCrops
from models.scorer import Normalize
from models.train_loop import make_scheduler


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    return labelled_set(tmp_path_factory.mktemp("labelled"), [420, 380, 400], seed=3, whales=4)


def test_two_workers_take_the_same_step_as_one_with_twice_the_batch(ray_local, labels, tmp_path):
    from jobs.ray_train import fit
    from models.detector_loop import train_detector_per_worker

    data = load_labelled_scenes(labels)
    b = 2
    loop = DetectorLoopConfig(
        input_size=175, mean=(0.3, 0.3, 0.3), std=(0.2, 0.2, 0.2), arch_args={"width": 4},
        epochs=1, batch_size=b, lr=0.05, optimizer="sgd", momentum=0.0, weight_decay=0.0,
        schedule="constant", shuffle=False, max_steps=1, crops_per_epoch=2 * b,
    )  # fmt: skip
    payload = (data.images, data.boxes, data.fills, (), (), ())
    result = fit(loop, payload, workers=2, storage_path=str(tmp_path), name="dp",
                 per_worker=train_detector_per_worker)  # fmt: skip
    # Reference: the same engine in this process, one worker, batch 2b, the same crops.
    one, model, start, optimizer = one_worker_reference(loop, build_detector_model)
    crops = SceneCrops(data.images, data.boxes, crop=175, receptive_field=135, stride=4,
                       crops_per_epoch=2 * b, augment=one.augment, seed=one.seed,
                       fills=data.fills)  # fmt: skip
    loader = torch.utils.data.DataLoader(crops, batch_size=2 * b, shuffle=False)
    train_detector_epoch(model, loader, optimizer, make_scheduler(optimizer, one, 1),
                         Normalize(one.mean, one.std), BoxOutputs(4, model.size_ref), 135,
                         max_steps=1)  # fmt: skip
    assert_same_step(two_worker_weights(result), model, start)


def test_crops_past_the_scene_edge_take_the_colour_detect_reads_there(labels):
    from rasterio.windows import Window

    from tiling.bands import resolve_scaling, select_bands
    from tiling.read import read_window
    from tiling.scene import open_scene

    data = load_labelled_scenes(labels)
    with open_scene(data.uris[0]) as ds:
        bands = select_bands(ds, data.uris[0], None)
        pixels, valid = read_window(ds, data.uris[0], Window(-40, -40, 100, 100), bands,
                                    resolve_scaling(ds, bands, "auto"))  # fmt: skip
    assert not valid[:40].any() and valid[40:, 40:].all()
    np.testing.assert_allclose(pixels[:, :40], data.fills[0][:, None, None] * np.ones((1, 40, 100)))
    assert data.fills[0].max() > 10  # the sea's colour, not black

    crops = SceneCrops(data.images, data.boxes, crop=175, receptive_field=135, stride=4,
                       crops_per_epoch=1, augment=(), fills=data.fills)  # fmt: skip
    image, inside = crops._cut(0, -40, -40, 100)
    assert (image[:, :40] == np.rint(data.fills[0]).astype(np.uint8)[:, None, None]).all()
    assert (inside == valid).all() and (image[:, 40:, 40:] == data.images[0][:, :60, :60]).all()


def test_a_window_past_the_right_and_bottom_edges_or_off_the_scene_is_fill_and_invalid():
    from models.scene_window import cut_window

    scene = np.arange(3 * 5 * 7, dtype=np.uint8).reshape(3, 5, 7)
    fill = np.array([200, 201, 202])
    pixels, valid = cut_window(scene, 4, 3, 6, 4, fill, np.uint8)
    assert pixels.shape == (3, 4, 6) and pixels.dtype == np.uint8
    assert (pixels[:, :2, :3] == scene[:, 3:, 4:]).all() and valid[:2, :3].all()
    assert not valid[2:].any() and not valid[:, 3:].any()
    assert (pixels[:, 2:] == fill[:, None, None]).all() and (
        pixels[:, :, 3:] == fill[:, None, None]
    ).all()
    away, nowhere = cut_window(scene, 9, -20, 3, 3, fill)
    assert not nowhere.any() and (away == fill[:, None, None]).all() and away.dtype == np.float32


def test_scenes_load_with_the_faces_class_whatever_the_labels_call_it(labels, tmp_path):
    """A one-class file named otherwise ("Whale") trains on every box; in a file with other
    classes (a boat), every box unless ``label`` names the faces'."""
    import csv

    rows = list(csv.reader(labels.open()))
    base = load_labelled_scenes(labels)
    renamed = tmp_path / "renamed.csv"  # in another folder: absolute scene paths
    scene = str(labels.parent / rows[1][0])
    boat = [scene, 5, 5, 30, 30, "boat"]
    body = [[str(labels.parent / r[0]), *r[1:5], "Whale"] for r in rows[1:]]
    csv.writer(renamed.open("w", newline="")).writerows([rows[0], *body])
    mixed = tmp_path / "mixed.csv"
    csv.writer(mixed.open("w", newline="")).writerows([rows[0], *body, boat])
    one = load_labelled_scenes(renamed)
    assert one.label == "Whale" and base.label == "whale_face"
    for got in (one, load_labelled_scenes(mixed, label="Whale")):
        for a, b in zip(got.boxes, base.boxes, strict=True):
            np.testing.assert_array_equal(a, b)
    every = load_labelled_scenes(mixed)
    assert every.label == "whale_face" and len(np.concatenate(every.boxes)) == len(rows)


def test_large_faces_are_trained_at_the_gsd_that_makes_them_face_px(labels, tmp_path):
    """The set flown at 4 cm instead of 10 (faces ×2.5, median over 1.5 × 32 px): the scenes are
    read at the coarser GSD where the median face is 32 px, as detect reads them for the bundle;
    at their own size they load at native pixels, 10 cm."""
    import csv

    from synth.regsd import write_at_gsd

    k = 0.1 / 0.04
    rows = list(csv.reader(labels.open()))
    for name in {r[0] for r in rows[1:]}:
        write_at_gsd(labels.parent / name, tmp_path / name, 0.04)
    big = tmp_path / "big.csv"
    scaled = [[r[0], *(float(v) * k for v in r[1:5]), r[5]] for r in rows[1:]]
    csv.writer(big.open("w", newline="")).writerows([rows[0], *scaled])

    base = load_labelled_scenes(labels)
    assert base.gsd_m == pytest.approx(0.1, rel=1e-3)
    native = load_labelled_scenes(big, face_px=None)
    assert native.gsd_m == pytest.approx(0.04, rel=1e-3)
    data = load_labelled_scenes(big)
    sides = np.concatenate(
        [np.concatenate([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]]) for b in data.boxes]
    )
    assert np.median(sides) == pytest.approx(32.0)
    f = data.gsd_m / native.gsd_m
    assert f > 1.5
    for image, boxes, nat, nboxes in zip(
        data.images, data.boxes, native.images, native.boxes, strict=True
    ):
        assert image.shape[1:] == tuple(np.ceil(np.array(nat.shape[1:]) / f).astype(int))
        np.testing.assert_allclose(boxes, nboxes / f)
        assert abs(image.mean() - nat.mean()) < 1.0  # averaged, not cropped or shifted


def test_train_resume_then_detect_end_to_end(ray_local, labels, tmp_path):
    from jobs.detect import detect

    opts = dict(workers=2, batch_size=4, crops_per_epoch=8, width=4, crop=199, progress=False)
    first = train_detector(labels, tmp_path / "b", epochs=1, second_look=False, **opts)
    assert first.second_look == {}
    bundle = train_detector(labels, tmp_path / "b", epochs=2, resume=True, **opts)
    assert first.kind == bundle.kind == "detector"
    history = bundle.metrics["history"]
    assert [h["epoch"] for h in history] == [1, 2] and {"val_ap", "val_ap50"} <= set(history[-1])
    # the spatial hold-out: a strip at the bottom of every scene validates, the rest trains
    names = [str(labels.parent / f"scene_{k}.tif") for k in range(3)]
    assert [v.split(" rows ")[0] for v in bundle.metrics["val_scenes"]] == names
    assert [t.split(" rows ")[0] for t in bundle.metrics["train_scenes"]] == names
    assert bundle.gsd_m == pytest.approx(0.1, rel=1e-3) and bundle.receptive_field == 135
    assert bundle.max_box_px is not None and 20 < bundle.object_size_px < 45
    assert bundle.test_time_flips == 8  # detection (and the tuned threshold) average 8 views
    # the second look: a classifier inside the bundle, trained on chips of the labels plus the
    # detector's own false alarms (at most as many as face chips), with its fused threshold
    second = bundle.second_look
    assert second["folder"] == "second_look" and 0 < second["threshold"] < 1
    chips = tmp_path / "b.chips" / "train"
    mined = list((chips / "not_face").glob("mined_*.png"))
    assert 0 < len(mined) == second["false_alarm_chips"] <= len(list((chips / "face").glob("*")))
    assert load_bundle(bundle.path / "second_look").kind == "classifier"

    scene = labels.parent / "scene_2.tif"
    out = tmp_path / "reports"
    res = CliRunner().invoke(detect, [str(bundle.path), str(scene), "--out", str(out),
                                      "--workers", "0", "--quiet", "--threshold", "0.05"])  # fmt: skip
    assert res.exit_code == 0, res.output
    t = read_detections(out)
    assert set(t["mode"].to_pylist()) <= {"boxes"} and len(t) > 0
    w = t["px_xmax"].to_numpy() - t["px_xmin"].to_numpy()
    h = t["px_ymax"].to_numpy() - t["px_ymin"].to_numpy()
    assert np.all(w > 0) and np.all(h > 0) and not np.allclose(w, h)  # the network's own sizes
