"""Networks, their fully-convolutional form, and the model bundle (round trip and every way it
can be broken)."""

from __future__ import annotations

import json
import tarfile

import pytest
import torch

from models.bundle import BundleError, load_bundle, load_model, save_bundle
from models.fcn import heatmap_cells, to_fcn
from models.nets import build_classifier


@pytest.mark.parametrize("input_size", [32, 48])
def test_whalenet_fcn_equals_sliding_window(input_size):
    """Slow, obvious reference: classify every stride-aligned window; compare with one FCN pass."""
    torch.manual_seed(0)
    model = build_classifier("whalenet", input_size).eval()
    s = model.output_stride
    assert model.exact_fcn and s == 8 and model.receptive_field == input_size
    # H − input ≡ s − 1 (mod s): the case where an uncropped FCN emits an extra edge cell.
    x = torch.rand(2, 3, input_size + 3 * s + 7, input_size + 2 * s + 1) * 4 - 2
    with torch.no_grad():
        heat = to_fcn(model)(x)
        rows, cols = heat.shape[-2:]
        windows = torch.stack(
            [
                x[:, :, i * s : i * s + input_size, j * s : j * s + input_size]
                for i in range(rows)
                for j in range(cols)
            ],
            dim=1,
        ).flatten(0, 1)
        slide = model(windows).view(2, rows, cols, -1).permute(0, 3, 1, 2)
    assert (rows, cols) == (4, 3)
    torch.testing.assert_close(heat, slide, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("height,width", [(32, 32), (39, 40), (40, 47), (100, 64), (131, 33)])
def test_fcn_output_size_formula(height, width):
    model = build_classifier("whalenet", 32).eval()
    with torch.no_grad():
        heat = to_fcn(model)(torch.zeros(1, 3, height, width))
    expected = (heatmap_cells(height, 32, 8), heatmap_cells(width, 32, 8))
    assert heat.shape == (1, 2, *expected)
    assert expected == ((height - 32) // 8 + 1, (width - 32) // 8 + 1)
    assert heatmap_cells(31, 32, 8) == 0


@pytest.mark.parametrize("arch,stride", [("alexnet", 8), ("resnet18", 32)])
def test_other_archs_build_and_rewrite(arch, stride):
    torch.manual_seed(0)
    model = build_classifier(arch, 64).eval()
    assert (model.input_size, model.output_stride, model.receptive_field) == (64, stride, 64)
    assert not model.exact_fcn
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
        fcn = to_fcn(model)
        heat = fcn(x)
        big = fcn(torch.rand(1, 3, 64 + 2 * stride, 64 + 2 * stride))
    assert logits.shape == (2, 2)
    # At exactly the chip size the FCN form is the classifier, padding or not.
    torch.testing.assert_close(heat[:, :, 0, 0], logits, rtol=1e-4, atol=1e-5)
    assert big.shape[:2] == (1, 2) and min(big.shape[-2:]) >= 2


def test_unknown_arch():
    with pytest.raises(ValueError, match="unknown arch 'vgg'"):
        build_classifier("vgg", 64)


# --- the bundle ---


def _save(path, arch="whalenet", size=32):
    torch.manual_seed(1)
    model = build_classifier(arch, size).eval()
    bundle = save_bundle(
        path, model, arch=arch, arch_args={}, input_size=size, mean=[0.1, 0.2, 0.3],
        std=[0.2, 0.2, 0.25], classes=["face", "not_face"], positive_class="face",
        output_stride=model.output_stride, receptive_field=model.receptive_field,
        object_size_px=16.0, temperature=1.5, metrics={"val_accuracy": 0.9},
        data_fingerprint="f" * 64,
    )  # fmt: skip
    return model, bundle


def test_bundle_round_trip(tmp_path):
    model, saved = _save(tmp_path / "b")
    bundle = load_bundle(tmp_path / "b")
    assert bundle == saved
    assert bundle.mean == (0.1, 0.2, 0.3) and bundle.classes == ("face", "not_face")
    assert (bundle.temperature, bundle.object_size_px) == (1.5, 16.0)
    assert bundle.metrics == {"val_accuracy": 0.9} and bundle.versions["torch"]
    loaded = load_model(bundle)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_tar_bundle_loads(tmp_path):
    _, saved = _save(tmp_path / "b")
    with tarfile.open(tmp_path / "b.tar", "w") as tf:
        tf.add(tmp_path / "b", arcname="b")
    bundle = load_bundle(tmp_path / "b.tar")
    assert bundle.weights_sha256 == saved.weights_sha256
    load_model(bundle)


def test_bundle_has_no_pickle(tmp_path):
    _save(tmp_path / "b")
    files = sorted(p.name for p in (tmp_path / "b").rglob("*"))
    assert files == ["bundle.json", "model.safetensors"]
    for p in (tmp_path / "b").iterdir():
        head = p.read_bytes()[:16]
        assert not head.startswith(b"\x80") and b"PK\x03\x04" not in head  # pickle / torch zip


def test_missing_bundle_and_missing_files(tmp_path):
    with pytest.raises(BundleError, match="no such model bundle"):
        load_bundle(tmp_path / "nope")
    _save(tmp_path / "b")
    (tmp_path / "b" / "model.safetensors").unlink()
    with pytest.raises(BundleError, match="has no model.safetensors"):
        load_bundle(tmp_path / "b")


def test_not_a_bundle_file(tmp_path):
    junk = tmp_path / "b.tar"
    junk.write_bytes(b"this is not a tar archive" * 40)
    with pytest.raises(BundleError, match="not a bundle directory or .tar"):
        load_bundle(junk)


def test_truncated_weights(tmp_path):
    _save(tmp_path / "b")
    weights = tmp_path / "b" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(BundleError, match="sha256 .* does not match"):
        load_bundle(tmp_path / "b")
    # Even with a matching hash, truncated safetensors fail with a clear message, not a crash.
    from models.bundle import sha256_file

    _edit(tmp_path / "b", weights_sha256=sha256_file(weights))
    with pytest.raises(BundleError, match="unreadable safetensors"):
        load_model(load_bundle(tmp_path / "b"))


def test_edited_sha(tmp_path):
    _save(tmp_path / "b")
    _edit(tmp_path / "b", weights_sha256="0" * 64)
    with pytest.raises(BundleError, match="corrupt or from another model"):
        load_bundle(tmp_path / "b")


def test_wrong_arch_in_manifest(tmp_path):
    _save(tmp_path / "b")
    _edit(tmp_path / "b", arch="alexnet")
    with pytest.raises(BundleError, match="do not fit arch 'alexnet'"):
        load_model(load_bundle(tmp_path / "b"))


def test_wrong_input_size_in_manifest(tmp_path):
    _save(tmp_path / "b")
    _edit(tmp_path / "b", input_size=64)
    with pytest.raises(BundleError, match="input_size 64"):
        load_model(load_bundle(tmp_path / "b"))


@pytest.mark.parametrize(
    "change,message",
    [
        ({"positive_class": "whale"}, "positive_class 'whale' not in classes"),
        ({"std": [0.2, 0.0, 0.2]}, "std > 0"),
        ({"format_version": 99}, "bundle format 99"),
    ],
)
def test_invalid_manifest_values(tmp_path, change, message):
    _save(tmp_path / "b")
    _edit(tmp_path / "b", **change)
    with pytest.raises(BundleError, match=message):
        load_bundle(tmp_path / "b")


def test_manifest_missing_key_or_not_json(tmp_path):
    _save(tmp_path / "b")
    manifest = tmp_path / "b" / "bundle.json"
    doc = json.loads(manifest.read_text())
    del doc["mean"]
    manifest.write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="lacks mean"):
        load_bundle(tmp_path / "b")
    manifest.write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path / "b")


def _edit(bundle_dir, **changes):
    manifest = bundle_dir / "bundle.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), **changes}))


def test_torch_free_fcn_table_matches_the_networks():
    from models.archs import EXACT_FCN
    from models.nets import ARCHS

    assert {name: cls.exact_fcn for name, cls in ARCHS.items()} == EXACT_FCN
