"""Killed drivers, failed reruns and compaction: the ledger and every reader agree afterwards.

Real processes (a ``whalescan detect`` SIGKILLed mid-run), real GeoTIFFs, DuckDB, GeoPandas and
pyarrow reading the reports back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.dataset as pads
import pytest

from jobs.detect import DetectConfig, run_detect
from reports.compact import compact
from reports.ledger import read_ledger, read_scenes, write_scene_result
from reports.run import Attempt, RunStamp, SceneRun
from reports.sql import load_query
from reports.store import open_store
from tests.helpers import noise_scene, untrained_bundle
from tiling.scene import Scene

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return untrained_bundle(tmp_path_factory.mktemp("bundle") / "b")


def _detect_cmd(bundle, scenes, out, *extra) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", "detect", str(bundle), *map(str, scenes),
            "--out", str(out), "--workers", "0", "--backend", "torch", "--no-progress", *extra]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}


def _visible_everywhere(reports: Path) -> tuple[int, int]:
    """(scene rows, detection rows) as DuckDB's globs, GeoPandas and pyarrow discovery see them;
    raises if any reader meets a partial or foreign file."""
    import geopandas as gpd

    con = duckdb.connect()
    scenes = con.sql(
        f"SELECT count(*) FROM read_parquet('{reports}/scenes/dt=*/*.parquet', union_by_name = true)"
    ).fetchall()[0][0]
    dets = 0
    if list(reports.glob("detections/dt=*/*.parquet")):
        dets = con.sql(
            f"SELECT count(*) FROM read_parquet('{reports}/detections/dt=*/*.parquet')"
        ).fetchall()[0][0]
        assert len(gpd.read_parquet(reports / "detections")) == dets
    found = pads.dataset(reports / "scenes", format="parquet", partitioning="hive")
    assert found.count_rows() == scenes
    return scenes, dets


def _scan_cmd(bundle, source, out) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", "scan", str(source), "--bundle", str(bundle),
            "--reports", str(out), "--workers", "0", "--backend", "torch"]  # fmt: skip


@pytest.mark.parametrize("command", ["detect", "scan"])
def test_a_killed_driver_rerun_finishes_only_the_missing_scenes(bundle, tmp_path, command):
    source = tmp_path / "drops"
    source.mkdir()
    scenes = [noise_scene(source / f"s{i}.tif", 900, 700, seed=i) for i in range(5)]
    out = tmp_path / "reports"
    cmd = (
        _detect_cmd(bundle, scenes, out) if command == "detect" else _scan_cmd(bundle, source, out)
    )
    proc = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 300
    while not list(out.glob("scenes/dt=*/*.parquet")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # the driver dies at once: no handler, no clean-up
    proc.wait()

    rows_before, _ = _visible_everywhere(out)  # no half-written file shows anywhere
    first = read_scenes(open_store(out))
    assert 1 <= rows_before < len(scenes), "the kill must land mid-run"

    again = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    if command == "detect":
        assert f"{rows_before} already done" in again.stdout
    else:
        assert f"to detect: {len(scenes) - rows_before} " in again.stdout
        assert f"unchanged: {rows_before};" in again.stdout

    rows, dets = _visible_everywhere(out)
    ledger = read_scenes(open_store(out)).to_pylist()
    assert rows == len(ledger) == len(scenes)  # one attempt per scene: the done ones kept theirs
    assert len({r["scene_key"] for r in ledger}) == len(scenes)
    kept = {r["scene_key"]: r["run_id"] for r in first.to_pylist()}
    assert all(r["run_id"] == kept[r["scene_key"]] for r in ledger if r["scene_key"] in kept)
    assert dets == sum(r["detections"] for r in ledger) > 0
    ids = duckdb.sql(
        f"SELECT count(DISTINCT detection_id) FROM read_parquet('{out}/detections/*/*.parquet')"
    ).fetchall()[0][0]
    assert ids == dets  # no duplicate rows


def _damage_keeping_version(path: Path) -> None:
    """Corrupt the TIFF header but keep size and mtime: the same scene version, now unreadable."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.write(b"\0" * 16)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _run(bundle, scene, out, **kw):
    config = DetectConfig(bundle=str(bundle), out=str(out), scenes=(str(scene),), workers=0,
                          backend="torch", progress=False, **kw)  # fmt: skip
    (outcome,) = run_detect(config)
    return outcome


def test_a_failed_rerun_after_a_success_leaves_no_detections_that_contradict_it(bundle, tmp_path):
    scene = noise_scene(tmp_path / "scene.tif", 700, 500, seed=3)
    out = tmp_path / "reports"
    ok = _run(bundle, scene, out)
    assert ok.status == "ok" and ok.detections > 0
    assert _run(bundle, scene, out).reused  # the same command again does not redo it
    detections = sorted(out.glob("detections/*/*.parquet"))
    saved = detections[0].read_bytes()

    _damage_keeping_version(scene)
    failed = _run(bundle, scene, out, rerun=True)
    assert failed.status == "failed"
    store = open_store(out)
    (latest,) = read_ledger(store).to_pylist()
    assert latest["status"] == "failed"  # the latest attempt wins…
    assert len(read_scenes(store)) == 2  # …and the earlier ok attempt is kept as history
    assert list(out.glob("detections/*/*.parquet")) == []  # its detections went with it

    # A driver killed between the failed row and the delete: the stale file is back, and every
    # reader still follows the ledger.
    detections[0].parent.mkdir(parents=True, exist_ok=True)
    detections[0].write_bytes(saved)
    for name in ("top_detections", "whales_per_scene", "detections_in_bbox"):
        assert duckdb.sql(load_query(name, reports=out)).fetchall() == [], name
    per_day = duckdb.sql(load_query("whales_per_day", reports=out)).fetchall()
    assert [(r[1], r[2], r[4]) for r in per_day] == [(0, 1, 0)]  # ok, failed, whales
    (failure,) = duckdb.sql(load_query("failed_scenes", reports=out)).fetchall()
    assert failure[0] == str(scene)


def _write_attempt(store, i: int, n: int) -> None:
    """Attempt ``n`` (failed) of scene ``i``: run ``run-<n>-<i>``, finished ``n`` s after noon."""
    scene = Scene(f"s3://b/s{i}.tif", "v1", datetime(2024, 5, 1 + i % 3, tzinfo=UTC), 10, 10)
    stamp = RunStamp(f"run-{n:06d}-{i}", "m" * 64, "fcn", "torch:cpu", key_parameters={"t": 0.5})
    finished = datetime(2024, 6, 1, 12, tzinfo=UTC) + timedelta(seconds=n)
    write_scene_result(store, SceneRun(scene, stamp), Attempt("failed", "boom", 1.0, finished,
                                                              finished))  # fmt: skip


def test_compaction_keeps_each_keys_latest_attempt_and_loses_none_written_meanwhile(tmp_path):
    store = open_store(tmp_path / "reports")
    for n in range(3):  # three attempts of nine keys over three dt= partitions
        for i in range(9):
            _write_attempt(store, i, n)
    before = read_ledger(store).to_pylist()
    assert len(read_scenes(store)) == 27 and len(before) == 9

    written: dict[int, str] = {}
    stop = threading.Event()

    def keep_writing() -> None:
        n = 3
        while not stop.is_set():
            for i in range(9):
                _write_attempt(store, i, n)
                written[i] = f"run-{n:06d}-{i}"
            n += 1

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        summaries = [compact(store) for _ in range(4)]
    finally:
        stop.set()
        writer.join()
    assert sum(s.partitions for s in summaries) >= 3
    latest = {r["scene_uri"]: r["run_id"] for r in read_ledger(store).to_pylist()}
    assert latest == {f"s3://b/s{i}.tif": written[i] for i in range(9)}  # nothing lost

    final = compact(store)
    assert final.rows_out == 9 and len(read_scenes(store)) == 9
    segments = sorted(p.name for p in (tmp_path / "reports" / "scenes").rglob("*.parquet"))
    assert len(segments) == 3 and all(n.startswith("compacted-") for n in segments)
    q = load_query("failed_scenes", reports=tmp_path / "reports")  # SQL reads segments alike
    assert sorted(r[4] for r in duckdb.sql(q).fetchall()) == sorted(written.values())


def test_other_parameters_are_another_result_never_an_overwrite(bundle, tmp_path):
    scene = noise_scene(tmp_path / "scene.tif", 700, 500, seed=5)
    out = tmp_path / "reports"
    default = _run(bundle, scene, out)
    (first_file,) = out.glob("detections/*/*.parquet")
    first_bytes = first_file.read_bytes()

    lower = _run(bundle, scene, out, threshold=0.3)  # not "already done", not an overwrite
    assert not lower.reused and lower.status == "ok"
    assert lower.detections >= default.detections  # a lower threshold keeps as many or more
    assert first_file.read_bytes() == first_bytes  # the default result is untouched
    assert len(list(out.glob("detections/*/*.parquet"))) == 2  # two keys, two files
    ledger = read_ledger(open_store(out)).to_pylist()
    assert sorted(r["detections"] for r in ledger) == [default.detections, lower.detections]
    thresholds = sorted(json.loads(r["parameters"])["threshold"] for r in ledger)
    assert thresholds == [0.3, 0.5]  # the rows say which settings made them

    # Same settings again: both are done; a setting outside the key (region size) is too.
    assert _run(bundle, scene, out).reused and _run(bundle, scene, out, threshold=0.3).reused
    assert _run(bundle, scene, out, region_size=256).reused
    assert not _run(bundle, scene, out, scale="none").reused  # scaling is part of the key

    # A scan with another threshold plans the scene as new work; with the default, as done.
    from jobs.scan import ScanConfig, plan_scan

    source = scene.parent
    assert plan_scan(ScanConfig(str(source), str(bundle), str(out))).unchanged == 1
    other = plan_scan(ScanConfig(str(source), str(bundle), str(out), threshold=0.7))
    assert [p.ref.uri for p in other.todo] == [str(scene)] and other.unchanged == 0
