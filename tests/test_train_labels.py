"""``whalescan train LABELS``: chips + classifier with --arch (box size from the labels), the
detector dispatch without it, and the clear error when this build has no detector."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from jobs.train import train
from models.bundle import load_bundle
from models.calibrate import T_MIN
from models.data import read_dataset
from models.scorer import build_scorer
from tests.helpers import labelled_squares


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    return labelled_squares(tmp_path / "scenes")


def test_train_labels_with_arch_cuts_chips_and_records_the_face_size(ray_local, labelled, tmp_path):
    out = tmp_path / "bundle"
    args = [str(labelled), "--out", str(out), "--arch", "whalenet", "--epochs", "2",
            "--workers", "1", "--batch-size", "8", "--chip-size", "32", "--no-progress"]  # fmt: skip
    res = CliRunner().invoke(train, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    chips = tmp_path / "bundle.chips"
    meta = json.loads((chips / "dataset.json").read_text())
    assert meta["chip_size"] == 32 and meta["face_size_px"] == pytest.approx(20.0)
    bundle = load_bundle(out)
    assert bundle.input_size == 32 and bundle.arch == "whalenet"
    assert bundle.object_size_px == pytest.approx(20.0)  # the labelled faces, not chip/2 = 16
    n_chips = sum(meta["counts"].values())
    assert n_chips == len(list(chips.glob("*/*/*.png"))) > 0
    # calibrated on the held-out scene's chips: scores keep their spread (not all 1.00)
    data = read_dataset(chips)
    x = torch.from_numpy(data.val.images.transpose(0, 3, 1, 2).copy()).float()
    with torch.no_grad():
        scores = build_scorer(bundle)(x)[:, 0, 0].numpy()
    faces = scores[data.val.labels == data.classes.index("face")]
    assert bundle.temperature > 2 * T_MIN
    assert bundle.metrics["calibration"]["held_out"] == len(data.val.labels)
    assert (faces < 0.99).any(), faces


def test_train_labels_without_arch_calls_the_detector(labelled, tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("jobs.train_detector")

    def train_detector(labels_path, out, **opts):
        calls.append((labels_path, out, opts))
        return types.SimpleNamespace(path=out, metrics={"val_ap": 0.5, "history": []},
                                     second_look={"threshold": 0.45})  # fmt: skip

    fake.train_detector = train_detector
    monkeypatch.setitem(sys.modules, "jobs.train_detector", fake)
    out = tmp_path / "det"
    res = CliRunner().invoke(train, [str(labelled), "--out", str(out), "--epochs", "3", "--lr", "0.01"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert calls == [(labelled.resolve(), out.resolve(), {"epochs": 3, "lr": 0.01})]
    assert '"val_ap": 0.5' in res.output
    assert 'second look  {"threshold": 0.45}' in res.output
    args = ["--label", "Whale", "--scene-column", "tif", "--point-box-m", "3", "--face-px", "0"]
    res = CliRunner().invoke(train, [str(labelled), "--out", str(out), *args])
    assert res.exit_code == 0, res.output
    assert calls[-1][2] == {"label": "Whale", "scene_column": "tif", "point_box_m": 3.0,
                            "face_px": None}  # fmt: skip
    res = CliRunner().invoke(train, [str(labelled), "--out", str(out), "--face-px", "48"])
    assert res.exit_code == 0 and calls[-1][2] == {"face_px": 48.0}
    res = CliRunner().invoke(train, [str(labelled), "--out", str(out), "--face-px", "48", "--arch", "whalenet"])  # fmt: skip
    assert res.exit_code == 2 and "--face-px: a box-detector option" in res.output
    res = CliRunner().invoke(train, [str(labelled), "--out", str(out), "--no-second-look"])
    assert res.exit_code == 0 and calls[-1][2] == {"second_look": False}
    res = CliRunner().invoke(train, [str(labelled), "--out", str(out), "--second-look", "--arch", "whalenet"])  # fmt: skip
    assert res.exit_code == 2 and "--second-look: a box-detector option" in res.output
    res = CliRunner().invoke(train, [str(labelled), "--out", str(out), "--object-size", "30"])
    assert res.exit_code == 2 and "--object-size: classifier option" in res.output


def test_train_labels_without_a_detector_in_the_build_is_a_clear_error(
    labelled, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "jobs.train_detector", None)  # import fails as if absent
    res = CliRunner().invoke(train, [str(labelled), "--out", str(tmp_path / "b")])
    assert res.exit_code == 1
    assert "approach-3 box detector (jobs.train_detector)" in res.output
    assert "--arch" in res.output
