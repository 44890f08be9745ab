"""Detect rejects options that cannot work before any scene (one line, exit 2), and a backend that
fails on one scene's regions fails that scene only."""

import numpy as np
import pytest
from click.testing import CliRunner

from jobs.detect import DetectConfig, detect, run_detect
from models.backends import EXTRAS, REGISTRY
from tests.helpers import noise_scene, read_detections, read_scene_rows, untrained_bundle, write_tif


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    return untrained_bundle(root / "bundle"), [noise_scene(root / "noise.tif", 300, 200, seed=3)]


def run_cli(bundle, scenes, out, *options):
    args = [str(bundle), *map(str, scenes), "--out", str(out), "--workers", "0", "--no-progress"]
    return CliRunner().invoke(detect, [*args, *options])


def assert_rejected(result, out, *words):
    """Exit 2, one error line naming ``words``, no traceback, nothing written."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, result.output
    for word in words:
        assert word in error[0], error[0]
    assert not out.exists()


def test_unknown_backend_is_rejected_before_any_scene(inputs, tmp_path):
    result = run_cli(*inputs, tmp_path / "out", "--backend", "tensorflow")
    assert_rejected(result, tmp_path / "out", "--backend", "'tensorflow'", "onnxruntime")


def test_unavailable_backend_names_the_install_hint(inputs, tmp_path, monkeypatch):
    # A backend whose library is not installed here (openvino's, renamed to one that is absent).
    monkeypatch.setitem(EXTRAS, "openvino", ("openvino_not_installed", "pip install HINT"))
    result = run_cli(*inputs, tmp_path / "out", "--backend", "openvino")
    assert_rejected(result, tmp_path / "out", "--backend 'openvino'", "pip install HINT")


def test_fcn_stride_other_than_the_bundles_is_rejected(inputs, tmp_path):
    result = run_cli(*inputs, tmp_path / "out", "--stride", "4")
    assert_rejected(result, tmp_path / "out", "--stride 4", "output stride 8", "--mode sliding")


@pytest.mark.parametrize("arch", ["alexnet", "resnet18"])
def test_padded_net_refuses_tiled_fcn_but_runs_sliding(arch, inputs, tmp_path):
    import json

    bundle = untrained_bundle(tmp_path / "b")
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["arch"] = arch  # the check reads the manifest before any weights load
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    result = run_cli(bundle, inputs[1], tmp_path / "out", "--backend", "torch")
    assert_rejected(result, tmp_path / "out", "--mode fcn", repr(arch), "--mode sliding")


def test_padded_net_runs_in_sliding_mode(inputs, tmp_path):
    """The refusal is for tiled FCN only: a real alexnet bundle scores in sliding mode."""
    import torch

    from models.bundle import save_bundle
    from models.nets import build_classifier

    torch.manual_seed(0)
    model = build_classifier("alexnet", 64)
    save_bundle(
        tmp_path / "alexnet", model, arch="alexnet", arch_args={}, input_size=64,
        mean=[0.5] * 3, std=[0.25] * 3, classes=["face", "not_face"], positive_class="face",
        output_stride=model.output_stride, receptive_field=model.receptive_field,
        object_size_px=32,
    )  # fmt: skip
    result = run_cli(tmp_path / "alexnet", inputs[1], tmp_path / "out", "--mode", "sliding",
                     "--stride", "16", "--backend", "torch")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1/1 scene(s) ok" in result.output


class FaultyBackend:
    """The torch backend, except that it raises on all-black pixels (a stand-in device fault)."""

    def __init__(self, bundle, options):
        from models.backends.torch_backend import TorchBackend

        self.inner = TorchBackend(bundle, options)
        self.name, self.device, self.precision = "faulty", "cpu", "fp32"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not x.any():
            raise RuntimeError("simulated device fault")
        return self.inner(x)


def test_backend_error_fails_its_scene_and_the_run_goes_on(inputs, tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY, "faulty", f"{__name__}:FaultyBackend")
    black = write_tif(tmp_path / "black.tif", np.zeros((3, 200, 300), np.uint8))
    bundle, (noise,) = inputs
    # Through the library: the CLI's --backend choice lists the registry as imported.
    config = DetectConfig(bundle=str(bundle), out=str(tmp_path / "out"),
                          scenes=(str(black), str(noise)), backend="faulty", workers=0,
                          progress=False)  # fmt: skip
    outcomes = run_detect(config)
    assert [o.status for o in outcomes] == ["failed", "ok"]
    rows = {r["scene_uri"]: r for r in read_scene_rows(tmp_path / "out").to_pylist()}
    assert rows[str(noise)]["status"] == "ok"
    assert rows[str(black)]["status"] == "failed"
    assert "RuntimeError: simulated device fault" in rows[str(black)]["error"]
    uris = set(read_detections(tmp_path / "out")["scene_uri"].to_pylist())
    assert uris == {str(noise)}


def test_scan_with_a_padded_net_in_fcn_mode_is_a_usage_error(inputs, tmp_path):
    """Scan runs the same checks: exit 2 with the reason, not a scan failure retried each tick."""
    import json
    import shutil

    from jobs.scan import scan

    bundle = untrained_bundle(tmp_path / "b")
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["arch"] = "alexnet"
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    (tmp_path / "drops").mkdir()
    shutil.copy(inputs[1][0], tmp_path / "drops" / "a.tif")
    result = CliRunner().invoke(
        scan,
        [str(tmp_path / "drops"), "--bundle", str(bundle), "--reports", str(tmp_path / "r"),
         "--workers", "0"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "--mode fcn" in result.output and "'alexnet'" in result.output
    assert not (tmp_path / "r" / "scenes").exists()
