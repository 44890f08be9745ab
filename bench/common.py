"""Shared bits of the benchmarks: a results file per benchmark (with machine and date), timers,
held-out scenes."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


# The CPU extensions that change PyTorch/ONNX Runtime speed between machines of one model name
# ("Intel(R) Xeon(R) Processor" hides AMX or not): recorded, never recalled from memory.
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile")


def machine() -> dict:
    cpu, flags = platform.processor() or "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "isa": [f for f in ISA_FLAGS if f in flags],
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg": os.getloadavg(),
    }


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return path


def held_out_scenes(root: Path, n: int, side: int, whales: int, seed: int) -> list[Path]:
    """``n`` synthetic ``side``² px scenes ``root/held-out-{i}.tif`` (seeds ``seed + i``), each
    written only when missing so a rerun with the same ``--work`` reuses them."""
    from synth.scene import SceneSpec, write_scene

    scenes = []
    for i in range(n):
        path = root / f"held-out-{i}.tif"
        if not path.exists():
            write_scene(path, SceneSpec(side, side, whales=whales, seed=seed + i))
        scenes.append(path)
    return scenes


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (Ray's raylet and workers included)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def run_with_peak_rss(cmd: list[str], env: dict | None = None) -> tuple[float, int]:
    """Run ``cmd``; return (seconds, peak RSS of its whole process tree, sampled every 50 ms)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, err = proc.communicate()
    done.set()
    t.join()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err.decode()[-2000:]}")
    return time.perf_counter() - t0, peak
