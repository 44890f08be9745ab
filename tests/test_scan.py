"""``whalescan scan`` against a real S3-protocol server (moto, 127.0.0.1): ledger, failures."""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import re
import signal
import tarfile
import threading
import time

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

import jobs.scan as scan_module
from jobs.scan import ScanConfig, parse_interval, plan_scan, scan
from reports.compact import compact
from reports.ledger import read_ledger, read_scenes, write_scene_result
from reports.store import open_store
from storage.s3 import s3_client
from tests.helpers import S3_SECRET, noise_scene, untrained_bundle
from tiling.scene import resolve_scene


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> str:
    return str(untrained_bundle(tmp_path_factory.mktemp("bundle") / "whalenet"))


@pytest.fixture(scope="module")
def model_sha(bundle) -> str:
    from models.bundle import load_bundle

    return load_bundle(bundle).weights_sha256


@pytest.fixture(scope="module")
def tif_bytes(tmp_path_factory) -> bytes:
    return noise_scene(tmp_path_factory.mktemp("scene") / "s.tif", 160, 128, seed=1).read_bytes()


def put(bucket: str, key: str, body: bytes) -> str:
    s3_client().put_object(Bucket=bucket, Key=key, Body=body)
    return f"s3://{bucket}/{key}"


def record(bundle, reports, uri, model_sha, status="ok", mode="fcn", version=None, threshold=0.5):
    """A ledger row as a previous scan with ``bundle``'s settings would have written it (no
    detections when ok), recorded under ``model_sha``.

    ``version`` None: the object's current version (HEAD), else that version string.
    """
    from dataclasses import replace

    from jobs.detect import DetectConfig, run_stamp
    from models.bundle import load_bundle
    from reports.schema import DETECTIONS_SCHEMA

    if version is None:
        ref = resolve_scene(uri)
        version, modified = ref.version, ref.modified
    else:
        modified = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    from reports.run import Attempt, SceneRun
    from tiling.scene import Scene

    config = DetectConfig(bundle, reports, mode=mode, threshold=threshold, backend="torch")
    stamp = replace(
        run_stamp(config, load_bundle(bundle)), run_id="earlier", model_sha256=model_sha
    )
    attempt = Attempt(status, None if status == "ok" else "boom")
    table = DETECTIONS_SCHEMA.empty_table() if status == "ok" else None
    run = SceneRun(Scene(uri, version, modified=modified), stamp)
    write_scene_result(open_store(reports), run, attempt, table)


def uris(refs) -> list[str]:
    return [getattr(r, "ref", r).uri for r in refs]


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("15m", 900), ("1h", 3600), ("30s", 30), ("1h30m", 5400), ("2", 2)]
)
def test_parse_interval(text, seconds):
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "15x", "0s", "m"])
def test_parse_interval_rejects(text):
    with pytest.raises(ValueError, match="every="):
        parse_interval(text)


def test_config_normalises_and_names_the_bad_field(bundle, tmp_path):
    config = ScanConfig(
        "s3://bucket/drops", bundle, str(tmp_path), suffixes=".TIF, tiff,JP2", every="15m"
    )
    assert config.source == "s3://bucket/drops/"
    assert config.suffixes == (".tif", ".tiff", ".jp2")
    assert config.every == 900
    assert ScanConfig(str(tmp_path), bundle, str(tmp_path)).source == str(tmp_path) + os.sep
    bad = {
        "source": dict(source="http://bucket/x"),
        "not a directory": dict(source=str(tmp_path / "missing")),
        "bundle": dict(bundle=str(tmp_path / "no-bundle")),
        "bundle=.*key": dict(bundle="s3://bucket/"),
        "bundle=.*bucket": dict(bundle="s3://Not_A_Bucket/m.tar"),
        "bundle=.*http": dict(bundle="http://host/m.tar"),
        "suffixes": dict(suffixes=".txt"),
        "every": dict(every="soon"),
        "max_scenes": dict(max_scenes=0),
        "mode": dict(mode="detector-x"),
    }
    for field_name, kw in bad.items():
        args = dict(source="s3://bucket/p", bundle=bundle, reports=str(tmp_path)) | kw
        with pytest.raises(ValueError, match=field_name):
            ScanConfig(**args)
    # An s3:// bundle is only shaped here; load_bundle fetches and validates it.
    assert ScanConfig("s3://bucket/p", "s3://models/m-v1.tar", str(tmp_path)).bundle == (
        "s3://models/m-v1.tar"
    )


# --- planning ------------------------------------------------------------------------------


def test_plan_new_unchanged_changed_failed_deleted(s3_server, bucket, bundle, model_sha, tmp_path):
    reports = str(tmp_path / "reports")
    body = b"II*\x00 any bytes: planning never opens a scene"
    unchanged = put(bucket, "drops/a.tif", body)
    changed = put(bucket, "drops/sub/b.TIFF", body + b"v2")
    failed = put(bucket, "drops/c.jp2", body + b"c")
    new = put(bucket, "drops/d.png", body + b"d")
    put(bucket, "drops/notes.txt", b"ignored by suffix")
    put(bucket, "drops/folder/", b"")  # a folder marker
    put(bucket, "elsewhere/e.tif", body)  # outside the prefix
    record(bundle, reports, unchanged, model_sha)
    record(bundle, reports, changed, model_sha, version="an-older-etag")
    record(bundle, reports, failed, model_sha, status="failed")
    record(
        bundle, reports, f"s3://{bucket}/drops/gone.tif", model_sha, version="x"
    )  # deleted since
    record(bundle, reports, new, "another-model-sha")  # another model: not done for this one
    record(bundle, reports, new, model_sha, mode="sliding")  # another mode: not done for fcn
    record(bundle, reports, new, model_sha, threshold=0.3)  # another threshold: not done for 0.5

    config = ScanConfig(f"s3://{bucket}/drops", bundle, reports)
    plan = plan_scan(config)
    assert {p.ref.uri: p.reason for p in plan.todo} == {changed: "changed", new: "new"}
    assert plan.unchanged == 1
    assert uris(plan.failed_before) == [failed]
    assert plan.deleted == (f"s3://{bucket}/drops/gone.tif",)
    assert (plan.listed, plan.ignored) == (5, 1)
    ref = resolve_scene(changed)
    assert plan.todo[0].ref == ref or plan.todo[1].ref == ref  # ETag (unquoted) + LastModified
    assert '"' not in ref.version and ref.modified.tzinfo is not None

    retry = plan_scan(ScanConfig(f"s3://{bucket}/drops", bundle, reports, retry_failed=True))
    assert {p.ref.uri: p.reason for p in retry.todo} == {
        changed: "changed",
        new: "new",
        failed: "retry",
    }

    capped = plan_scan(ScanConfig(f"s3://{bucket}/drops", bundle, reports, max_scenes=1))
    assert len(capped.todo) == 1 and len(capped.deferred) == 1
    assert capped.todo[0].ref.modified <= capped.deferred[0].ref.modified  # oldest first

    only_png = plan_scan(ScanConfig(f"s3://{bucket}/drops", bundle, reports, suffixes=".PNG"))
    assert uris(only_png.todo) == [new] and only_png.ignored == 4


def test_plan_of_a_local_directory(bundle, model_sha, tmp_path, tif_bytes):
    source, reports = tmp_path / "drops", str(tmp_path / "reports")
    (source / "sub").mkdir(parents=True)
    (source / "a.tif").write_bytes(tif_bytes)
    (source / "sub" / "b.TIF").write_bytes(tif_bytes)
    (source / "readme.txt").write_text("x")
    plan = plan_scan(ScanConfig(str(source), bundle, reports))
    assert sorted(uris(plan.todo)) == [str(source / "a.tif"), str(source / "sub" / "b.TIF")]
    a = plan.todo[[p.ref.uri for p in plan.todo].index(str(source / "a.tif"))].ref
    record(bundle, reports, a.uri, model_sha, version=a.version)
    (source / "sub" / "b.TIF").unlink()
    record(bundle, reports, str(source / "sub" / "b.TIF"), model_sha, version="1-2")
    plan = plan_scan(ScanConfig(str(source), bundle, reports))
    assert plan.todo == () and plan.unchanged == 1
    assert plan.deleted == (str(source / "sub" / "b.TIF"),)


def test_dry_run_prints_the_plan_and_writes_nothing(s3_server, bucket, bundle, caplog):
    put(bucket, "drops/a.tif", b"II*\x00")
    put(bucket, "drops/b.tif", b"")
    before = sorted(o["Key"] for o in s3_client().list_objects_v2(Bucket=bucket)["Contents"])
    with caplog.at_level(logging.DEBUG):
        result = CliRunner().invoke(
            scan,
            [f"s3://{bucket}/drops", "--bundle", bundle, "--reports", f"s3://{bucket}/reports",
             "--dry-run", "-vv"],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"+ new     s3://{bucket}/drops/a.tif" in result.output
    assert "to detect: 2 (2 new" in result.output and "dry run" in result.output
    after = sorted(o["Key"] for o in s3_client().list_objects_v2(Bucket=bucket)["Contents"])
    assert after == before  # no reports/ objects
    assert S3_SECRET not in result.output
    assert not [r for r in caplog.records if S3_SECRET in r.getMessage()]


def test_dry_run_with_a_bundle_in_s3(s3_server, bucket, bundle, model_sha, tmp_path):
    tar = tmp_path / "whale-face-v1.tar"
    with tarfile.open(tar, "w") as tf:  # as deploy/README.md publishes one: tar -C BUNDLE .
        tf.add(bundle, arcname=".")
    bundle_uri = put(bucket, "models/whale-face-v1.tar", tar.read_bytes())
    put(bucket, "drops/a.tif", b"II*\x00")
    config = ScanConfig(f"s3://{bucket}/drops", bundle_uri, str(tmp_path / "reports"))
    plan = plan_scan(config)
    assert plan.model_sha256 == model_sha and uris(plan.todo) == [f"s3://{bucket}/drops/a.tif"]
    result = CliRunner().invoke(
        scan,
        [f"s3://{bucket}/drops", "--bundle", bundle_uri, "--reports", str(tmp_path / "reports"),
         "--dry-run"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"model {model_sha[:12]}" in result.output and "to detect: 1 (1 new" in result.output
    assert not (tmp_path / "reports").exists()


def test_usage_errors_exit_2(bundle, tmp_path):
    runner = CliRunner()
    for args in (
        ["ftp://x/y", "--bundle", bundle, "--reports", str(tmp_path)],
        ["s3://bucket/p", "--bundle", bundle, "--reports", str(tmp_path), "--every", "often"],
        ["s3://bucket/p", "--bundle", bundle, "--reports", str(tmp_path), "--suffix", ".txt"],
        ["s3://bucket/p", "--reports", str(tmp_path)],  # no --bundle
    ):
        result = runner.invoke(scan, args)
        assert result.exit_code == 2, (args, result.output)


def test_unreachable_bucket_exits_1_with_a_reason(s3_server, bundle, tmp_path):
    result = CliRunner().invoke(
        scan, ["s3://no-such-bucket-here/p", "--bundle", bundle, "--reports", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "NoSuchBucket" in result.output and S3_SECRET not in result.output


# --- transient errors: a real server that answers 503 or goes away mid-listing --------------


class FrontServer:
    """An HTTP front end on 127.0.0.1 over moto's in-process backends (the data of ``s3_server``).

    ``hook(server, environ)`` may answer a request itself (return ``(status, body)``) or act
    around it (return None: moto answers). ``restart_after`` stops the listener and starts it
    again on the same port after that many seconds, as a server restart would.
    """

    def __init__(self, hook=None):
        self.hook = hook
        self.lists = 0  # ListObjectsV2 requests seen
        self.port = 0
        self.close_connection = False
        self._backend = DomainDispatcherApplication(create_backend_app)
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _app(self, environ, start_response):
        if "list-type=2" in environ.get("QUERY_STRING", ""):
            self.lists += 1
        answer = self.hook(self, environ) if self.hook else None
        if answer is not None:
            status, body = answer
            start_response(status, [("Content-Type", "application/xml")])
            return [body]

        def respond(status, headers, exc_info=None):
            if self.close_connection:  # make the client open a new connection next time
                headers = [*headers, ("Connection", "close")]
            return start_response(status, headers, exc_info)

        return self._backend(environ, respond)

    def start(self) -> None:
        self._server = make_server("127.0.0.1", self.port, self._app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def restart_after(self, seconds: float) -> None:
        self.stop()
        threading.Timer(seconds, self.start).start()


def _listing(bucket: str, n: int) -> set[str]:
    return {put(bucket, f"drops/s{i:02d}.tif", b"II*\x00" + bytes([i])) for i in range(n)}


def test_throttling_503_is_retried_by_botocore(s3_server, bucket, bundle, tmp_path, monkeypatch):
    expected = _listing(bucket, 3)
    slow_down = (
        b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
    )

    def hook(server, environ):
        if "list-type=2" in environ.get("QUERY_STRING", "") and server.lists <= 2:
            return "503 Service Unavailable", slow_down
        return None

    front = FrontServer(hook)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", front.url)
        plan = plan_scan(ScanConfig(f"s3://{bucket}/drops", bundle, str(tmp_path / "r")))
    finally:
        front.stop()
    assert front.lists == 3  # two 503s, then the answer
    assert set(uris(plan.todo)) == expected


def test_server_restarted_mid_listing_loses_nothing(
    s3_server, bucket, bundle, tmp_path, monkeypatch, caplog
):
    expected = _listing(bucket, 7)
    monkeypatch.setattr(scan_module, "LIST_PAGE_SIZE", 2)  # 4 pages
    events = []

    def hook(server, environ):
        if "list-type=2" in environ.get("QUERY_STRING", "") and server.lists == 1:
            # Answer page 1, closing the connection, with the listener already gone; the
            # listener comes back after 1 s. Page 2 meets a refused connection first.
            server.close_connection = True
            server.restart_after(1.0)
            events.append("restarted after page 1")
        return None

    front = FrontServer(hook)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", front.url)
        with caplog.at_level(logging.DEBUG, logger="botocore"):
            plan = plan_scan(ScanConfig(f"s3://{bucket}/drops", bundle, str(tmp_path / "r")))
    finally:
        front.stop()
    # Page 2 (a continuation token) met the stopped server, and botocore retried it.
    assert re.search(r"Could not connect to the endpoint URL: \S*continuation-token", caplog.text)
    assert "Retry needed" in caplog.text
    assert events == ["restarted after page 1"]
    assert front.lists == 4
    assert set(uris(plan.todo)) == expected and plan.listed == 7


# --- --every and signals -------------------------------------------------------------------


def test_every_loop_stops_cleanly_on_sigterm(s3_server, bucket, bundle, tmp_path):
    put(bucket, "drops/a.tif", b"II*\x00")
    previous = signal.getsignal(signal.SIGTERM)
    cancelled = threading.Event()

    def send_sigterm() -> None:
        # Only once the scanner's handler is in place (pytest would die of the default one).
        deadline = time.monotonic() + 60
        while signal.getsignal(signal.SIGTERM) is previous and time.monotonic() < deadline:
            if cancelled.wait(0.05):
                return
        if cancelled.wait(0.5) or signal.getsignal(signal.SIGTERM) is previous:
            return
        os.kill(os.getpid(), signal.SIGTERM)

    timer = threading.Thread(target=send_sigterm, daemon=True)
    timer.start()
    started = dt.datetime.now()
    try:
        result = CliRunner().invoke(
            scan,
            [f"s3://{bucket}/drops", "--bundle", bundle, "--reports", str(tmp_path / "r"),
             "--every", "1h", "--dry-run"],
        )  # fmt: skip
    finally:
        cancelled.set()
        timer.join()
    seconds = (dt.datetime.now() - started).total_seconds()
    assert result.exit_code == 0, result.output
    assert result.output.count("to detect: 1") == 1
    assert "SIGTERM: finishing the current batch" in result.output
    assert "scanner stopped" in result.output
    assert seconds < 30  # did not sit out the hour
    assert signal.getsignal(signal.SIGTERM) is previous  # handler restored


# --- failures are ledger rows; end to end --------------------------------------------------


def _put_bad_scenes(bucket: str, tif_bytes: bytes) -> dict[str, str]:
    return {
        "truncated": put(bucket, "drops/truncated.tif", tif_bytes[: len(tif_bytes) // 2]),
        "empty": put(bucket, "drops/empty.tif", b""),
        "not an image": put(bucket, "drops/notes.tif", b"flight notes, not pixels\n" * 20),
    }


def test_bad_objects_become_failed_rows_and_are_not_retried(
    s3_server, bucket, bundle, tif_bytes, capfd
):
    """In-process detection (--workers 0): each bad object is a failed ledger row with a reason."""
    bad = _put_bad_scenes(bucket, tif_bytes)
    put(bucket, "drops/readme.txt", b"ignored")
    reports = f"s3://{bucket}/reports"
    args = [f"s3://{bucket}/drops", "--bundle", bundle, "--reports", reports, "--workers", "0",
            "--backend", "torch"]  # fmt: skip
    runner = CliRunner()
    first = runner.invoke(scan, args)
    assert first.exit_code == 1, first.output  # a scheduler sees the failures
    rows = {r["scene_uri"]: r for r in read_scenes(open_store(reports)).to_pylist()}
    assert set(rows) == set(bad.values())
    for uri in bad.values():
        assert rows[uri]["status"] == "failed" and uri in rows[uri]["error"]
        assert f"FAILED  {uri}" in first.output
    assert "read failed" in rows[bad["truncated"]]["error"]
    assert "not a readable raster" in rows[bad["empty"]]["error"]
    assert "not a readable raster" in rows[bad["not an image"]]["error"]

    again = runner.invoke(scan, args)
    assert again.exit_code == 0, again.output
    assert "to detect: 0" in again.output and "failed before: 3" in again.output

    retried = runner.invoke(scan, [*args, "--retry-failed"])
    assert retried.exit_code == 1 and "3 retried" in retried.output
    store = open_store(reports)
    assert len(read_scenes(store)) == 6  # each attempt is its own row…
    latest = read_ledger(store)  # …and the latest attempt of each key wins
    runs = sorted(set(read_scenes(store).column("run_id").to_pylist()))
    assert len(runs) == 2 and len(latest) == 3
    assert set(latest.column("run_id").to_pylist()) == {runs[-1]}
    assert compact(store).rows_out == 3 and len(read_scenes(store)) == 3

    out, err = capfd.readouterr()
    assert S3_SECRET not in first.output + again.output + retried.output + out + err


def _detections(store) -> list[dict]:
    rows = []
    for relpath in store.list("detections/"):
        table = pq.read_table(io.BytesIO(store.read_bytes(relpath)))
        rows += table.select(["scene_uri", "scene_version", "detection_id"]).to_pylist()
    return rows


def _etags(bucket: str, prefix: str) -> dict[str, str]:
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o["ETag"] for p in pages for o in p.get("Contents", ())}


@pytest.mark.slow
def test_scan_end_to_end_on_ray(
    s3_server, ray_local, bucket, bundle, tif_bytes, tmp_path, capfd, caplog
):
    """The issue's "Done when": two scenes, a truncated TIFF, an empty .tif and a .txt."""
    scenes = [
        put(
            bucket,
            f"drops/flight-1/scene-{i}.tif",
            noise_scene(tmp_path / f"{i}.tif", 256, 192, seed=10 + i).read_bytes(),
        )
        for i in (1, 2)
    ]
    truncated = put(bucket, "drops/flight-1/truncated.tif", tif_bytes[: len(tif_bytes) // 2])
    empty = put(bucket, "drops/flight-1/empty.tif", b"")
    put(bucket, "drops/flight-1/notes.txt", b"flight notes")
    reports = f"s3://{bucket}/reports"
    store = open_store(reports)
    args = [f"s3://{bucket}/drops/", "--bundle", bundle, "--reports", reports, "--workers", "1",
            "--backend", "torch", "-v"]  # fmt: skip
    runner = CliRunner()
    outputs = []

    def run(expected_exit: int) -> str:
        with caplog.at_level(logging.DEBUG):
            result = runner.invoke(scan, args)
        outputs.append(result.output)
        assert result.exit_code == expected_exit, result.output
        return result.output

    # 1. First scan: detections for both scenes, failed rows with reasons, the .txt ignored.
    out = run(1)
    assert "1 ignored by suffix" in out
    ledger = {r["scene_uri"]: r for r in read_scenes(store).to_pylist()}
    assert set(ledger) == {*scenes, truncated, empty}
    for uri in scenes:
        assert ledger[uri]["status"] == "ok" and ledger[uri]["detections"] > 0
    assert ledger[truncated]["status"] == "failed" and "read failed" in ledger[truncated]["error"]
    assert ledger[empty]["status"] == "failed" and "not a readable raster" in ledger[empty]["error"]
    first = _detections(store)
    assert {r["scene_uri"] for r in first} == set(scenes)
    assert len(store.list("detections/")) == 2
    reports_after_1 = _etags(bucket, "reports/")

    # 2. A third scene arrives: only its detections are added; the others are untouched.
    third = put(
        bucket,
        "drops/flight-2/scene-3.tif",
        noise_scene(tmp_path / "3.tif", 256, 192, seed=13).read_bytes(),
    )
    out = run(0)
    assert "to detect: 1 (1 new" in out and f"+ new     {third}" in out
    reports_after_2 = _etags(bucket, "reports/")
    assert {k: v for k, v in reports_after_2.items() if k in reports_after_1} == reports_after_1
    assert len(reports_after_2) == len(reports_after_1) + 2  # its detections + its ledger row
    second = _detections(store)
    assert {r["scene_uri"] for r in second} == {*scenes, third}
    old_ids = sorted(r["detection_id"] for r in second if r["scene_uri"] != third)
    assert old_ids == sorted(r["detection_id"] for r in first)

    # 3. A further scan adds nothing.
    out = run(0)
    assert "to detect: 0" in out
    assert _etags(bucket, "reports/") == reports_after_2

    # 4. A scene overwritten in place (new ETag) is detected again; its rows carry the new version.
    put(
        bucket,
        "drops/flight-1/scene-1.tif",
        noise_scene(tmp_path / "1b.tif", 256, 192, seed=99).read_bytes(),
    )
    out = run(0)
    assert f"+ changed {scenes[0]}" in out
    final = _detections(store)
    versions = {r["scene_version"] for r in final if r["scene_uri"] == scenes[0]}
    assert len(versions) == 2  # old and new version told apart by scene_version

    ids = [r["detection_id"] for r in final]
    assert len(ids) == len(set(ids))
    captured = capfd.readouterr()
    assert S3_SECRET not in "".join(outputs) + captured.out + captured.err
    assert not [r for r in caplog.records if S3_SECRET in r.getMessage()]
