"""storage and the GDAL /vsis3/ options against a real S3-protocol server (moto, 127.0.0.1)."""

from __future__ import annotations

import logging
import threading
import uuid

import numpy as np
import pytest
import rasterio
from moto.server import DomainDispatcherApplication, create_backend_app
from rasterio.io import MemoryFile
from rasterio.windows import Window
from werkzeug.serving import make_server

from storage.atomic import write_bytes_atomic
from storage.cache import fetch_cached
from storage.s3 import StorageError, s3_client
from storage.uri import S3Uri, is_s3
from tests.helpers import S3_SECRET
from tiling.scene import RASTER_SUFFIXES, gdal_s3_options, to_gdal_path


def geotiff_bytes(array: np.ndarray, block: int = 64) -> bytes:
    """A tiled, uncompressed GeoTIFF of ``array`` (bands, rows, cols) uint8."""
    bands, height, width = array.shape
    with MemoryFile() as mem:
        with mem.open(
            driver="GTiff", width=width, height=height, count=bands, dtype="uint8",
            crs="EPSG:32619", transform=rasterio.transform.from_origin(500000, 4600000, 0.5, 0.5),
            tiled=True, blockxsize=block, blockysize=block,
        ) as ds:  # fmt: skip
            ds.write(array)
        return mem.read()


def pattern(height: int, width: int, bands: int = 3) -> np.ndarray:
    """Pixel (band b, row r, col c) = (r * 7 + c * 3 + b * 50) % 256, so any pixel is checkable."""
    b, r, c = np.indices((bands, height, width))
    return ((r * 7 + c * 3 + b * 50) % 256).astype(np.uint8)


class RecordingServer:
    """A second HTTP front end on 127.0.0.1 over the same in-process moto backends as ``s3_server``,
    recording each request's method, path and ``Range`` header."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        backend = DomainDispatcherApplication(create_backend_app)

        def app(environ, start_response):
            self.requests.append(
                (environ["REQUEST_METHOD"], environ["PATH_INFO"], environ.get("HTTP_RANGE"))
            )
            return backend(environ, start_response)

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/key.tif", ("bucket", "key.tif")),
        ("s3://my.bucket-1/a/b/c.TIF", ("my.bucket-1", "a/b/c.TIF")),
        ("s3://bucket", ("bucket", "")),
        ("s3://bucket/", ("bucket", "")),
    ],
)
def test_parse_s3_uri(uri, expected):
    parsed = S3Uri.parse(uri)
    assert (parsed.bucket, parsed.key) == expected
    assert is_s3(uri)
    assert S3Uri.parse(str(parsed)) == parsed


@pytest.mark.parametrize("uri", ["/data/s3://x.tif", "S3://bucket/k", "http://b/k", "", None, 3])
def test_is_s3_only_for_the_s3_scheme(uri):
    assert not is_s3(uri)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("/local/path.tif", "expected an s3://"),
        ("http://bucket/key", "expected an s3://"),
        ("s3://", "no bucket"),
        ("s3:///key", "no bucket"),
        ("s3://Bad_Bucket/key", "not a valid S3 bucket name"),
        ("s3://ab/key", "not a valid S3 bucket name"),
    ],
)
def test_parse_s3_uri_errors_name_the_input(uri, message):
    with pytest.raises(ValueError, match=message) as err:
        S3Uri.parse(uri)
    assert repr(uri) in str(err.value)


def test_to_gdal_path():
    assert to_gdal_path("s3://bucket/dir/scene.tif") == "/vsis3/bucket/dir/scene.tif"
    assert to_gdal_path("/data/scene.tif") == "/data/scene.tif"
    with pytest.raises(ValueError, match="no object key"):
        to_gdal_path("s3://bucket/")


def test_gdal_options_follow_the_aws_environment(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    opts = gdal_s3_options()
    assert "AWS_S3_ENDPOINT" not in opts and "AWS_VIRTUAL_HOSTING" not in opts  # real AWS
    assert opts["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert opts["CPL_VSIL_CURL_NON_CACHED"] == "/vsis3/"
    assert opts["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"].split(",") == list(RASTER_SUFFIXES)
    assert int(opts["GDAL_HTTP_MAX_RETRY"]) > 0 and float(opts["GDAL_HTTP_RETRY_DELAY"]) > 0

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    opts = gdal_s3_options(non_cached=["s3://bucket/drops/"], suffixes=[".TIF", "png"])
    assert opts["AWS_S3_ENDPOINT"] == "127.0.0.1:9000"
    assert opts["AWS_HTTPS"] == "NO"
    assert opts["AWS_VIRTUAL_HOSTING"] == "FALSE"
    assert opts["AWS_REGION"] == "eu-west-1"
    assert opts["CPL_VSIL_CURL_NON_CACHED"] == "/vsis3/bucket/drops/"
    assert opts["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"] == ".tif,.png"

    # The S3-specific variable wins, as it does for boto3.
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://minio.example.org")
    opts = gdal_s3_options()
    assert (opts["AWS_S3_ENDPOINT"], opts["AWS_HTTPS"]) == ("minio.example.org", "YES")
    assert opts["AWS_REGION"] == "us-west-2"

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "ftp://host")
    with pytest.raises(ValueError, match="AWS_ENDPOINT_URL='ftp://host'"):
        gdal_s3_options()


def test_client_has_retries_and_checksums_when_required(s3_server):
    client = s3_client()
    config = client.meta.config
    # botocore's Config counts retries (8) and stores the total attempts (1 + 8).
    assert config.retries["mode"] == "standard"
    assert config.retries["total_max_attempts"] == 9
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert client.meta.endpoint_url == s3_server  # AWS_ENDPOINT_URL, read by boto3 itself


def test_windowed_read_through_vsis3_uses_range_requests(s3_server, bucket, monkeypatch):
    array = pattern(512, 512)
    data = geotiff_bytes(array)
    s3_client().put_object(Bucket=bucket, Key="drops/scene.tif", Body=data)

    recorder = RecordingServer()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", recorder.url)
        with (
            rasterio.Env(**gdal_s3_options()),
            rasterio.open(to_gdal_path(f"s3://{bucket}/drops/scene.tif")) as ds,
        ):
            assert (ds.width, ds.height, ds.count) == (512, 512, 3)
            assert ds.crs.to_epsg() == 32619
            window = ds.read(window=Window(col_off=300, row_off=200, width=40, height=30))
    finally:
        recorder.stop()

    np.testing.assert_array_equal(window, array[:, 200:230, 300:340])
    assert window[1, 5, 7] == ((205 * 7 + 307 * 3 + 50) % 256)

    gets = [(m, r) for m, p, r in recorder.requests if p == f"/{bucket}/drops/scene.tif"]
    assert gets and all(m == "GET" and r and r.startswith("bytes=") for m, r in gets), gets
    fetched = sum(int(b) - int(a) + 1 for a, b in (r[6:].split("-") for _, r in gets))
    assert fetched < len(data) / 4, f"fetched {fetched} of {len(data)} bytes for a 40x30 window"
    # EMPTY_DIR: no listing of the "directory" and no probes for sidecar files.
    assert {p for _, p, _ in recorder.requests} == {f"/{bucket}/drops/scene.tif"}


def test_overwritten_object_is_read_fresh(s3_server, bucket):
    """GDAL's process-wide range cache would serve the old bytes (a long-running scanner meets this)."""
    client = s3_client()
    key = f"drops/overwritten-{uuid.uuid4().hex[:6]}.tif"
    for value in (10, 200):  # same size, same layout: only the pixel values change
        body = geotiff_bytes(np.full((1, 128, 128), value, np.uint8))
        client.put_object(Bucket=bucket, Key=key, Body=body)
        with (
            rasterio.Env(**gdal_s3_options()),
            rasterio.open(to_gdal_path(f"s3://{bucket}/{key}")) as ds,
        ):
            assert ds.read(1, window=Window(0, 0, 8, 8))[0, 0] == value


def test_fetch_cached_downloads_each_version_once(s3_server, bucket):
    uri = S3Uri(bucket, "models/b.tar")
    client = s3_client()
    client.put_object(Bucket=bucket, Key=uri.key, Body=b"first")
    path = fetch_cached(uri, "test-cache", suffix=".tar")
    assert path.suffix == ".tar" and path.read_bytes() == b"first"
    path.write_bytes(b"FIRST")  # a second call must not download again…
    assert fetch_cached(uri, "test-cache", suffix=".tar") == path
    assert path.read_bytes() == b"FIRST"
    path.write_bytes(b"fir")  # …unless the copy is truncated (a killed download, a full disk)
    assert fetch_cached(uri, "test-cache", suffix=".tar").read_bytes() == b"first"

    client.put_object(Bucket=bucket, Key=uri.key, Body=b"second")  # a new ETag
    again = fetch_cached(uri, "test-cache", suffix=".tar")
    assert again != path and again.read_bytes() == b"second"

    with pytest.raises(StorageError, match=f"s3://{bucket}/models/missing.tar"):
        fetch_cached(uri.child("models/missing.tar"), "test-cache")


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    target = tmp_path / "sub" / "report.parquet"
    write_bytes_atomic(target, b"old")
    with pytest.raises(TypeError):
        write_bytes_atomic(target, "not bytes")  # fails half way, after the temp file exists
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.parquet"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_secret_never_printed_or_logged(s3_server, bucket, caplog, capfd):
    s3_client().put_object(Bucket=bucket, Key="drops/s.tif", Body=geotiff_bytes(pattern(64, 64)))
    with caplog.at_level(logging.DEBUG):
        opts = gdal_s3_options()
        client = s3_client()
        print(opts, repr(client), client.meta.config)
        logging.getLogger("whalescan.test").info("options %s", opts)
        with (
            rasterio.Env(CPL_DEBUG="ON", **opts),
            rasterio.open(to_gdal_path(f"s3://{bucket}/drops/s.tif")) as ds,
        ):
            ds.read(1)
        fetch_cached(S3Uri(bucket, "drops/s.tif"), "test-cache")
    out, err = capfd.readouterr()
    assert S3_SECRET not in repr(opts)
    assert S3_SECRET not in out + err
    assert caplog.records and not [r for r in caplog.records if S3_SECRET in r.getMessage()]
