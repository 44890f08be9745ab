"""The bundle cache under concurrency and crashes: real processes (spawn), real tars, real S3."""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import signal
import tarfile
import threading
from pathlib import Path

import pytest

from models.bundle import BundleError, load_bundle, save_bundle
from storage.cache import cache_dir, cache_root

N_PROCS = 5


def _big_bundle(path: Path, seed: int = 0, features: int = 1500) -> Path:
    """A bundle whose weights are ~``features``² × 4 bytes, so that writing them takes a while."""
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Linear(features, features)
    save_bundle(
        path, model, arch="whalenet", arch_args={}, input_size=64, mean=[0.5] * 3,
        std=[0.25] * 3, classes=["face", "not_face"], positive_class="face", output_stride=4,
        receptive_field=64,
    )  # fmt: skip
    return path


def _flat_tar(bundle_dir: Path, out: Path) -> Path:
    """bundle.json first, then the weights: the order in which a half-extracted tar misleads."""
    with tarfile.open(out, "w") as tf:
        for name in ("bundle.json", "model.safetensors"):
            tf.add(bundle_dir / name, arcname=name)
    return out


def _load_after(barrier, path: str) -> str:
    barrier.wait()
    try:
        return load_bundle(path).weights_sha256
    except BundleError as err:
        return f"error: {err}"


def _run_together(target, *args) -> list[str]:
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(N_PROCS)
        with ctx.Pool(N_PROCS) as pool:
            return pool.starmap(target, [(barrier, *args)] * N_PROCS)


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    return _big_bundle(tmp_path_factory.mktemp("big") / "bundle")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """An empty per-user cache for this test (inherited by the processes it spawns)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "whalescan"


def test_cache_is_per_user_under_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "mine"))
    assert cache_dir("bundles") == tmp_path / "mine" / "whalescan" / "bundles"
    assert cache_dir("bundles").is_dir()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "whalescan"
    with pytest.raises(ValueError, match="cache kind"):
        cache_dir("../x")


def test_processes_extracting_one_tar_at_once_all_load_it(big, tmp_path, fresh_cache):
    tar = _flat_tar(big, tmp_path / "bundle.tar")
    want = load_bundle(big).weights_sha256
    assert _run_together(_load_after, str(tar)) == [want] * N_PROCS
    entries = list((fresh_cache / "bundles").iterdir())
    assert len(entries) == 1 and not entries[0].name.startswith(".")  # no temporaries left


def _die_while_extracting(path: str) -> None:
    """Extract like a real run, but SIGKILL this process half way through the weights file."""
    original = tarfile.TarFile.makefile

    def makefile(self, tarinfo, targetpath):
        if tarinfo.name.endswith("model.safetensors"):
            src = self.fileobj
            src.seek(tarinfo.offset_data)
            with open(targetpath, "wb") as f:
                f.write(src.read(tarinfo.size // 2))
                f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, tarinfo, targetpath)

    tarfile.TarFile.makefile = makefile
    load_bundle(path)


def test_a_writer_killed_mid_extraction_does_not_break_the_cache(big, tmp_path, fresh_cache):
    tar = _flat_tar(big, tmp_path / "bundle.tar")
    proc = mp.get_context("spawn").Process(target=_die_while_extracting, args=(str(tar),))
    proc.start()
    proc.join(120)
    assert proc.exitcode == -signal.SIGKILL
    (left,) = (fresh_cache / "bundles").iterdir()  # only the dead writer's hidden temporary
    assert left.name.startswith(".tmp-")
    assert load_bundle(tar).weights_sha256 == load_bundle(big).weights_sha256
    os.utime(left, (0, 0))  # a day later, the next run sweeps it away
    assert cache_dir("bundles").is_dir() and not left.exists()


def test_a_damaged_cache_entry_is_rebuilt_once(big, tmp_path, fresh_cache):
    tar = _flat_tar(big, tmp_path / "bundle.tar")
    first = load_bundle(tar)
    (first.path / "model.safetensors").write_bytes(b"not weights")  # damaged on disk
    again = load_bundle(tar)
    assert again.weights_sha256 == first.weights_sha256
    bad = tmp_path / "bad.tar"  # a tar whose weights really are wrong still fails, clearly
    with tarfile.open(bad, "w") as tf:
        tf.add(big / "bundle.json", arcname="bundle.json")
        info = tarfile.TarInfo("model.safetensors")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(bad)


def test_processes_fetching_one_s3_bundle_at_once_all_load_it(big, tmp_path, fresh_cache, bucket):
    from storage.s3 import s3_client

    tar = _flat_tar(big, tmp_path / "bundle.tar")
    s3_client().upload_file(str(tar), bucket, "models/bundle.tar")
    uri = f"s3://{bucket}/models/bundle.tar"
    want = load_bundle(big).weights_sha256
    assert _run_together(_load_after, uri) == [want] * N_PROCS
    (download,) = (fresh_cache / "bundles").glob("*.tar")
    download.write_bytes(download.read_bytes()[: download.stat().st_size // 2])  # truncated
    assert load_bundle(uri).weights_sha256 == want  # fetched again, not failing forever


def test_save_bundle_replaces_atomically_under_a_reader(tmp_path):
    out = _big_bundle(tmp_path / "bundle", seed=0, features=400)
    errors: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                load_bundle(out)
            except (BundleError, OSError) as err:
                errors.append(str(err))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for seed in range(1, 15):
            _big_bundle(out, seed=seed, features=400)
    finally:
        stop.set()
        reader.join()
    assert errors == []
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no temporaries left beside it


def _export_after(barrier, path: str) -> str:
    from models.export import artifact_sha256

    barrier.wait()
    return artifact_sha256(load_bundle(path))


def test_processes_exporting_one_onnx_at_once_agree(tmp_path, fresh_cache):
    import json

    from tests.helpers import untrained_bundle

    bundle = untrained_bundle(tmp_path / "bundle")
    shas = _run_together(_export_after, str(bundle))
    assert len(set(shas)) == 1 and len(shas[0]) == 64
    recorded = json.loads((bundle / "bundle.json").read_text())["artifacts"]
    assert [entry["sha256"] for entry in recorded.values()] == shas[:1]
    assert load_bundle(bundle).weights_sha256  # bundle.json still whole and matching
    leftovers = [p.name for p in bundle.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
