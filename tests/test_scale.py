"""Scale-aware detection: bundles know their GSD, scenes are scored at it, boxes come back native."""

from __future__ import annotations

import json
import logging

import pytest

from models.bundle import BundleError, load_bundle, update_manifest
from models.data import ChipDataError, read_dataset
from tests.helpers import untrained_bundle

# --- the GSD a bundle is trained at ---


def test_bundle_records_gsd_and_old_bundles_load_without_it(tmp_path):
    path = untrained_bundle(tmp_path / "b")
    manifest = json.loads((path / "bundle.json").read_text())
    manifest.pop("gsd_m", None)  # as bundles written before gsd_m existed
    (path / "bundle.json").write_text(json.dumps(manifest))
    assert load_bundle(path).gsd_m is None
    update_manifest(load_bundle(path), gsd_m=0.05)
    assert load_bundle(path).gsd_m == 0.05
    manifest["gsd_m"] = -0.1
    (path / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="gsd_m -0.1"):
        load_bundle(path)


def _chips(root, meta: dict | None):
    from tests.test_train import write_chips

    write_chips(root, 4, 2)
    if meta is not None:
        (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_training_gsd_is_the_flag_else_dataset_json_else_unknown(tmp_path, caplog):
    from jobs.train import TrainConfig, training_gsd

    with_meta = read_dataset(_chips(tmp_path / "a", {"gsd_m": 0.03, "face_size_px": 100}))
    without = read_dataset(_chips(tmp_path / "b", None))
    assert with_meta.gsd_m == 0.03 and without.gsd_m is None
    cfg = TrainConfig(data=tmp_path / "a", out=tmp_path / "o")
    assert training_gsd(cfg, with_meta) == 0.03
    flag = TrainConfig(data=tmp_path / "a", out=tmp_path / "o", gsd_m=0.07)
    assert training_gsd(flag, with_meta) == 0.07 and training_gsd(flag, without) == 0.07
    with caplog.at_level(logging.WARNING, logger="jobs.train"):
        assert training_gsd(cfg, without) is None
    assert "native pixels" in caplog.text
    with pytest.raises(ValueError, match="gsd_m"):
        TrainConfig(data=tmp_path / "a", out=tmp_path / "o", gsd_m=0.0)


def test_dataset_json_with_a_bad_gsd_is_named(tmp_path):
    root = _chips(tmp_path / "c", {"gsd_m": "fine"})
    with pytest.raises(ChipDataError, match="gsd_m 'fine'"):
        read_dataset(root)


def test_train_cli_rejects_a_bad_gsd(tmp_path):
    from click.testing import CliRunner

    from jobs.train import train

    root = _chips(tmp_path / "d", None)
    res = CliRunner().invoke(train, [str(root), "--out", str(tmp_path / "o"), "--gsd", "-1"])
    assert res.exit_code == 2 and "gsd_m" in res.output
