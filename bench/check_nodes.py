"""Issue #11's acceptance run: a worker node SIGKILLed whole mid-run costs time, not detections.

A local three-node cluster started as an operator would: ``ray start --head --num-cpus 0`` and
two worker nodes joined with ``ray start --address`` (token auth, as Ray 2.60 defaults; every
node its own process group and ports). ``whalescan detect --address … --workers 2`` runs over
held-out scenes once cleanly, then again while the node hosting an actor is SIGKILLed (raylet,
workers and agents at once) a third of the way in. Writes bench/results/check_nodes.json.

Usage: python -m bench.check_nodes [--bundle B] [--side 2048] [--scenes 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.check_workers import _same
from bench.common import held_out_scenes, save

ACTOR = "ray::_RemoteDetector"
REPO = Path(__file__).resolve().parent.parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_ports(worker_ports: int) -> list[str]:
    """Ports of one node, all explicit so that three nodes share one machine."""
    low = worker_ports
    ports = [f"--{name}={_port()}" for name in (
        "node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port",
    )]  # fmt: skip
    return [*ports, f"--min-worker-port={low}", f"--max-worker-port={low + 999}"]


class LocalCluster:
    """A head without CPUs and worker nodes, each a ``ray start --block`` in its own session."""

    def __init__(self, root: Path):
        self.root = root
        self.ray = str(Path(sys.executable).parent / "ray")
        self.port = _port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),  # never touches ~/.ray/auth_token
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": str(REPO),
        }
        self.nodes: list[subprocess.Popen] = []

    def start(self, workers: int, cpus_per_worker: int) -> None:
        temp = Path(tempfile.mkdtemp(prefix="ws-", dir="/tmp"))  # unix socket paths stay short
        self._start_node(lambda: ["--head", f"--port={self.port}", "--num-cpus=0",
                                  f"--temp-dir={temp}", "--include-dashboard=false",
                                  f"--ray-client-server-port={_port()}", *_node_ports(22000)])  # fmt: skip
        for i in range(workers):  # one at a time: on a busy machine a node's agents start slowly
            self._start_node(lambda i=i: [f"--address={self.address}",
                                          f"--num-cpus={cpus_per_worker}",
                                          *_node_ports(23000 + 1000 * i)])  # fmt: skip

    def _start_node(self, args, tries: int = 3) -> None:
        """Start a node (``args()``: fresh ports each try) and wait until Ray counts it alive.

        Retried because on a loaded machine a node can die starting: a port picked free was
        taken meanwhile, or its raylet gave up waiting for its dashboard agent (seen at load 22).
        """
        for _ in range(tries):
            node = self._spawn(args())
            if self._wait(len(self.nodes), node):
                return
            _kill_group(node)
            self.nodes.remove(node)
        raise RuntimeError(f"a Ray node did not start in {tries} tries")

    def _spawn(self, args: list[str]) -> subprocess.Popen:
        node = subprocess.Popen(
            [self.ray, "start", "--block", "--node-ip-address=127.0.0.1",
             "--disable-usage-stats", *args],
            env=self.env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.nodes.append(node)
        return node

    def _wait(self, n: int, node: subprocess.Popen, timeout: float = 300) -> bool:
        """True once ``n`` nodes are alive; False if ``node``'s ``ray start`` exited first."""
        code = "import ray; ray.init(address='auto'); print('alive', sum(x['Alive'] for x in ray.nodes()))"
        env = {**self.env, "RAY_ADDRESS": self.address}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.poll() is not None:
                return False
            run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, timeout=120)  # fmt: skip
            alive = [
                line.split()[1] for line in run.stdout.splitlines() if line.startswith("alive ")
            ]
            if run.returncode == 0 and alive and int(alive[-1]) >= n:  # Ray may print notes too
                return True
            time.sleep(2)
        raise RuntimeError(f"{n} Ray node(s) not up after {timeout} s")

    def node_of_actor(self) -> subprocess.Popen | None:
        """The worker node (its ``ray start`` process) hosting a detection actor, if any."""
        for node in self.nodes[1:]:
            if node.poll() is None and any(ACTOR in " ".join(_cmd(p)) for p in _tree(node.pid)):
                return node
        return None

    def kill_node(self, node: subprocess.Popen) -> int:
        """SIGKILL every process of ``node`` at once (a machine lost); returns how many."""
        procs = _tree(node.pid)
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        node.wait(timeout=30)
        return len(procs)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            _kill_group(node)


def _kill_group(node: subprocess.Popen) -> None:
    """SIGKILL a node's processes: its tree, and its process group (children of a ``ray
    start`` that already died are no longer in its tree)."""
    for p in _tree(node.pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(node.pid, signal.SIGKILL)  # start_new_session: the group id is its pid
    with contextlib.suppress(subprocess.TimeoutExpired):
        node.wait(timeout=30)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cmd(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return []


def _detect(cluster: LocalCluster, bundle: str, scenes: list[Path], out: Path, kill_after=None):
    cmd = [sys.executable, "-m", "jobs.detect", bundle, *map(str, scenes), "--out", str(out),
           "--address", cluster.address, "--workers", "2", "--quiet"]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    killed = None
    if kill_after is not None:
        deadline = time.monotonic() + kill_after
        victim = None
        while proc.poll() is None and (victim is None or time.monotonic() < deadline):
            victim = cluster.node_of_actor()
            time.sleep(0.2)
        if victim is not None and proc.poll() is None:
            killed = {"node_pid": victim.pid, "processes": cluster.kill_node(victim),
                      "at_s": time.perf_counter() - t0}  # fmt: skip
    stdout, stderr = proc.communicate(timeout=1800)
    seconds = time.perf_counter() - t0
    return {"returncode": proc.returncode, "seconds": seconds, "killed": killed,
            "summary": stdout.strip().splitlines()[-1:], "stderr_tail": stderr[-2000:]}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bundle", default=None, help="default: an untrained whalenet bundle")
    p.add_argument("--work", default=None)
    p.add_argument("--side", type=int, default=2048, help="scene side in px (5480² ≈ 30 MP)")
    p.add_argument("--scenes", type=int, default=3)
    p.add_argument("--cpus-per-worker", type=int, default=1)
    args = p.parse_args()
    root = Path(args.work or tempfile.mkdtemp(prefix="whalescan-nodes-"))
    scenes = held_out_scenes(root, args.scenes, args.side, whales=20, seed=9100)
    bundle = args.bundle
    if bundle is None:
        sys.path.insert(0, str(REPO))
        from tests.helpers import untrained_bundle

        bundle = str(untrained_bundle(root / "bundle"))
    cluster = LocalCluster(root)
    try:
        cluster.start(workers=2, cpus_per_worker=args.cpus_per_worker)
        clean = _detect(cluster, bundle, scenes, root / "clean")
        lost = _detect(
            cluster, bundle, scenes, root / "node-killed", kill_after=clean["seconds"] / 3
        )
    finally:
        cluster.stop()
    mp = args.scenes * args.side**2 / 1e6
    r = {"megapixels": mp, "clean": clean, "node_killed": lost,
         "clean_vs_killed": _same(root / "clean", root / "node-killed")}  # fmt: skip
    print(f"{args.scenes} scenes, {mp:.0f} MP; clean run {clean['seconds']:.0f} s "
          f"(exit {clean['returncode']}), with a worker node SIGKILLed at "
          f"{(lost['killed'] or {}).get('at_s', float('nan')):.0f} s: {lost['seconds']:.0f} s "
          f"(exit {lost['returncode']})")  # fmt: skip
    print(f"clean vs node killed: {r['clean_vs_killed']}")
    save("check_nodes", r)


if __name__ == "__main__":
    main()
