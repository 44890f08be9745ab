"""Session-wide real services: one local Ray instance and one S3-protocol server (moto) on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest

from tests.helpers import S3_SECRET

# Tests that don't test auth run Ray without token authentication; the job-submission tests
# start their own head with it on (tests/ray_head.py).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# The per-user cache (bundles, exported artefacts) of this test session: never the user's own.
# Set before any Ray instance starts, so workers inherit it.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="whalescan-test-cache-")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_local(s3_server):
    """One local Ray instance for the whole session (≈3–5 s to start), 4 logical CPUs on 2 cores.

    Started after the S3 server so its workers inherit the endpoint and credentials, as workers
    on a real cluster get them from their pods' environment.
    """
    import ray

    if not ray.is_initialized():
        ray.init("local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server bound to 127.0.0.1 (its default is 0.0.0.0); yields the endpoint URL.

    Sets the standard AWS variables so boto3 and GDAL reach it through the same endpoint.
    """
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing-key-id",
        AWS_SECRET_ACCESS_KEY=S3_SECRET,
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
    )
    yield endpoint
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


_AWS_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


@pytest.fixture
def bucket(s3_server) -> str:
    """A fresh, uniquely named bucket on the S3 server."""
    import uuid

    from storage.s3 import s3_client

    name = f"test-{uuid.uuid4().hex[:10]}"
    s3_client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def ray_head():
    """A `ray start --head` on 127.0.0.1 with token auth, shared by the job-submission tests."""
    from tests.ray_head import started_head

    with started_head(free_port) as head:
        yield head


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory):
    """A whalenet trained on synthetic chips for this session (see ``tests.helpers``)."""
    from tests.helpers import trained_bundle

    return trained_bundle(tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="session")
def trained(trained_bundle):
    """The session's trained whalenet bundle (the name the border and flavour tests use)."""
    return trained_bundle
