"""ONNX export of a bundle's scorer, stored in the bundle: fp32, fp16 and int8 (Q/DQ) variants.

Every variant takes float32 pixels ``pixels`` (N, 3, H, W) on the 0..255 scale, with dynamic N, H
and W, and returns float32 ``probability`` (N, H', W') — the same contract as
:func:`models.scorer.build_scorer`, so backends never re-implement preprocessing:

* ``fp32`` → ``model.onnx`` (``bundle.artifacts["onnx"]``): the reference graph.
* ``fp16`` → ``model.fp16.onnx`` (``artifacts["onnx_fp16"]``): normalisation and softmax stay
  fp32, the convolutions run in fp16 between two Casts. This is how a strongly typed TensorRT
  network gets fp16 precision: from the model, not from builder flags (gone in TensorRT 11).
* ``int8`` → ``model.int8.onnx`` (``artifacts["onnx_int8"]``): Q/DQ nodes (explicit quantisation)
  around the convolutions, calibrated on chip images with ONNX Runtime's ``quantize_static``;
  symmetric activations and weights (zero point 0) and float biases, which is what TensorRT's
  explicit-quantisation path accepts.

Each artefact entry records ``file``, ``sha256`` (of the ONNX file; the TensorRT engine cache keys
on it), ``opset``, ``precision``, ``weights_sha256`` (so a retrained bundle re-exports) and
``test_time_flips`` (so does one whose flips were changed).
Exports are atomic (temporary file + rename, under a lock file) so Ray actors that export on the
fly at the same time never see half a file or lose each other's manifest update.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import io
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from models.bundle import MANIFEST, WEIGHTS, Bundle, BundleError, sha256_file, update_manifest
from storage.atomic import write_bytes_atomic
from storage.cache import cache_dir

log = logging.getLogger(__name__)

OPSET = 18
INPUT_NAME = "pixels"
OUTPUT_NAME = "probability"
PRECISIONS = ("fp32", "fp16", "int8")
ARTIFACT_KEYS = {"fp32": "onnx", "fp16": "onnx_fp16", "int8": "onnx_int8"}
FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
CHIP_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class ExportError(ValueError):
    """An ONNX export or quantisation could not be done (with the input that was wrong)."""


def onnx_path(bundle: Bundle, precision: str = "fp32", *, export: bool = True) -> Path:
    """Path of the bundle's up-to-date ONNX model of ``precision``, exporting it first if needed.

    fp32 and fp16 are exported on the fly when absent or stale (exported from other weights);
    int8 needs calibration chips, so it must come from ``whalescan export --precision int8``.
    """
    _check_precision(precision)
    found = _current(bundle, precision)
    if found is not None:
        return found
    if not export:
        raise ExportError(f"{str(bundle.path)!r}: no up-to-date {FILES[precision]} in the bundle")
    if precision == "int8":
        raise ExportError(
            f"{str(bundle.path)!r}: no int8 ONNX model; make one with "
            "`whalescan export BUNDLE --format onnx --precision int8 --calib-chips DIR`"
        )
    return export_onnx(bundle, precision, force=False)


def export_onnx(
    bundle: Bundle,
    precision: str = "fp32",
    *,
    calib_chips: str | Path | None = None,
    max_calib_chips: int = 512,
    force: bool = True,
) -> Path:
    """Export (or re-export) the scorer as ONNX of ``precision`` into the bundle; return its path.

    ``calib_chips`` (int8 only): a directory searched recursively for chip images (PNG, JPEG,
    TIFF); up to ``max_calib_chips`` of them, evenly spread in sorted order, calibrate the
    activation ranges. Writes ``bundle.json`` ``artifacts`` when the bundle dir is writable;
    otherwise the file goes to a per-weights folder of the per-user cache (:func:`artifact_dir`).
    """
    _check_precision(precision)
    if precision == "int8" and calib_chips is None:
        raise ExportError("int8 export needs calibration chips: pass --calib-chips DIR")
    fp32 = onnx_path(bundle, "fp32") if precision == "int8" else None  # before the lock
    directory = artifact_dir(bundle)
    target = directory / FILES[precision]
    with directory_lock(directory):
        if not force and (found := _current(bundle, precision)) is not None:
            return found  # another process exported it while this one waited for the lock
        if fp32 is not None:
            with _temp_path(target) as tmp:
                _quantize_int8(fp32, tmp, bundle, Path(calib_chips), max_calib_chips)
                _publish(tmp, target, bundle)
        else:
            with _temp_path(target) as tmp:
                _export_torch(bundle, precision, tmp)
                _publish(tmp, target, bundle)
        entry = {
            "file": target.name,
            "sha256": sha256_file(target),
            "opset": OPSET,
            "precision": precision,
            "weights_sha256": bundle.weights_sha256,
            "test_time_flips": bundle.test_time_flips,
        }
        if precision == "int8":
            entry["calibration"] = {"chips_dir": str(calib_chips), "max_chips": max_calib_chips}
        if directory == bundle.path:
            artifacts = {**_disk_artifacts(bundle), ARTIFACT_KEYS[precision]: entry}
            update_manifest(bundle, artifacts=artifacts)
        else:
            side = json.dumps(entry, indent=2) + "\n"
            write_bytes_atomic(directory / f"{target.name}.json", side.encode())
    log.info("exported %s (%s, sha256 %s…)", target, precision, entry["sha256"][:12])
    return target


def artifact_dir(bundle: Bundle) -> Path:
    """Where exported artefacts go: the bundle dir, or a per-weights folder of the per-user cache
    (``$XDG_CACHE_HOME/whalescan/artifacts/<weights sha256[:16]>``) if the bundle is read-only."""
    if os.access(bundle.path, os.W_OK):
        return bundle.path
    d = cache_dir("artifacts") / bundle.weights_sha256[:16]
    d.mkdir(parents=True, exist_ok=True)
    log.warning("bundle %s is read-only; exported artefacts go to %s", bundle.path, d)
    return d


def artifact_sha256(bundle: Bundle, precision: str = "fp32") -> str:
    """sha256 of the bundle's up-to-date ONNX of ``precision`` (exporting fp32/fp16 if needed)."""
    path = onnx_path(bundle, precision)
    entry = _entry(bundle, precision)
    return entry["sha256"] if entry else sha256_file(path)


# --- torch → ONNX -------------------------------------------------------------------------------


def export_module(bundle: Bundle, precision: str = "fp32"):
    """The torch module that is exported: the scorer, with fp16 convolutions for ``fp16``."""
    import torch
    from torch import nn

    from models.scorer import build_scorer

    class Cast(nn.Module):
        def __init__(self, dtype: torch.dtype):
            super().__init__()
            self.dtype = dtype

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.to(self.dtype)

    scorer = build_scorer(bundle, "cpu")
    if precision != "fp16":
        return scorer
    normalize, fcn, probability = scorer
    half = copy.deepcopy(fcn).half()
    return nn.Sequential(
        normalize, Cast(torch.float16), half, Cast(torch.float32), probability
    ).eval()


def _export_torch(bundle: Bundle, precision: str, out: Path) -> None:
    import onnx
    import torch

    module = export_module(bundle, precision)
    s, st = bundle.input_size, bundle.output_stride
    # Distinct example sizes > 1: torch.export specialises sizes 0/1 and equal sizes may be unified.
    example = torch.rand(2, 3, s + st, s + 2 * st) * 255
    dyn = torch.export.Dim.DYNAMIC
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet):
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: dyn, 2: dyn, 3: dyn},),
                verbose=False,
            )
    except Exception as e:  # torch.export raises many unrelated types; keep the cause chained
        raise ExportError(
            f"{str(bundle.path)!r}: ONNX export of {bundle.arch!r} failed: {e}"
        ) from e
    model = program.model_proto
    _name_dynamic_dims(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def _name_dynamic_dims(model) -> None:
    """Rename the exporter's symbols (s31, s16, …) to batch/height/width throughout the graph."""
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    rename = {dims[i].dim_param: new for i, new in ((0, "batch"), (2, "height"), (3, "width"))}
    rename = {old: new for old, new in rename.items() if old}
    if not rename:
        return
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, rename)) + r")\b")
    values = [*model.graph.input, *model.graph.output, *model.graph.value_info]
    for v in values:
        for d in v.type.tensor_type.shape.dim:
            if d.dim_param:
                d.dim_param = pattern.sub(lambda m: rename[m.group(1)], d.dim_param)
    out_dims = model.graph.output[0].type.tensor_type.shape.dim
    for d, name in zip(out_dims[1:], ("out_height", "out_width"), strict=False):
        if d.dim_param and d.dim_param not in rename.values():
            d.dim_param = name


# --- int8 (Q/DQ) --------------------------------------------------------------------------------


def chip_files(directory: Path, limit: int) -> list[Path]:
    """Up to ``limit`` chip images under ``directory``, evenly spread over the sorted list."""
    if not directory.is_dir():
        raise ExportError(f"{str(directory)!r}: calibration chips dir does not exist")
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in CHIP_SUFFIXES)
    if not files:
        raise ExportError(
            f"{str(directory)!r}: no chip images ({', '.join(CHIP_SUFFIXES)}) for calibration"
        )
    if len(files) > limit:
        idx = np.linspace(0, len(files) - 1, limit).round().astype(int)
        files = [files[i] for i in idx]
    return files


def load_chips(files: list[Path], size: int) -> Iterator[np.ndarray]:
    """Each file as float32 (1, 3, size, size) pixels 0..255 (RGB; resized if not ``size``²)."""
    from PIL import Image

    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert("RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.BILINEAR)
                a = np.asarray(im, dtype=np.float32)
        except OSError as e:
            raise ExportError(f"{str(f)!r}: unreadable calibration chip ({e})") from e
        yield a.transpose(2, 0, 1)[None]


def _quantize_int8(src: Path, out: Path, bundle: Bundle, chips_dir: Path, limit: int) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    files = chip_files(chips_dir, limit)

    class ChipReader(CalibrationDataReader):
        """Feeds chips in batches of 16 as ``{"pixels": (B, 3, S, S)}``."""

        def __init__(self) -> None:
            self._chips = load_chips(files, bundle.input_size)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = [c for _, c in zip(range(16), self._chips, strict=False)]
            return {INPUT_NAME: np.concatenate(batch)} if batch else None

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".quant.") as work:
        pre = Path(work) / "pre.onnx"
        quant_pre_process(str(src), str(pre))
        quantize_static(
            str(pre),
            str(out),
            ChipReader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["Conv"],
            calibrate_method=CalibrationMethod.MinMax,
            # TensorRT's explicit quantisation: symmetric int8 (zero point 0), float bias.
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "QuantizeBias": False,
            },
        )
    log.info("int8 calibrated on %d chips from %s", len(files), chips_dir)


# --- bookkeeping ---------------------------------------------------------------------------------


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ExportError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")


def _disk_artifacts(bundle: Bundle) -> dict[str, Any]:
    """``artifacts`` as bundle.json says now (another process may have added some)."""
    try:
        return dict(json.loads((bundle.path / MANIFEST).read_text()).get("artifacts") or {})
    except (OSError, json.JSONDecodeError) as e:
        raise BundleError(f"{str(bundle.path / MANIFEST)!r}: unreadable ({e})") from e


def _entry(bundle: Bundle, precision: str) -> dict[str, Any] | None:
    directory = artifact_dir(bundle)
    if directory == bundle.path:
        return _disk_artifacts(bundle).get(ARTIFACT_KEYS[precision])
    side = directory / f"{FILES[precision]}.json"
    try:
        return json.loads(side.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError):
        return None  # damaged (e.g. written by an older whalescan that died): export again


def _current(bundle: Bundle, precision: str) -> Path | None:
    """The artefact's path if it exists, matches its recorded sha256 and the bundle's weights and
    test-time flips (editing ``test_time_flips`` in bundle.json re-exports)."""
    entry = _entry(bundle, precision)
    if (
        not entry
        or entry.get("weights_sha256") != bundle.weights_sha256
        or entry.get("test_time_flips", 1) != bundle.test_time_flips
    ):
        return None
    path = artifact_dir(bundle) / entry["file"]
    if not path.is_file() or sha256_file(path) != entry.get("sha256"):
        return None
    return path


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``directory`` (one exporter/builder at a time, across
    processes: Ray actors on one node that find the same artefact missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _publish(tmp: Path, target: Path, bundle: Bundle) -> None:
    """Give ``tmp`` the weights file's permissions (mkstemp makes 0600) and rename it in place."""
    shutil.copymode(bundle.path / WEIGHTS, tmp)
    os.replace(tmp, target)


@contextlib.contextmanager
def _temp_path(target: Path) -> Iterator[Path]:
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)
