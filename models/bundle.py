"""The model bundle: weights (safetensors, never pickle) + ``bundle.json`` that describes them.

A bundle is a directory (or a ``.tar`` of one) holding ``model.safetensors`` and ``bundle.json``,
and optionally exported artefacts (``model.onnx``, ``engines/``). It is the course's
deploy.prototxt + .caffemodel + mean image, made safe and self-describing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import tarfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from storage.atomic import replace_dir, temp_dir, write_bytes_atomic
from storage.cache import cache_dir, cached_dir, evict, fetch_cached
from storage.s3 import StorageError
from storage.uri import S3Uri, is_s3

WEIGHTS = "model.safetensors"
MANIFEST = "bundle.json"
FORMAT_VERSION = 1
KINDS = ("classifier", "detector")
_REQUIRED = (
    "format_version", "arch", "arch_args", "input_size", "mean", "std", "classes",
    "positive_class", "output_stride", "receptive_field", "weights_sha256",
)  # fmt: skip


# The view counts a detector scorer may average (models.detector.FlipAverage.COUNTS; defined here
# too because models.detector needs torch and bundle.json is read without it).
TEST_TIME_VIEWS = (1, 2, 4, 8)


class BundleError(ValueError):
    """A model bundle is missing, corrupt, or does not match its description."""


@dataclass(frozen=True)
class Bundle:
    """What ``bundle.json`` says, validated. ``path`` is the bundle directory.

    ``mean``/``std`` are per-channel (R, G, B) on the 0..1 scale of 8-bit pixels / 255.
    ``object_size_px`` is the side of a detection box in pixels (the face size seen in training).
    ``temperature`` divides logits before softmax so scores are calibrated on ``val/``.
    ``kind``: ``"classifier"`` (chips → scores; detect modes fcn/sliding) or ``"detector"`` (the
    approach-3 box detector, :mod:`models.detector`; mode boxes), where ``input_size`` is the
    receptive field and ``max_box_px`` bounds the decoded box sides.
    ``test_time_flips`` (detectors): the scorer averages the network over 1, 2, 4 or 8 views
    (mirrors and quarter turns, :class:`models.detector.FlipAverage`); 1 in bundles written
    before it existed.
    ``second_look`` (detectors): ``{"folder", "threshold"}`` of the chip classifier inside the
    bundle that re-scores each candidate (:mod:`models.second_look`); empty without one.
    ``gsd_m`` is the ground sample distance (metres per pixel) the model was trained at; None
    when unknown (bundles written before it was recorded): detection then scores native pixels.
    """

    path: Path
    arch: str
    arch_args: dict[str, Any]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classes: tuple[str, ...]
    positive_class: str
    output_stride: int
    receptive_field: int
    weights_sha256: str
    object_size_px: float | None = None
    temperature: float = 1.0
    gsd_m: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    artifacts: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    kind: str = "classifier"
    max_box_px: float | None = None
    test_time_flips: int = 1
    second_look: dict[str, Any] = field(default_factory=dict)

    @property
    def positive_index(self) -> int:
        return self.classes.index(self.positive_class)

    @property
    def box_size_px(self) -> float:
        """Detection box side: the trained object size, else the window."""
        return float(self.object_size_px or self.input_size)

    def manifest(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        return d


def save_bundle(out_dir: str | Path, model, **meta: Any) -> Bundle:
    """Write ``model``'s weights and ``meta`` (the :class:`Bundle` fields but path/hash) to a dir.

    Writes to a temporary sibling and swaps it into place, so a crash leaves no half bundle and
    an existing bundle at ``out_dir`` is replaced atomically.
    """
    import torch
    from safetensors.torch import save_file

    out = Path(out_dir)
    state = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
    }
    with temp_dir(out) as tmp:
        save_file(state, str(tmp / WEIGHTS))
        meta = {
            "versions": _versions(),
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **meta,
            "weights_sha256": sha256_file(tmp / WEIGHTS),
        }
        bundle = _from_manifest(tmp, {"format_version": FORMAT_VERSION, **meta})
        _write_manifest(tmp, bundle)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a bundle is shared like any model file
        replace_dir(tmp, out)  # readers of ``out`` see the old bundle or the new one, never neither
    return replace(bundle, path=out)


def update_manifest(bundle: Bundle, **changes: Any) -> Bundle:
    """Rewrite ``bundle.json`` with ``changes`` (e.g. new ``artifacts``) and return the new Bundle."""
    new = replace(bundle, **changes)
    _write_manifest(bundle.path, new)
    return new


def load_bundle(path: str | Path) -> Bundle:
    """Read and validate a bundle directory or ``.tar``; raise :class:`BundleError` on any problem."""
    if is_s3(path):
        try:
            path = fetch_cached(S3Uri.parse(path), "bundles", suffix=".tar")
        except (StorageError, ValueError) as e:
            raise BundleError(f"{str(path)!r}: cannot fetch model bundle ({e})") from e
    p = Path(path)
    if not p.exists():
        raise BundleError(f"{str(p)!r}: no such model bundle")
    if p.is_file():
        if not tarfile.is_tarfile(p):
            raise BundleError(f"{str(p)!r}: not a bundle directory or .tar")
        try:
            return _load_dir(_bundle_root(_extract(p)))
        except BundleError:
            # A damaged cache entry must not fail every later run: drop it and unpack again;
            # if the tar itself is bad, the second try raises the same error.
            evict(_extract(p, cached_only=True))
            return _load_dir(_bundle_root(_extract(p)))
    return _load_dir(p)


def _load_dir(p: Path, attempts: int = 3) -> Bundle:
    """Read and check a bundle directory; if it was replaced (``save_bundle``) while being read,
    so that the manifest and weights came from different versions, read it again."""
    for _ in range(attempts - 1):
        ino = _manifest_inode(p)
        try:
            return _read_dir(p)
        except (BundleError, FileNotFoundError):
            if ino is None or _manifest_inode(p) in (ino, None):
                raise  # not replaced meanwhile: the bundle itself is bad
    return _read_dir(p)


def _manifest_inode(p: Path) -> int | None:
    try:
        return (p / MANIFEST).stat().st_ino
    except FileNotFoundError:
        return None


def _read_dir(p: Path) -> Bundle:
    for name in (MANIFEST, WEIGHTS):
        if not (p / name).is_file():
            raise BundleError(f"{str(p)!r}: bundle has no {name}")
    try:
        manifest = json.loads((p / MANIFEST).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{str(p / MANIFEST)!r}: not valid JSON ({e})") from e
    bundle = _from_manifest(p, manifest)
    digest = sha256_file(p / WEIGHTS)
    if digest != bundle.weights_sha256:
        raise BundleError(
            f"{str(p / WEIGHTS)!r}: sha256 {digest[:12]}… does not match bundle.json "
            f"({bundle.weights_sha256[:12]}…); the weights are corrupt or from another model"
        )
    return bundle


def load_model(bundle: Bundle, device: str = "cpu"):
    """Build the bundle's classifier or detector and load its weights (eval mode, float32)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if bundle.kind == "detector":
        from models.detector import build_detector

        model = build_detector(bundle.arch, **bundle.arch_args)
    else:
        from models.nets import build_classifier

        model = build_classifier(
            bundle.arch, bundle.input_size, num_classes=len(bundle.classes), **bundle.arch_args
        )
    try:
        state = load_file(str(bundle.path / WEIGHTS), device=device)
    except (SafetensorError, OSError) as e:
        raise BundleError(f"{str(bundle.path / WEIGHTS)!r}: unreadable safetensors ({e})") from e
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BundleError(
            f"{str(bundle.path)!r}: weights do not fit arch {bundle.arch!r} "
            f"with input_size {bundle.input_size}: {e}"
        ) from e
    if (model.output_stride, model.receptive_field) != (
        bundle.output_stride,
        bundle.receptive_field,
    ):
        raise BundleError(
            f"{str(bundle.path)!r}: bundle.json says stride {bundle.output_stride}/receptive field "
            f"{bundle.receptive_field}, the network has {model.output_stride}/{model.receptive_field}"
        )
    return model.to(device).eval()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _from_manifest(path: Path, m: dict[str, Any]) -> Bundle:
    missing = [k for k in _REQUIRED if k not in m]
    if missing:
        raise BundleError(f"{str(path)!r}: bundle.json lacks {', '.join(missing)}")
    if m["format_version"] != FORMAT_VERSION:
        raise BundleError(
            f"{str(path)!r}: bundle format {m['format_version']}, this whalescan reads {FORMAT_VERSION}"
        )
    known = set(Bundle.__dataclass_fields__) - {"path"}
    try:
        b = Bundle(path=path, **{k: v for k, v in m.items() if k in known})
        b = replace(
            b,
            mean=tuple(float(v) for v in b.mean),
            std=tuple(float(v) for v in b.std),
            classes=tuple(str(c) for c in b.classes),
        )
    except (TypeError, ValueError) as e:
        raise BundleError(f"{str(path)!r}: malformed bundle.json ({e})") from e
    if len(b.mean) != 3 or len(b.std) != 3 or min(b.std) <= 0:
        raise BundleError(f"{str(path)!r}: mean/std must be 3 values each, std > 0")
    if b.positive_class not in b.classes:
        raise BundleError(
            f"{str(path)!r}: positive_class {b.positive_class!r} not in classes {list(b.classes)}"
        )
    if b.kind not in KINDS:
        raise BundleError(f"{str(path)!r}: kind {b.kind!r}, expected one of {KINDS}")
    if b.gsd_m is not None and not (isinstance(b.gsd_m, int | float) and b.gsd_m > 0):
        raise BundleError(f"{str(path)!r}: gsd_m {b.gsd_m!r} must be metres per pixel > 0 or null")
    if b.test_time_flips not in TEST_TIME_VIEWS:
        raise BundleError(
            f"{str(path)!r}: test_time_flips {b.test_time_flips!r}, expected one of {TEST_TIME_VIEWS}"
        )
    if b.input_size < 1 or b.output_stride < 1:
        raise BundleError(f"{str(path)!r}: input_size and output_stride must be positive")
    return b


def _write_manifest(directory: Path, bundle: Bundle) -> None:
    text = json.dumps(bundle.manifest(), indent=2, sort_keys=True) + "\n"
    write_bytes_atomic(directory / MANIFEST, text.encode())


def _extract(tar_path: Path, cached_only: bool = False) -> Path:
    """The cache entry holding ``tar_path`` unpacked, keyed by its hash (data filter: no links out).

    The tree is published atomically (storage.cache), so concurrent actors and jobs never see a
    half-extracted bundle. ``cached_only``: just the entry's path, nothing unpacked.
    """
    key = sha256_file(tar_path)[:16]
    if cached_only:
        return cache_dir("bundles") / key

    def fill(tmp: Path) -> None:
        try:
            with tarfile.open(tar_path) as tf:
                tf.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError) as e:
            raise BundleError(f"{str(tar_path)!r}: unreadable bundle tar ({e})") from e

    return cached_dir("bundles", key, fill)


def _bundle_root(dest: Path) -> Path:
    """The bundle inside an unpacked tar: its top level, or the one folder a tar of a dir holds."""
    inner = [d for d in dest.iterdir() if d.is_dir()]
    if not (dest / MANIFEST).exists() and len(inner) == 1:
        return inner[0]
    return dest


def _versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("whalescan", "torchvision", "ray"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out
