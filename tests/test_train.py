"""Training: chip loading, augmentation, calibration, data-parallel exactness on real Ray, the
train/eval CLI in-process, resume, and ``ray job submit`` against a ``ray start`` head."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import assert_same_step, one_worker_reference, two_worker_weights
from PIL import Image

from models import augment as aug
from models.bundle import load_bundle, load_model, save_bundle
from models.calibrate import fit_temperature
from models.data import ChipDataError, eval_split, read_dataset, read_split
from models.train_loop import (
    ChipTensors,
    LoopConfig,
    build_model,
    make_scheduler,
    train_one_epoch,
)

SIZE = 32


def write_chips(root: Path, n_train: int = 24, n_val: int = 12, size: int = SIZE, seed: int = 0):
    """ImageFolder chips: faces are a bright 8-px square on dark noise, not-faces are noise only."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for cls in ("face", "not_face"):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n // 2):
                x = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
                if cls == "face":
                    r, c = rng.integers(size // 4, 3 * size // 4, 2)
                    x[r - 4 : r + 4, c - 4 : c + 4] = 230
                Image.fromarray(x).save(d / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def chips(tmp_path_factory) -> Path:
    return write_chips(tmp_path_factory.mktemp("chips"))


# --- augmentation ---


def test_invert_is_exact():
    x = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    y = aug.invert(x)
    assert y.dtype == np.uint8
    assert np.array_equal(y.astype(int), 255 - x.astype(int))
    assert np.array_equal(aug.invert(y), x)


def test_rot90_four_times_is_identity_and_flips_are_involutions():
    x = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    y = x
    for _ in range(4):
        y = aug.rot90(y, 1)
    assert np.array_equal(y, x)
    assert np.array_equal(aug.rot90(x, 1), np.rot90(x))  # counter-clockwise
    assert np.array_equal(aug.hflip(aug.hflip(x)), x)
    assert np.array_equal(aug.hflip(x), x[:, ::-1])  # left ↔ right: columns


def test_geometric_augment_keeps_label_and_pixels():
    """A flipped/turned chip is one of the 8 symmetries of the original, with the same label."""
    images = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    labels = np.array([0, 1, 0, 1])
    ds = ChipTensors(images, labels, aug.Augment(("flip", "rot90")), seed=3)
    views = {
        i: [aug.rot90(v, k) for v in (images[i], aug.hflip(images[i])) for k in range(4)]
        for i in range(4)
    }
    for epoch in range(3):
        ds.epoch = epoch
        for i in range(4):
            chip, label = ds[i]
            hwc = chip.numpy().transpose(1, 2, 0)
            assert label == labels[i]
            assert any(np.array_equal(hwc, v) for v in views[i])


def test_look_is_the_detectors_look_change_on_a_channels_last_chip():
    from models.scene_augment import change_look

    x = np.random.default_rng(4).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    changed = 0
    for seed in range(6):
        y = aug.Augment(("look",))(x, np.random.default_rng(seed))
        ref = change_look(
            x.transpose(2, 0, 1), np.ones((12, 10), bool), np.random.default_rng(seed)
        )
        assert y.shape == x.shape and y.dtype == np.uint8
        np.testing.assert_array_equal(y, ref.transpose(1, 2, 0))
        changed += not np.array_equal(y, x)
    assert changed == 6


def test_jitter_matches_a_per_pixel_reference_and_saturates():
    """Slow, obvious reference: each pixel on its own, in Python floats, clipped (never wrapped)."""
    x = np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert np.array_equal(aug.jitter(x, 1.0, 1.0), x)
    mean = float(x.astype(np.float64).mean())
    for brightness, contrast in ((1.5, 2.0), (0.7, 0.5), (1.2, 0.9)):
        y = aug.jitter(x, brightness, contrast)
        expected = [
            min(255, max(0, round(((float(v) - mean) * contrast + mean) * brightness)))
            for v in x.ravel()
        ]
        assert y.dtype == np.uint8
        np.testing.assert_allclose(y.ravel().astype(int), expected, atol=1)  # float32 rounding
    saturated = aug.jitter(x, 1.5, 2.0)
    assert (saturated == 255).sum() > 10 and (saturated == 0).sum() > 10  # both ends clip


def test_parse_ops():
    assert aug.parse_ops("rot90,flip") == ("flip", "rot90")
    assert aug.parse_ops("none") == ()
    with pytest.raises(ValueError, match="unknown op"):
        aug.parse_ops("flip,blur")


# --- chip data ---


def test_read_dataset(chips):
    data = read_dataset(chips)
    assert data.classes == ("face", "not_face")
    assert data.train.images.shape == (24, SIZE, SIZE, 3)
    assert data.train.class_counts() == [12, 12]
    assert len(data.val.labels) == 12
    assert data.face_size_px is None
    expected = data.train.images.reshape(-1, 3).mean(0) / 255
    assert np.allclose(data.mean, expected)
    assert read_dataset(chips).fingerprint == data.fingerprint


def test_fingerprint_changes_with_content(tmp_path):
    root = write_chips(tmp_path / "d", 4, 2)
    before = read_dataset(root).fingerprint
    victim = root / "val" / "face" / "000.png"
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(victim)
    assert read_dataset(root).fingerprint != before


def test_chip_errors_name_the_input(tmp_path):
    root = write_chips(tmp_path / "d", 4, 2)
    odd = root / "train" / "not_face" / "odd.png"
    Image.fromarray(np.zeros((SIZE + 2, SIZE + 2, 3), np.uint8)).save(odd)
    with pytest.raises(ChipDataError, match="odd.png"):
        read_dataset(root)
    odd.unlink()
    shutil.rmtree(root / "val")
    with pytest.raises(ChipDataError, match="no val/"):
        read_dataset(root)
    (root / "train" / "face").rename(root / "train" / "whale")
    with pytest.raises(ChipDataError, match="expected 'face'"):
        read_split(root / "train")


def test_eval_split_uses_val_else_folder(chips):
    assert len(eval_split(chips).labels) == 12
    assert len(eval_split(chips / "train").labels) == 24


# --- calibration ---


def test_temperature_recovers_a_known_temperature():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4000, 2, generator=g) * 4
    labels = torch.multinomial(torch.softmax(logits / 2.0, 1), 1, generator=g).squeeze(1)
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.1)


# --- data-parallel exactness: 2 workers × b == 1 worker × 2b ---


def test_two_workers_take_the_same_step_as_one_with_twice_the_batch(ray_local, chips, tmp_path):
    from jobs.ray_train import fit

    data = read_dataset(chips)
    b = 4
    loop = LoopConfig(
        input_size=SIZE, mean=data.mean, std=data.std, epochs=1, batch_size=b, lr=0.5,
        optimizer="sgd", momentum=0.0, weight_decay=0.0, schedule="constant", augment=(),
        class_weights=(0.75, 1.5), shuffle=False, dropout=False, max_steps=1,
    )  # fmt: skip
    result = fit(loop, data, workers=2, storage_path=str(tmp_path), name="dp")
    # Reference: the same engine in this process, one worker, batch 2b, same first 2b chips.
    one, model, start, optimizer = one_worker_reference(loop, build_model)
    ds = ChipTensors(data.train.images, data.train.labels, aug.Augment(()))
    loader = torch.utils.data.DataLoader(ds, batch_size=2 * b, shuffle=False)
    from models.scorer import Normalize

    weights = torch.tensor(one.class_weights)
    train_one_epoch(model, loader, optimizer, make_scheduler(optimizer, one, len(loader)),
                    Normalize(data.mean, data.std), weights, max_steps=1)  # fmt: skip
    assert_same_step(two_worker_weights(result), model, start)


# --- CLI end to end, in process: train (2 workers) → resume → eval ---


@pytest.fixture(scope="module")
def trained(ray_local, chips, tmp_path_factory) -> tuple[Path, dict]:
    from jobs.train import train

    out = tmp_path_factory.mktemp("train") / "bundle"
    args = [str(chips), "--out", str(out), "--epochs", "2", "--workers", "2",
            "--batch-size", "8", "--augment", "flip,rot90,jitter,invert"]  # fmt: skip
    res = CliRunner().invoke(train, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "val_accuracy=" in res.output
    return out, json.loads((out / "bundle.json").read_text())


def test_train_cli_writes_a_loadable_bundle(trained, chips):
    out, manifest = trained
    assert sorted(p.name for p in out.iterdir()) == ["bundle.json", "model.safetensors"]
    bundle = load_bundle(out)
    model = load_model(bundle)
    assert bundle.input_size == SIZE and bundle.classes == ("face", "not_face")
    assert bundle.positive_class == "face"
    assert (bundle.output_stride, bundle.receptive_field) == (8, SIZE)
    assert bundle.object_size_px == SIZE / 2  # no dataset.json: half the chip
    assert 0.1 <= bundle.temperature <= 10
    m = bundle.metrics
    assert m["epochs"] == 2 and [h["epoch"] for h in m["history"]] == [1, 2]
    for key in ("val_loss", "train_seconds", "samples_per_s"):
        assert m[key] > 0, key
    # The recorded val metrics are the saved model's on val/, recounted here (six steps do not
    # learn much; that training learns is tests/test_recall.py's business).
    from models.scorer import Normalize
    from models.train_loop import predict_logits

    data = read_dataset(chips)
    logits = predict_logits(model, data.val.images, Normalize(data.mean, data.std))
    labels = torch.from_numpy(data.val.labels)
    accuracy = float((logits.argmax(1) == labels).float().mean())
    assert m["val_accuracy"] == pytest.approx(accuracy)
    assert m["val_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)))
    assert len(bundle.data_fingerprint) == 64
    assert model(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, 2)


def test_resume_runs_only_the_missing_epochs(trained, chips):
    from jobs.train import train

    out, first = trained
    args = [str(chips), "--out", str(out), "--epochs", "3", "--workers", "2",
            "--batch-size", "8", "--augment", "flip,rot90,jitter,invert", "--resume",
            "--no-progress", "--gsd", "0.05"]  # fmt: skip
    res = CliRunner().invoke(train, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert first.get("gsd_m") is None  # no --gsd, no dataset.json: unknown
    assert load_bundle(out).gsd_m == 0.05
    history = load_bundle(out).metrics["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    # Epochs 1-2 come from the checkpoint unchanged (timings included): they were not re-run.
    assert history[:2] == first["metrics"]["history"]


def test_resume_without_an_earlier_run_is_a_clear_error(chips, tmp_path):
    from jobs.train import train

    args = [str(chips), "--out", str(tmp_path / "never"), "--resume"]
    res = CliRunner().invoke(train, args)
    assert res.exit_code == 1
    assert "no earlier run 'never'" in res.output


def test_train_config_errors_name_the_field(chips, tmp_path):
    from jobs.train import train
    from jobs.train_classifier import TrainConfig

    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(data=chips, out=tmp_path / "b", workers=3, batch_size=64)
    with pytest.raises(ValueError, match="arch"):
        TrainConfig(data=chips, out=tmp_path / "b", arch="vgg")
    res = CliRunner().invoke(train, [str(chips), "--out", str(tmp_path / "b"), "--epochs", "0"])
    assert res.exit_code == 2 and "epochs" in res.output


def test_eval_json_matches_a_hand_count(chips, tmp_path):
    """An untrained (random) model makes mixed predictions; eval's numbers match a hand count."""
    from jobs.evaluate import evaluate
    from models.scorer import build_scorer

    data = read_dataset(chips)
    loop = LoopConfig(input_size=SIZE, mean=data.mean, std=data.std, seed=5)
    model = build_model(loop)
    bundle = save_bundle(
        tmp_path / "b", model, arch="whalenet", arch_args={}, input_size=SIZE, mean=data.mean,
        std=data.std, classes=["face", "not_face"], positive_class="face",
        output_stride=8, receptive_field=SIZE,
    )  # fmt: skip
    res = CliRunner().invoke(evaluate, [str(bundle.path), str(chips), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)

    x = torch.from_numpy(data.val.images.transpose(0, 3, 1, 2).copy()).float()
    with torch.no_grad():
        face = (build_scorer(bundle)(x)[:, 0, 0] > 0.5).numpy()
    truth = data.val.labels == 0
    tp, fp = int((face & truth).sum()), int((face & ~truth).sum())
    fn, tn = int((~face & truth).sum()), int((~face & ~truth).sum())
    assert report["confusion_matrix"] == {"labels": ["face", "not_face"], "rows": "true",
                                          "matrix": [[tp, fn], [fp, tn]]}  # fmt: skip
    assert report["n"] == 12
    assert report["accuracy"] == pytest.approx((tp + tn) / 12)
    assert report["precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
    assert report["recall"] == pytest.approx(tp / (tp + fn) if tp + fn else 0.0)


def test_prepare_run_dir_on_s3(s3_server):
    """The fresh-run/resume bookkeeping works on s3:// storage through pyarrow, like Ray's."""
    import boto3

    from jobs.ray_train import TrainError, prepare_run_dir

    boto3.client("s3").create_bucket(Bucket="runs")
    with pytest.raises(TrainError, match="no earlier run"):
        prepare_run_dir("s3://runs/whalescan", "b", resume=True)
    boto3.client("s3").put_object(Bucket="runs", Key="whalescan/b/x.json", Body=b"{}")
    prepare_run_dir("s3://runs/whalescan", "b", resume=True)
    prepare_run_dir("s3://runs/whalescan", "b", resume=False)
    left = boto3.client("s3").list_objects_v2(Bucket="runs", Prefix="whalescan/b/")
    assert left["KeyCount"] == 0


# --- ray job submit against a real `ray start --head` (token auth on, as Ray 2.60 defaults) ---


@pytest.mark.slow
def test_ray_job_submit_trains_against_a_started_head(chips, ray_head):
    # `ray start` turned token authentication on: a client without the token is refused.
    anonymous = {**ray_head.env, "RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN": ""}
    denied = subprocess.run(
        [ray_head.ray, "job", "list", f"--address={ray_head.address}"],
        env=anonymous, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert denied.returncode != 0 and "Authentication" in denied.stdout + denied.stderr
    out = ray_head.tmp / "bundle"
    job = ray_head.submit(
        "jobs.train", str(chips), "--out", str(out), "--workers", "2", "--epochs", "1",
        "--batch-size", "8", "--no-progress",
    )  # fmt: skip
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout + job.stderr
    bundle = load_bundle(out)
    assert bundle.metrics["epochs"] == 1
    load_model(bundle)
