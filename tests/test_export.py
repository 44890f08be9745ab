"""ONNX export into the bundle: dynamic dims, recorded sha256, reuse, staleness, fp16, int8 Q/DQ."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from helpers import untrained_bundle
from PIL import Image

from models.bundle import load_bundle, sha256_file
from models.export import (
    INPUT_NAME,
    OPSET,
    ExportError,
    chip_files,
    export_onnx,
    onnx_path,
)
from models.scorer import build_scorer

SHAPES = [(1, 3, 64, 64), (2, 3, 96, 160), (3, 3, 200, 136)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A bundle with its fp32 ONNX exported once for the module."""
    bundle = load_bundle(untrained_bundle(tmp_path_factory.mktemp("exp") / "b"))
    export_onnx(bundle, "fp32")
    return load_bundle(bundle.path)


@pytest.fixture(scope="module")
def chips_dir(tmp_path_factory):
    """24 RGB PNG chips (64 px) in ImageFolder layout, plus a non-image file to be ignored."""
    root = tmp_path_factory.mktemp("chips")
    rng = np.random.default_rng(0)
    for cls in ("face", "not_face"):
        (root / "train" / cls).mkdir(parents=True)
        for i in range(12):
            img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / "train" / cls / f"{i:03d}.png")
    (root / "dataset.json").write_text("{}")
    return root


def _reference(bundle, x):
    with torch.inference_mode():
        return build_scorer(bundle)(torch.from_numpy(x)).numpy()


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT_NAME: x})[0]


def test_fp32_export_is_recorded_with_its_sha256_and_dynamic_dims(exported):
    entry = exported.artifacts["onnx"]
    path = exported.path / entry["file"]
    assert entry["file"] == "model.onnx"
    assert entry["sha256"] == sha256_file(path)
    assert entry["weights_sha256"] == exported.weights_sha256
    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == OPSET >= 17
    (inp,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    out_dims = [
        d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim
    ]
    assert out_dims[0] == "batch" and all(isinstance(d, str) for d in out_dims)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fp32_onnx_equals_torch(exported, shape):
    x = np.random.default_rng(1).uniform(0, 255, shape).astype(np.float32)
    ref = _reference(exported, x)
    out = _run(onnx_path(exported), x)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)


def test_onnx_path_reuses_an_up_to_date_export_and_redoes_a_stale_one(exported, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(exported.path, copy)
    bundle = load_bundle(copy)
    path = onnx_path(bundle)
    mtime = path.stat().st_mtime_ns
    assert onnx_path(bundle).stat().st_mtime_ns == mtime  # reused, not re-exported
    path.write_bytes(b"corrupt")  # sha256 no longer matches the manifest → re-export
    assert onnx_path(bundle).stat().st_mtime_ns != mtime
    assert onnx.load(str(path)).graph.input[0].name == INPUT_NAME
    assert not [p for p in copy.iterdir() if p.suffix == ".tmp"]  # atomic: no leftovers


def test_onnx_path_exports_on_the_fly_and_keeps_other_artifacts(tmp_path):
    bundle = load_bundle(untrained_bundle(tmp_path / "b"))
    manifest = json.loads((bundle.path / "bundle.json").read_text())
    manifest["artifacts"] = {"note": {"file": "x"}}
    (bundle.path / "bundle.json").write_text(json.dumps(manifest))
    bundle = load_bundle(bundle.path)
    with pytest.raises(ExportError, match="no up-to-date model.onnx"):
        onnx_path(bundle, export=False)
    path = onnx_path(bundle)
    assert path == bundle.path / "model.onnx"
    artifacts = load_bundle(bundle.path).artifacts
    assert set(artifacts) == {"note", "onnx"}


def test_fp16_export_has_fp16_convolutions_and_fp32_io(exported):
    path = export_onnx(exported, "fp16")
    model = onnx.load(str(path))
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    types = {i.name: i.data_type for i in model.graph.initializer}
    assert conv_weights and all(types[w] == onnx.TensorProto.FLOAT16 for w in conv_weights)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    x = np.random.default_rng(2).uniform(0, 255, (2, 3, 96, 160)).astype(np.float32)
    np.testing.assert_allclose(_run(path, x), _reference(exported, x), atol=1e-2, rtol=0)
    assert load_bundle(exported.path).artifacts["onnx_fp16"]["sha256"] == sha256_file(path)


def test_int8_export_is_symmetric_qdq_calibrated_on_chips(exported, chips_dir):
    path = export_onnx(exported, "int8", calib_chips=chips_dir)
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert zero_points and all(np.all(z == 0) for z in zero_points)  # symmetric (TensorRT)
    for conv in (n for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 2):
        assert conv.input[2] in inits and inits[conv.input[2]].dtype == np.float32  # float bias
    x = np.random.default_rng(3).uniform(0, 255, (2, 3, 96, 160)).astype(np.float32)
    out = _run(path, x)
    assert out.shape == (2, 5, 13)
    assert np.abs(out - _reference(exported, x)).max() < 0.1
    entry = load_bundle(exported.path).artifacts["onnx_int8"]
    assert entry["calibration"]["chips_dir"] == str(chips_dir)


def test_int8_needs_calibration_chips(exported, tmp_path):
    with pytest.raises(ExportError, match="--calib-chips"):
        export_onnx(exported, "int8")
    with pytest.raises(ExportError, match="no chip images"):
        chip_files(tmp_path, 10)
    with pytest.raises(ExportError, match="no int8 ONNX model"):
        onnx_path(load_bundle(untrained_bundle(tmp_path / "fresh")), "int8")


def test_chip_files_spreads_a_limit_evenly(chips_dir):
    files = chip_files(chips_dir, 6)
    assert len(files) == 6 and files == sorted(files)
    assert {f.parent.name for f in files} == {"face", "not_face"}


def test_unknown_precision_is_rejected(exported):
    with pytest.raises(ExportError, match="precision 'fp8'"):
        export_onnx(exported, "fp8")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a read-only directory")
def test_read_only_bundle_exports_to_a_cache_dir(exported, tmp_path):
    copy = tmp_path / "ro"
    shutil.copytree(exported.path, copy)
    (copy / "model.onnx").unlink()
    os.chmod(copy, 0o555)
    try:
        path = onnx_path(load_bundle(copy))
        assert copy not in path.parents and path.is_file()
    finally:
        os.chmod(copy, 0o755)


def test_cli_export_onnx_and_errors(exported, chips_dir):
    from jobs.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["export", str(exported.path), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    assert "model.onnx" in result.output and "sha256" in result.output
    result = runner.invoke(main, ["export", str(exported.path), "--precision", "int8"])
    assert result.exit_code != 0 and "--calib-chips" in result.output
    result = runner.invoke(
        main, ["export", str(exported.path), "--precision", "int8", "--calib-chips", str(chips_dir)]
    )
    assert result.exit_code == 0, result.output
    assert "model.int8.onnx" in result.output
