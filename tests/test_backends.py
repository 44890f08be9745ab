"""Backend conformance against the torch fp32 scorer, and the TensorRT code paths that need no GPU.

Every available backend is run on the same inputs (several shapes, non-square, batch > 1) and
compared with ``build_scorer`` in fp32: fp32 paths within 1e-3 (they land near 1e-7), reduced
precision within its documented bound (``models.backends.conformance.TOLERANCE``) and with the
same detections (clear peaks above 0.5). CUDA and TensorRT tests skip, with the reason, where
there is no GPU or no TensorRT.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from models.backends import (
    BackendUnavailableError,
    available,
    chunks,
    load_backend,
)
from models.backends.conformance import TOLERANCE, agreement, peaks
from models.bundle import load_bundle, save_bundle
from models.engine_cache import (
    EngineKey,
    ShapeProfile,
    cached_engines,
    engine_path,
    find_engine,
    write_engine,
)
from models.nets import build_classifier
from models.scorer import build_scorer
from tests.helpers import untrained_bundle

SHAPES = [(1, 3, 64, 64), (2, 3, 96, 160), (3, 3, 136, 200), (1, 3, 256, 384)]
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA GPU visible to torch on this machine")
needs_openvino = pytest.mark.skipif(
    not available("openvino"), reason="openvino not installed (pip install 'whalescan[openvino]')"
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A random whalenet whose last layer is scaled ×30, so its heatmaps span ~0.1..0.9 with
    distinct peaks (a bundle straight from init sits at 0.5 ± 0.03 and has no detections)."""
    torch.manual_seed(0)
    model = build_classifier("whalenet", 64)
    with torch.no_grad():
        model.head[-1].weight.mul_(30.0)
    b = save_bundle(
        tmp_path_factory.mktemp("backends") / "b", model,
        arch="whalenet", arch_args={}, input_size=64, mean=[0.5] * 3, std=[0.25] * 3,
        classes=["face", "not_face"], positive_class="face",
        output_stride=8, receptive_field=64, object_size_px=32,
    )  # fmt: skip
    return load_bundle(b.path)


def _inputs(shape, seed=0):
    """Blocky pixels (16 px squares): structure at the scale of the net's windows."""
    n, c, h, w = shape
    rng = np.random.default_rng(seed)
    blocks = rng.uniform(0, 255, (n, c, -(-h // 16), -(-w // 16)))
    return np.kron(blocks, np.ones((1, 1, 16, 16)))[:, :, :h, :w].astype(np.float32)


@pytest.fixture(scope="module")
def references(bundle):
    model = build_scorer(bundle, "cpu")
    out = {}
    with torch.inference_mode():
        for s in SHAPES:
            out[s] = model(torch.from_numpy(_inputs(s))).numpy()
    return out


def _check(backend, references, precision):
    assert backend.precision == precision
    tol = TOLERANCE[precision]
    for shape, ref in references.items():
        out = backend(_inputs(shape))
        assert out.dtype == np.float32 and out.shape == ref.shape, shape
        a = agreement(ref, out, margin=tol if precision != "fp32" else 0.0)
        assert a.max_abs <= tol, (shape, a)
        assert a.same_detections, (shape, a)
    assert sum(int(peaks(r).sum()) for r in references.values()) > 20  # the check has teeth


# --- CPU conformance ----------------------------------------------------------------------------

CPU_FP32 = [
    ("torch", {"precision": "fp32"}),
    ("torch", {"precision": "fp32", "channels_last": False}),
    ("torch", {"precision": "fp32", "max_batch": 2}),
    ("onnxruntime", {}),
    ("onnxruntime", {"max_batch": 1}),
    pytest.param("openvino", {"precision": "fp32"}, marks=needs_openvino),
    ("auto", {}),
]


@pytest.mark.parametrize(("name", "options"), CPU_FP32, ids=lambda v: str(v))
def test_cpu_fp32_backends_match_torch_fp32(bundle, references, name, options):
    backend = load_backend(name, bundle, device="cpu", threads=1, **options)
    assert backend.device == "cpu"
    _check(backend, references, "fp32")


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("torch", {"precision": "bf16"}),
        pytest.param("openvino", {"precision": "bf16"}, marks=needs_openvino),
    ],
    ids=lambda v: str(v),
)
def test_cpu_bf16_backends_stay_within_their_bound_and_detections_agree(
    bundle, references, name, options
):
    backend = load_backend(name, bundle, device="cpu", threads=1, **options)
    _check(backend, references, "bf16")


@needs_openvino
def test_openvino_auto_reports_the_precision_it_runs(bundle, references):
    backend = load_backend("openvino", bundle, threads=1)
    assert backend.precision in ("bf16", "fp32")
    _check(backend, references, backend.precision)


def test_same_window_scores_the_same_in_any_region(bundle):
    """Tiling invariance per backend: a sub-region's heatmap equals the big region's cells."""
    x = _inputs((1, 3, 256, 384), seed=5)
    for name in ["onnxruntime", "torch"]:
        backend = load_backend(name, bundle, device="cpu", threads=1)
        full = backend(x)
        part = backend(np.ascontiguousarray(x[:, :, 64:200, 128:320]))
        np.testing.assert_allclose(part, full[:, 8 : 8 + part.shape[1], 16 : 16 + part.shape[2]],
                                   atol=1e-6)  # fmt: skip


def test_onnxruntime_int8_runs_the_qdq_model(bundle, references, tmp_path):
    from PIL import Image

    from models.export import export_onnx

    for i in range(8):
        Image.fromarray(
            _inputs((1, 3, 64, 64), seed=i)[0].transpose(1, 2, 0).astype(np.uint8)
        ).save(tmp_path / f"{i}.png")
    export_onnx(bundle, "int8", calib_chips=tmp_path)
    backend = load_backend("onnxruntime", bundle, precision="int8", threads=1)
    out = backend(_inputs(SHAPES[1]))
    assert out.shape == references[SHAPES[1]].shape
    assert np.abs(out - references[SHAPES[1]]).max() <= TOLERANCE["int8"]


# --- CUDA conformance (skip without a GPU) ------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_torch_cuda_matches_torch_cpu_fp32(bundle, references, precision):
    backend = load_backend("torch", bundle, device="cuda:0", precision=precision)
    assert backend.device == "cuda:0"
    _check(backend, references, precision)


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_matches_torch_cpu_fp32(bundle, references, precision):
    pytest.importorskip(
        "tensorrt", reason="TensorRT not installed (pip install 'whalescan[tensorrt]')"
    )
    tile = (256, 384)  # one profile covers every test shape
    backend = load_backend("tensorrt", bundle, precision=precision, tile=tile, max_batch=4)
    _check(backend, references, precision)
    assert len(backend.engine_paths) == 1 and backend.engine_paths[0].is_file()
    again = load_backend("tensorrt", bundle, precision=precision, max_batch=4)
    again(_inputs(SHAPES[-1]))
    assert again.engine_paths[0] in backend.engine_paths  # loaded from the cache, not rebuilt


# --- errors --------------------------------------------------------------------------------------


def test_torch_threads_apply_during_a_call_and_are_restored(bundle):
    import torch

    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    backend = load_backend("torch", bundle, device="cpu", threads=wanted)
    assert torch.get_num_threads() == before  # building the backend changes nothing
    seen = []
    hook = backend._fcn.register_forward_pre_hook(lambda m, a: seen.append(torch.get_num_threads()))
    backend(_inputs((1, 3, 64, 64)))
    hook.remove()
    assert seen == [wanted] and torch.get_num_threads() == before


@pytest.mark.parametrize("field", ["threads", "max_batch"])
def test_backend_options_name_a_bad_count(bundle, field):
    with pytest.raises(ValueError, match=f"backend {field} 0: expected a positive count"):
        load_backend("onnxruntime", bundle, **{field: 0})


def test_unknown_backend_names_the_choices(bundle):
    with pytest.raises(ValueError, match=r"unknown backend 'tflite'.*onnxruntime.*openvino"):
        load_backend("tflite", bundle)


def test_missing_openvino_says_how_to_install(bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` fail
    with pytest.raises(BackendUnavailableError, match=r"whalescan\[openvino\]"):
        load_backend("openvino", bundle)
    assert not available("openvino")


def test_missing_tensorrt_says_how_to_install(bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match=r"backend 'tensorrt'.*whalescan\[tensorrt\]"):
        load_backend("tensorrt", bundle)


def test_bad_precisions_and_devices_are_rejected(bundle):
    with pytest.raises(ValueError, match="needs CUDA"):
        load_backend("torch", bundle, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="torch precision 'fp8'"):
        load_backend("torch", bundle, device="cpu", precision="fp8")
    with pytest.raises(ValueError, match="runs on 'cpu'"):
        load_backend("onnxruntime", bundle, device="cuda:0")
    with pytest.raises(ValueError, match=r"input shape \(3, 64, 64\)"):
        load_backend("onnxruntime", bundle)(np.zeros((3, 64, 64), np.float32))


@pytest.mark.skipif(CUDA, reason="checks the error on a machine without a GPU")
def test_torch_on_missing_cuda_is_unavailable(bundle):
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        load_backend("torch", bundle, device="cuda:0")


# --- auto ----------------------------------------------------------------------------------------


def test_auto_rule(monkeypatch):
    from models.backends import auto

    assert auto.choose("cpu") == ("onnxruntime", {"device": "cpu"})
    monkeypatch.setattr(auto, "available", lambda name: False)
    assert auto.choose("cuda:1") == ("torch", {"device": "cuda:1"})
    monkeypatch.setattr(auto, "available", lambda name: name == "tensorrt")
    assert auto.choose("cuda:0") == ("tensorrt", {"device": "cuda:0"})


def test_auto_without_a_visible_gpu_does_not_import_torch():
    """A CPU actor (Ray gives it CUDA_VISIBLE_DEVICES="") picks onnxruntime without torch."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, sys; from models.backends.auto import choose; "
        "print(json.dumps([choose(), 'torch' in sys.modules]))"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [["onnxruntime", {"device": "cpu"}], False]


def test_auto_records_the_concrete_backend(bundle):
    backend = load_backend("auto", bundle, device="cpu", threads=1)
    assert backend.name == "onnxruntime"


# --- TensorRT without TensorRT: profile, cache key, binding order, output shape -----------------


class FakeMode:
    INPUT, OUTPUT = "in", "out"


class FakeEngine:
    def __init__(self, tensors):
        self.tensors = tensors  # [(name, mode)]
        self.num_io_tensors = len(tensors)

    def get_tensor_name(self, i):
        return self.tensors[i][0]

    def get_tensor_mode(self, name):
        return dict(self.tensors)[name]


class FakeTensor:
    def __init__(self, shape, ptr):
        self.shape, self.ptr = tuple(shape), ptr

    def data_ptr(self):
        return self.ptr


class FakeContext:
    """Records calls; resolves the output shape like the whalenet FCN would."""

    def __init__(self, bundle, ok=True, resolve=True):
        self.calls, self.bundle, self.ok, self.resolve = [], bundle, ok, resolve
        self.shapes = {}

    def set_input_shape(self, name, shape):
        self.calls.append(("set_input_shape", name, tuple(shape)))
        self.shapes[name] = tuple(shape)
        return self.ok

    def get_tensor_shape(self, name):
        """Shape inference as an engine does it, from the network: here the torch scorer's."""
        self.calls.append(("get_tensor_shape", name))
        if not self.resolve:
            return (-1, -1, -1)
        with torch.inference_mode():
            return tuple(build_scorer(self.bundle, "cpu")(torch.zeros(self.shapes["pixels"])).shape)

    def set_tensor_address(self, name, ptr):
        self.calls.append(("set_tensor_address", name, ptr))
        return True

    def execute_async_v3(self, stream):
        self.calls.append(("execute_async_v3", stream))
        return True


def test_io_tensor_names_use_the_named_tensor_api():
    from models.backends.tensorrt_backend import io_tensor_names

    engine = FakeEngine([("pixels", FakeMode.INPUT), ("probability", FakeMode.OUTPUT)])
    assert io_tensor_names(engine, FakeMode.INPUT) == (["pixels"], ["probability"])


def test_bind_and_execute_sets_shapes_then_addresses_then_enqueues(bundle):
    from models.backends.tensorrt_backend import bind_and_execute

    ctx = FakeContext(bundle)
    allocated = []

    def empty(shape, name):
        allocated.append((shape, name))
        return FakeTensor(shape, 2000)

    out = bind_and_execute(ctx, {"pixels": FakeTensor((4, 3, 96, 160), 1000)}, ["probability"],
                           empty, stream_handle=77)  # fmt: skip
    assert allocated == [((4, 5, 13), "probability")]
    assert out["probability"].shape == (4, 5, 13)
    assert ctx.calls == [
        ("set_input_shape", "pixels", (4, 3, 96, 160)),
        ("get_tensor_shape", "probability"),
        ("set_tensor_address", "pixels", 1000),
        ("set_tensor_address", "probability", 2000),
        ("execute_async_v3", 77),
    ]


def test_bind_and_execute_reports_shape_and_run_failures(bundle):
    from models.backends.tensorrt_backend import bind_and_execute

    x = {"pixels": FakeTensor((1, 3, 64, 64), 1)}
    with pytest.raises(ValueError, match="outside the engine's optimisation profile"):
        bind_and_execute(FakeContext(bundle, ok=False), x, ["probability"], None, 0)
    with pytest.raises(RuntimeError, match="unresolved"):
        bind_and_execute(FakeContext(bundle, resolve=False), x, ["probability"], None, 0)

    class Failing(FakeContext):
        def execute_async_v3(self, stream):
            return False

    with pytest.raises(RuntimeError, match="execute_async_v3 failed"):
        bind_and_execute(Failing(bundle), x, ["probability"], lambda s, n: FakeTensor(s, 2), 0)


def test_network_flags_ask_for_a_strongly_typed_network():
    from types import SimpleNamespace

    from models.backends.tensorrt_backend import network_flags

    trt10 = SimpleNamespace(NetworkDefinitionCreationFlag=SimpleNamespace(STRONGLY_TYPED=1))
    assert network_flags(trt10) == 1 << 1
    trt_future = SimpleNamespace(NetworkDefinitionCreationFlag=SimpleNamespace())
    assert network_flags(trt_future) == 0


def test_batch_for_tile_bounds_the_pixels_per_batch():
    from models.backends.tensorrt_backend import batch_for_tile

    assert batch_for_tile((2048, 2048)) == 8
    assert batch_for_tile((64, 64)) == 64
    assert batch_for_tile((8192, 8192)) == 1


def test_shape_profile_for_region_tiles():
    p = ShapeProfile.for_tiles(64, (1024, 1536), max_batch=8)
    assert (p.min, p.opt, p.max) == ((1, 3, 64, 64), (8, 3, 1024, 1536), (8, 3, 1024, 1536))
    assert p.covers((1, 3, 64, 64)) and p.covers((8, 3, 1024, 1536)) and p.covers((3, 3, 700, 90))
    assert not p.covers((9, 3, 1024, 1024)) and not p.covers((1, 3, 1025, 64))
    assert not p.covers((1, 3, 63, 64)) and not p.covers((1, 1, 64, 64))
    assert ShapeProfile.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(ValueError, match="smaller than the model's 64 px chip"):
        ShapeProfile.for_tiles(64, (32, 64), 1)
    with pytest.raises(ValueError, match="does not hold"):
        ShapeProfile(min=(1, 3, 64, 64), opt=(1, 3, 32, 64), max=(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"expected \(N, 3, H, W\)"):
        ShapeProfile(min=(1, 64, 64), opt=(1, 3, 64, 64), max=(1, 3, 64, 64))


def _key(**changes):
    base = dict(
        onnx_sha256="a" * 64, tensorrt_version="10.13.0", gpu_name="NVIDIA H100 80GB HBM3",
        precision="fp16", profile=ShapeProfile.for_tiles(64, (2048, 2048), 8),
    )  # fmt: skip
    return EngineKey(**{**base, **changes})


def test_engine_key_changes_with_every_part():
    key = _key()
    assert key.name.startswith("fp16-") and key.name == _key().name
    others = [
        _key(onnx_sha256="b" * 64),
        _key(tensorrt_version="11.0.0"),
        _key(gpu_name="NVIDIA A10G"),
        _key(precision="int8"),
        _key(profile=ShapeProfile.for_tiles(64, (1024, 1024), 8)),
        _key(profile=ShapeProfile.for_tiles(64, (2048, 2048), 4)),
    ]
    assert len({key.digest, *(k.digest for k in others)}) == 1 + len(others)
    assert EngineKey.from_dict(json.loads(json.dumps(key.to_dict()))) == key


def test_engine_cache_write_find_and_ignore_foreign_files(tmp_path):
    b = load_bundle(untrained_bundle(tmp_path / "b"))
    big, small = _key(), _key(profile=ShapeProfile.for_tiles(64, (1024, 1024), 8))
    path = write_engine(b, big, b"engine-bytes")
    write_engine(b, small, b"small")
    assert path == engine_path(b, big) == b.path / "engines" / f"{big.name}.engine"
    assert path.read_bytes() == b"engine-bytes"
    (b.path / "engines" / "junk.json").write_text("{not json")
    assert {k for k, _ in cached_engines(b)} == {big, small}
    args = (b, "a" * 64, "10.13.0", "NVIDIA H100 80GB HBM3", "fp16")
    assert find_engine(*args, (2, 3, 900, 1000))[0] == small  # tightest cover
    assert find_engine(*args, (2, 3, 1500, 1000))[0] == big
    assert find_engine(*args, (9, 3, 64, 64)) is None
    assert find_engine(b, "a" * 64, "10.13.0", "NVIDIA A10G", "fp16", (1, 3, 64, 64)) is None


# --- shared helpers ---------------------------------------------------------------------------


def test_chunks_split_along_the_batch():
    x = np.arange(5)
    assert [c.tolist() for c in chunks(x, 2)] == [[0, 1], [2, 3], [4]]
    assert [c.tolist() for c in chunks(x, None)] == [[0, 1, 2, 3, 4]]


def test_agreement_counts_missing_and_extra_peaks():
    ref = np.full((1, 5, 5), 0.1, np.float32)
    ref[0, 2, 2] = 0.9
    out = ref.copy()
    assert agreement(ref, out).same_detections
    out[0, 2, 3] = 0.95  # the peak moves by one cell: still the same detection
    assert agreement(ref, out).same_detections
    out[0, 0, 0] = 0.8  # a new peak
    a = agreement(ref, out)
    assert (a.extra, a.missing, a.peaks_ref, a.peaks) == (1, 0, 1, 2)


def test_bench_cli_writes_rows(bundle, tmp_path):
    from jobs.cli import main

    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, [
        "bench", str(bundle.path), "--backend", "onnxruntime", "--batch-sizes", "1,4",
        "--iters", "5", "--warmup", "1", "--threads", "1", "--json", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [r["batch_size"] for r in rows] == [1, 4]
    for r in rows:
        assert {"batch_size", "latency_p50_ms", "latency_p95_ms", "throughput_tiles_per_s",
                "throughput_mp_per_s", "backend", "device"} <= set(r)  # fmt: skip
        assert r["backend"] == "onnxruntime" and r["device"] == "cpu" and r["iters"] == 5
        assert r["tile_h"] == r["tile_w"] == 64  # default tile: the chip
        assert r["latency_p95_ms"] >= r["latency_p50_ms"] > 0
    assert "onnxruntime" in result.output and "MP/s" in result.output
    bad = CliRunner().invoke(main, ["bench", str(bundle.path), "--backend", "nope"])
    assert bad.exit_code != 0 and "unknown backend 'nope'" in bad.output


# --- the whole TensorRT backend against a fake `tensorrt` module (CPU tensors) ------------------


class FakeTensorRT:
    """Stands in for the ``tensorrt`` module: records the build calls, and "engines" that run the
    torch scorer on the tensors whose addresses were set (looked up in ``memory``)."""

    __version__ = "10.99.0-fake"

    def __init__(self, bundle):
        import types

        self.bundle, self.memory, self.builds, self.executes = bundle, {}, [], 0
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level: None})
        self.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
        self.BuilderFlag = types.SimpleNamespace(TF32="tf32")
        self.TensorIOMode = FakeMode
        fake = self

        class Builder:
            def __init__(self, logger):
                self.record = {}
                fake.builds.append(self.record)

            def create_network(self, flags):
                self.record["flags"] = flags
                return types.SimpleNamespace(
                    get_input=lambda i: types.SimpleNamespace(name="pixels")
                )

            def create_builder_config(self):
                rec = self.record
                return types.SimpleNamespace(
                    set_memory_pool_limit=lambda pool, n: rec.__setitem__("pool", (pool, n)),
                    clear_flag=lambda flag: rec.setdefault("cleared", []).append(flag),
                    add_optimization_profile=lambda p: rec.__setitem__("profiles", 1),
                )

            def create_optimization_profile(self):
                rec = self.record
                return types.SimpleNamespace(
                    set_shape=lambda name, lo, opt, hi: rec.__setitem__(
                        "shape", (name, lo, opt, hi)
                    )
                )

            def build_serialized_network(self, network, config):
                return json.dumps({"max": list(self.record["shape"][3])}).encode()

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                fake.builds[-1]["onnx"] = path
                return os.path.isfile(path)

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, blob):
                json.loads(blob)
                return FakeRunEngine(fake)

        self.Builder, self.OnnxParser, self.Runtime = Builder, OnnxParser, Runtime


class FakeRunEngine(FakeEngine):
    def __init__(self, fake):
        super().__init__([("pixels", FakeMode.INPUT), ("probability", FakeMode.OUTPUT)])
        self.fake = fake

    def get_tensor_dtype(self, name):
        from types import SimpleNamespace

        return SimpleNamespace(name="FLOAT")

    def create_execution_context(self):
        fake, scorer = self.fake, build_scorer(self.fake.bundle, "cpu")

        class Context(FakeContext):
            def __init__(self):
                super().__init__(fake.bundle)
                self.addresses = {}

            def set_tensor_address(self, name, ptr):
                self.addresses[name] = ptr
                return True

            def execute_async_v3(self, stream):
                fake.executes += 1
                src, dst = (fake.memory[self.addresses[n]] for n in ("pixels", "probability"))
                with torch.inference_mode():
                    dst.copy_(scorer(src))
                return True

        return Context()


@pytest.fixture(scope="module")
def exported_bundle(bundle, tmp_path_factory):
    """The bundle with its fp32 and fp16 ONNX exported (before `tensorrt` is ever faked:
    torch.export looks the module up)."""
    import shutil

    from models.export import onnx_path

    copy = tmp_path_factory.mktemp("trt") / "b"
    shutil.copytree(bundle.path, copy)
    b = load_bundle(copy)
    for precision in ("fp32", "fp16"):
        onnx_path(b, precision)
    return load_bundle(copy)


@pytest.fixture
def fake_tensorrt(exported_bundle, monkeypatch, tmp_path):
    """A copy of the bundle, the fake module as ``tensorrt``, torch.cuda faked to run on CPU."""
    import contextlib
    import shutil
    from types import SimpleNamespace

    from models.backends import tensorrt_backend

    copy = tmp_path / "b"
    shutil.copytree(exported_bundle.path, copy)
    b = load_bundle(copy)
    fake = FakeTensorRT(b)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU 80GB")
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: SimpleNamespace(cuda_stream=42))

    def upload(self, x):
        t = torch.from_numpy(x.copy())
        fake.memory[t.data_ptr()] = t
        return t

    def empty(self, shape, dtype):
        t = torch.empty(shape, dtype=dtype)
        fake.memory[t.data_ptr()] = t
        return t

    monkeypatch.setattr(tensorrt_backend.TensorRTBackend, "_upload", upload)
    monkeypatch.setattr(tensorrt_backend.TensorRTBackend, "_empty", empty)
    tensorrt_backend._logger.cache_clear()
    yield b, fake
    tensorrt_backend._logger.cache_clear()


def test_tensorrt_backend_builds_caches_and_runs_with_a_fake_tensorrt(fake_tensorrt, references):
    b, fake = fake_tensorrt
    backend = load_backend("tensorrt", b, precision="fp32", tile=(256, 384), max_batch=2)
    (build,) = fake.builds
    assert build["flags"] == 1 << 1  # strongly typed
    assert build["shape"] == ("pixels", (1, 3, 64, 64), (2, 3, 256, 384), (2, 3, 256, 384))
    assert build["cleared"] == ["tf32"] and build["pool"][0] == "workspace"
    assert build["onnx"] == str(b.path / "model.onnx")
    (path,) = backend.engine_paths
    assert path.parent == b.path / "engines" and path.name.startswith("fp32-")
    key = json.loads(path.with_suffix(".json").read_text())
    assert key["gpu_name"] == "Fake GPU 80GB" and key["tensorrt_version"] == "10.99.0-fake"
    assert key["onnx_sha256"] == load_bundle(b.path).artifacts["onnx"]["sha256"]
    for shape, ref in references.items():
        np.testing.assert_allclose(backend(_inputs(shape)), ref, atol=1e-6)
    assert fake.executes == 1 + 1 + 2 + 1  # batch 3 split into 2 + 1 by max_batch 2
    again = load_backend("tensorrt", b, precision="fp32", max_batch=2)
    again(_inputs((1, 3, 200, 300)))  # covered by the cached engine: loaded, not rebuilt
    assert len(fake.builds) == 1 and again.engine_paths == [path]
    again(_inputs((1, 3, 512, 64)))  # outside it: a second engine, tuned for batch 1
    assert len(fake.builds) == 2
    assert fake.builds[1]["shape"] == ("pixels", (1, 3, 64, 64), (1, 3, 512, 64), (2, 3, 512, 64))
    assert "cleared" in fake.builds[1]


def test_tensorrt_fp16_uses_the_fp16_onnx_and_keeps_tf32_on(fake_tensorrt):
    b, fake = fake_tensorrt
    backend = load_backend("tensorrt", b, tile=128)  # default precision fp16
    assert backend.precision == "fp16"
    (build,) = fake.builds
    assert build["onnx"] == str(b.path / "model.fp16.onnx") and "cleared" not in build
    assert build["shape"][3] == (64, 3, 128, 128)  # batch range from batch_for_tile
    assert backend(_inputs((2, 3, 128, 128))).shape == (2, 9, 9)


def test_export_cli_builds_a_tensorrt_engine(fake_tensorrt):
    from jobs.cli import main

    b, fake = fake_tensorrt
    result = CliRunner().invoke(main, [
        "export", str(b.path), "--format", "tensorrt", "--tile", "256", "--max-batch", "4",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "model.fp16.onnx" in result.output and ".engine" in result.output
    assert fake.builds[0]["shape"][3] == (4, 3, 256, 256)
