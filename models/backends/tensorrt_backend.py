"""TensorRT backend (NVIDIA GPU, extra ``whalescan[tensorrt]``): a cached engine per shape profile.

Written against the TensorRT 10.x/11.x Python API:

* build: a strongly typed network (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``; always on
  and the flag ignored in 11.x) parsed from the bundle's ONNX by ``OnnxParser``. Precision comes
  from the model — ``model.onnx`` (fp32, TF32 off), ``model.fp16.onnx`` (fp16 convolutions) or
  ``model.int8.onnx`` (Q/DQ, calibrated on chips) — never from builder flags or calibrators,
  which TensorRT 11 removed. One optimisation profile (min/opt/max) for the region tile shape
  and batch range; ``build_serialized_network``; cached on disk (:mod:`models.engine_cache`).
* run: named I/O tensors (``num_io_tensors``/``get_tensor_name``/``get_tensor_mode``),
  ``set_input_shape``, ``set_tensor_address`` for every I/O tensor, ``execute_async_v3`` on the
  current CUDA stream. Device buffers are torch CUDA tensors (``data_ptr()``, and the stream's
  ``cuda_stream`` handle), so neither pycuda nor cuda-python is needed.

``tensorrt`` is imported only when the backend is built. The functions that do not need it
(:func:`io_tensor_names`, :func:`bind_and_execute`, the profile and cache key) are tested here against fake engine/context objects.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.backends import (
    BackendUnavailableError,
    check_input,
    check_precision,
    chunks,
    require,
)
from models.backends.options import DEFAULT_OPTIONS, BackendOptions
from models.bundle import Bundle
from models.engine_cache import (
    EngineKey,
    ShapeProfile,
    engine_dir,
    engine_path,
    find_engine,
    write_engine,
)
from models.export import artifact_sha256, directory_lock, onnx_path

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
WORKSPACE_BYTES = 4 << 30
# Without an explicit max_batch, a profile takes as many tiles as fit in 32 megapixels per batch
# (8 tiles of 2048², 64 chips of 64²), at most 64: large enough that batching pays, small enough
# that activations of the first convolution stay within a few GB.
BATCH_PIXELS = 8 * 2048 * 2048
MAX_AUTO_BATCH = 64

# TensorRT DataType names → torch dtype names (resolved lazily; torch is imported with the backend).
_TORCH_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
}


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX model or build an engine from it."""


# --- pieces that need no TensorRT (unit-tested with fakes) --------------------------------------


def io_tensor_names(engine: Any, input_mode: Any) -> tuple[list[str], list[str]]:
    """(input names, output names) of ``engine`` in engine order, via the named-tensor API.

    ``input_mode`` is ``tensorrt.TensorIOMode.INPUT`` (passed in so fakes can stand in).
    """
    inputs, outputs = [], []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        (inputs if engine.get_tensor_mode(name) == input_mode else outputs).append(name)
    return inputs, outputs


def bind_and_execute(
    context: Any,
    inputs: dict[str, Any],
    outputs: Sequence[str],
    empty: Callable[[tuple[int, ...], str], Any],
    stream_handle: int,
) -> dict[str, Any]:
    """Run one inference on ``context``; return the output buffers by name.

    ``inputs`` maps input names to device tensors (anything with ``.shape`` and ``.data_ptr()``);
    ``empty(shape, name)`` allocates an output buffer. Order matters: every input shape is set
    first, so TensorRT can resolve the output shapes; then every I/O tensor gets its address;
    then ``execute_async_v3`` enqueues the work on ``stream_handle``.
    """
    for name, tensor in inputs.items():
        if not context.set_input_shape(name, tuple(tensor.shape)):
            raise ValueError(
                f"tensorrt: input {name!r} shape {tuple(tensor.shape)} is outside "
                "the engine's optimisation profile"
            )
    result = {}
    for name in outputs:
        shape = tuple(int(d) for d in context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise RuntimeError(f"tensorrt: output {name!r} shape {shape} unresolved")
        result[name] = empty(shape, name)
    for name, tensor in (*inputs.items(), *result.items()):
        if not context.set_tensor_address(name, tensor.data_ptr()):
            raise RuntimeError(f"tensorrt: could not set the address of tensor {name!r}")
    if not context.execute_async_v3(stream_handle):
        raise RuntimeError("tensorrt: execute_async_v3 failed (see the TensorRT log)")
    return result


def batch_for_tile(tile_hw: tuple[int, int], pixels: int = BATCH_PIXELS) -> int:
    """Largest batch of ``tile_hw`` tiles within ``pixels`` (1..:data:`MAX_AUTO_BATCH`)."""
    return max(1, min(MAX_AUTO_BATCH, pixels // (int(tile_hw[0]) * int(tile_hw[1]))))


def network_flags(trt: Any) -> int:
    """Creation flags for a strongly typed network (flag deprecated and ignored in TRT 11)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


# --- pieces that need TensorRT ------------------------------------------------------------------


def build_engine(
    trt: Any, onnx_file: Path, profile: ShapeProfile, precision: str, workspace: int
) -> bytes:
    """Parse ``onnx_file`` into a strongly typed network and build a serialized engine."""
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"{str(onnx_file)!r}: TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32 (conformance ≤ 1e-3)
    opt = builder.create_optimization_profile()
    opt.set_shape(network.get_input(0).name, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(opt)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise EngineBuildError(
            f"{str(onnx_file)!r}: TensorRT build failed for profile {profile.to_dict()}"
        )
    return bytes(blob)


@functools.lru_cache(maxsize=1)
def _logger(trt: Any):
    return trt.Logger(trt.Logger.WARNING)


@dataclass
class _Loaded:
    key: EngineKey
    path: Path
    engine: Any
    context: Any
    inputs: list[str]
    outputs: list[str]


class TensorRTBackend:
    """The bundle's ONNX model as TensorRT engines on one GPU, built once and cached on disk.

    ``precision``: ``fp16`` (default), ``fp32`` or ``int8`` (needs ``whalescan export
    --format onnx --precision int8 --calib-chips DIR`` first). ``tile`` (rows, cols) and
    ``max_batch`` define the optimisation profile; with ``tile`` None the first input shape
    seen sets it. An input outside every loaded profile loads a cached engine that covers it
    or builds one (minutes; ``whalescan export --format tensorrt`` builds ahead of time).
    ``max_batch`` None sizes each profile's batch range by :func:`batch_for_tile`; batches
    beyond a profile's maximum are split.
    """

    name = "tensorrt"

    def __init__(
        self,
        bundle: Bundle,
        options: BackendOptions = DEFAULT_OPTIONS,
        tile: int | tuple[int, int] | None = None,
        workspace: int = WORKSPACE_BYTES,
    ):
        precision = check_precision(self.name, options.precision_or("fp16"), PRECISIONS)
        trt = require(self.name)
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                "backend 'tensorrt' needs an NVIDIA GPU and torch with CUDA; torch sees none"
            )
        self._trt, self._torch = trt, torch
        self.bundle = bundle
        self.device = options.device or "cuda:0"
        self.precision = precision
        self.max_batch = options.max_batch
        self.workspace = int(workspace)
        self.onnx_file = onnx_path(bundle, precision)
        self.onnx_sha256 = artifact_sha256(bundle, precision)
        self.tensorrt_version = str(trt.__version__)
        self.gpu_name = torch.cuda.get_device_name(torch.device(self.device))
        self._runtime = trt.Runtime(_logger(trt))
        self._loaded: list[_Loaded] = []
        if tile is not None:
            hw = (tile, tile) if isinstance(tile, int) else tuple(tile)
            self._load(self.profile_for(hw), exact=True)

    def profile_for(self, tile_hw: tuple[int, int], opt_batch: int | None = None) -> ShapeProfile:
        """Profile for batches of up to ``max_batch`` tiles of ``tile_hw``; kernels are tuned for
        ``opt_batch`` (default: the maximum) — a lazily built engine uses the batch it first saw,
        so FCN regions scored one at a time get batch-1 kernels."""
        batch = self.max_batch or batch_for_tile(tile_hw)
        opt = batch if opt_batch is None else max(1, min(opt_batch, batch))
        return ShapeProfile.for_tiles(self.bundle.input_size, tile_hw, batch, opt_batch=opt)

    def key_for(self, profile: ShapeProfile) -> EngineKey:
        return EngineKey(
            onnx_sha256=self.onnx_sha256,
            tensorrt_version=self.tensorrt_version,
            gpu_name=self.gpu_name,
            precision=self.precision,
            profile=profile,
        )

    @property
    def engine_paths(self) -> list[Path]:
        """The engine files loaded so far (one per profile)."""
        return [loaded.path for loaded in self._loaded]

    def _load(self, profile: ShapeProfile, exact: bool = False) -> _Loaded:
        """Load the cached engine for ``profile`` (or, unless ``exact``, any cached engine of this
        model/TensorRT/GPU/precision whose profile covers ``profile.max``), else build it."""
        key = self.key_for(profile)
        path = engine_path(self.bundle, key)
        if not path.is_file() and not exact:
            hit = find_engine(
                self.bundle, self.onnx_sha256, self.tensorrt_version, self.gpu_name,
                self.precision, profile.max,
            )  # fmt: skip
            if hit is not None:
                key, path = hit
        engine = self._deserialize(path)
        if engine is None:
            key = self.key_for(profile)
            with directory_lock(engine_dir(self.bundle)):
                path = engine_path(self.bundle, key)
                engine = self._deserialize(path)  # another process may have built it meanwhile
                if engine is None:
                    engine, path = self._build(key)
        inputs, outputs = io_tensor_names(engine, self._trt.TensorIOMode.INPUT)
        if len(inputs) != 1 or len(outputs) != 1:
            raise EngineBuildError(
                f"{str(path)!r}: expected one input and one output, got {inputs} and {outputs}"
            )
        loaded = _Loaded(key, path, engine, engine.create_execution_context(), inputs, outputs)
        self._loaded.append(loaded)
        return loaded

    def _deserialize(self, path: Path):
        if not path.is_file():
            return None
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            log.warning("cached TensorRT engine %s does not deserialize; rebuilding", path)
        return engine

    def _build(self, key: EngineKey):
        log.warning(
            "building a TensorRT %s engine for %s on %s (once; cached in the bundle)",
            self.precision, key.profile.to_dict(), self.gpu_name,
        )  # fmt: skip
        with self._torch.cuda.device(self.device):
            blob = build_engine(
                self._trt, self.onnx_file, key.profile, self.precision, self.workspace
            )
        path = write_engine(self.bundle, key, blob)
        engine = self._runtime.deserialize_cuda_engine(blob)
        if engine is None:
            raise EngineBuildError(f"{str(path)!r}: a freshly built engine does not load")
        return engine, path

    def _for_tile(self, n: int, h: int, w: int) -> _Loaded:
        for loaded in self._loaded:
            if loaded.key.profile.covers((1, 3, h, w)):
                return loaded
        return self._load(self.profile_for((h, w), opt_batch=n))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x, self.name)
        torch = self._torch
        parts = []
        with torch.cuda.device(self.device):
            stream = torch.cuda.current_stream()
            loaded = self._for_tile(x.shape[0], x.shape[2], x.shape[3])
            (name_in,), (name_out,) = loaded.inputs, loaded.outputs
            out_type = loaded.engine.get_tensor_dtype(name_out).name
            out_dtype = getattr(torch, _TORCH_DTYPES[out_type])

            def empty(shape, name):
                return self._empty(shape, out_dtype)

            for part in chunks(x, loaded.key.profile.max[0]):
                out = bind_and_execute(
                    loaded.context, {name_in: self._upload(part)}, [name_out], empty,
                    stream.cuda_stream,
                )[name_out]  # fmt: skip
                parts.append(out.float().cpu().numpy())  # .cpu() waits for the stream
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _upload(self, x: np.ndarray):
        """Host (N, 3, H, W) float32 → a device tensor (pinned staging, async copy)."""
        return self._torch.from_numpy(x).pin_memory().to(self.device, non_blocking=True)

    def _empty(self, shape: tuple[int, ...], dtype):
        return self._torch.empty(shape, dtype=dtype, device=self.device)
