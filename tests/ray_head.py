"""A real ``ray start --head`` on 127.0.0.1 (token auth on, as Ray 2.60 defaults) for job submission.

Every port is explicit and the head runs in its own process group, which is killed at the end —
never ``ray stop``, which would kill every Ray on the machine (the session's ``ray_local`` too).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RayHead:
    address: str  # the dashboard / job-submission URL
    env: dict  # a client environment holding the token
    ray: str  # the venv's `ray` executable
    tmp: Path

    def submit(self, module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """``ray job submit --working-dir <repo> -- python -m <module> <args>``, waited for."""
        return subprocess.run(
            [self.ray, "job", "submit", f"--address={self.address}", f"--working-dir={REPO}",
             "--", "python", "-m", module, *args],
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip


@contextlib.contextmanager
def started_head(free_port) -> Iterator[RayHead]:
    bin_dir = Path(sys.executable).parent
    short = Path(tempfile.mkdtemp(prefix="ws-ray-", dir="/tmp"))  # unix socket paths stay short
    gcs, dash = free_port(), free_port()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",  # the job's `python` is the venv's
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": os.urandom(32).hex(),  # never touches ~/.ray/auth_token
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    ports = [f"--{p}={free_port()}" for p in (
        "node-manager-port", "object-manager-port", "ray-client-server-port",
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
        "runtime-env-agent-port",
    )]  # fmt: skip
    head = subprocess.Popen(
        [str(bin_dir / "ray"), "start", "--head", "--block", f"--port={gcs}",
         "--node-ip-address=127.0.0.1", "--num-cpus=2", "--disable-usage-stats",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         f"--temp-dir={short}", "--min-worker-port=21000", "--max-worker-port=21999", *ports],
        env=env, cwd=short, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for_dashboard(dash, head)
        yield RayHead(f"http://127.0.0.1:{dash}", env, str(bin_dir / "ray"), short)
    finally:
        _stop_group(head)
        shutil.rmtree(short, ignore_errors=True)


def _wait_for_dashboard(port: int, head: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited with {head.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers (401 without the token): up
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"dashboard on port {port} did not come up in {timeout}s")


def _stop_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=15)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _group_alive(proc.pid):
        time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
