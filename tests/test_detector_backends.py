"""Backend conformance for the approach-3 box detector: every backend runs its 5-channel output.

The detector bundle goes through the same ONNX export and backends as the classifier; each is
compared with the torch fp32 scorer on several shapes (batch > 1, non-square) channel by channel
and by its peaks (the boxes' centres; offsets and sizes there are covered channel by channel). TensorRT runs against the
fake ``tensorrt`` module of ``test_backends`` (the 10.x named-tensor API) where the library is
missing, and for real where it is installed with a GPU.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import untrained_detector_bundle

# The fixtures run with this module's ``bundle``: pytest resolves their arguments by name.
from test_backends import _inputs, exported_bundle, fake_tensorrt  # noqa: F401

from models.backends import available, load_backend
from models.backends.conformance import agreement, peaks
from models.bundle import load_bundle
from models.scorer import build_scorer

SHAPES = [(1, 3, 135, 135), (2, 3, 199, 263), (1, 3, 300, 420)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = untrained_detector_bundle(
        tmp_path_factory.mktemp("detb") / "b", seed=3, heat_bias=0.2, heat_gain=30.0, flips=8
    )  # eight views, as trained bundles have: flips, transposes and signs go through every export
    return load_bundle(path)


@pytest.fixture(scope="module")
def references(bundle):
    scorer = build_scorer(bundle, "cpu")
    with torch.inference_mode():
        return {s: scorer(torch.from_numpy(_inputs(s))).numpy() for s in SHAPES}


def _check(backend, references, atol):
    """Every channel within ``atol`` of torch fp32, and the same clear peaks (boxes): a peak
    closer than ``atol`` to a tie may flip either way, as for the classifier's heatmaps."""
    clear = 0
    for shape, ref in references.items():
        out = backend(_inputs(shape))
        assert out.dtype == np.float32 and out.shape == ref.shape == (shape[0], 5, *ref.shape[2:])
        np.testing.assert_allclose(out, ref, atol=atol, rtol=1e-5)
        a = agreement(ref[:, 0], out[:, 0], threshold=0.4, margin=atol)
        assert a.same_detections, (shape, a)
        clear += int(peaks(ref[:, 0], 0.4, atol).sum())
    assert clear > 10  # the comparison has teeth


needs_openvino = pytest.mark.skipif(
    not available("openvino"), reason="openvino not installed (pip install 'whalescan[openvino]')"
)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("torch", {"precision": "fp32"}),
        ("torch", {"precision": "fp32", "channels_last": False, "max_batch": 1}),
        ("onnxruntime", {}),
        pytest.param("openvino", {"precision": "fp32"}, marks=needs_openvino),
        ("auto", {}),
    ],
    ids=str,
)
def test_cpu_backends_match_torch_fp32(bundle, references, name, options):
    _check(load_backend(name, bundle, **options), references, atol=1e-3)


def test_export_cli_covers_the_detector(bundle, tmp_path):
    from jobs.cli import main

    copy = tmp_path / "b"
    shutil.copytree(bundle.path, copy)
    result = CliRunner().invoke(main, ["export", str(copy), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    b = load_bundle(copy)
    assert b.artifacts["onnx"]["weights_sha256"] == b.weights_sha256 and b.kind == "detector"
    import onnx

    (out,) = onnx.load(str(copy / "model.onnx")).graph.output
    assert out.type.tensor_type.shape.dim[1].dim_value == 5


def test_tensorrt_code_path_with_the_fake_library(fake_tensorrt, references):  # noqa: F811
    b, fake = fake_tensorrt
    backend = load_backend("tensorrt", b, precision="fp32", tile=(300, 420), max_batch=2)
    assert fake.builds[0]["shape"][0] == "pixels"
    assert fake.builds[0]["onnx"] == str(b.path / "model.onnx")
    _check(backend, references, atol=1e-5)


@pytest.mark.skipif(
    not (torch.cuda.is_available() and available("tensorrt")),
    reason="needs an NVIDIA GPU and TensorRT (pip install 'whalescan[tensorrt]')",
)
def test_tensorrt_engine_matches_torch(bundle, references, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(bundle.path, copy)
    backend = load_backend("tensorrt", load_bundle(copy), precision="fp32", tile=(300, 420))
    _check(backend, references, atol=1e-3)


def test_changing_test_time_flips_re_exports_the_onnx_model(bundle, tmp_path):
    """Editing ``test_time_flips`` in bundle.json gives a model of that many views, not the
    stale export of the old count; a count the scorer cannot run is refused by name."""
    import json

    from models.bundle import BundleError
    from models.export import onnx_path

    copy = tmp_path / "b"
    shutil.copytree(bundle.path, copy)
    eight = load_backend("onnxruntime", load_bundle(copy))(_inputs(SHAPES[2]))
    manifest = json.loads((copy / "bundle.json").read_text())
    manifest["test_time_flips"] = 1
    (copy / "bundle.json").write_text(json.dumps(manifest))
    one_bundle = load_bundle(copy)
    one = load_backend("onnxruntime", one_bundle)(_inputs(SHAPES[2]))
    assert load_bundle(copy).artifacts["onnx"]["test_time_flips"] == 1
    with torch.inference_mode():
        plain = build_scorer(one_bundle)(torch.from_numpy(_inputs(SHAPES[2]))).numpy()
    np.testing.assert_allclose(one, plain, atol=1e-4, rtol=1e-5)
    assert np.abs(one - eight).max() > 1e-2
    assert onnx_path(one_bundle).exists()
    manifest["test_time_flips"] = 3
    (copy / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="test_time_flips 3"):
        load_bundle(copy)
