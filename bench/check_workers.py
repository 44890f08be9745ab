"""Issue #4's acceptance run: held-out 30 MP scenes give the same detections with 1 and 2
workers, and again when one actor process is SIGKILLed mid-run; throughput per worker count.

Usage: python -m bench.check_workers --bundle B [--work DIR] [--side 5480] [--scenes 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.dataset as pads

from bench.common import held_out_scenes, save


def _run(bundle: str, scenes: list[Path], out: Path, workers: int, kill_after: float | None):
    from jobs.detect import DetectConfig, run_detect

    config = DetectConfig(bundle=bundle, out=str(out), scenes=tuple(map(str, scenes)),
                          workers=workers, progress=False)  # fmt: skip
    result: dict = {}
    t0 = time.perf_counter()
    run = threading.Thread(target=lambda: result.update(outcomes=run_detect(config)))
    run.start()
    killed = None
    if kill_after is not None:
        time.sleep(kill_after)
        pids = [p.pid for p in psutil.process_iter(["cmdline"])
                if (p.info["cmdline"] or [""])[0].startswith("ray::_RemoteDetector")]  # fmt: skip
        if pids and run.is_alive():
            killed = min(pids)
            os.kill(killed, signal.SIGKILL)
    run.join()
    seconds = time.perf_counter() - t0
    assert all(o.status == "ok" for o in result["outcomes"]), result["outcomes"]
    return seconds, killed


def _table(out: Path):
    files = sorted((out / "detections").rglob("*.parquet"))
    t = pads.dataset(files).to_table().sort_by([("detection_id", "ascending")])
    boxes = np.stack([t[c].to_numpy() for c in ("px_xmin", "px_ymin", "px_xmax", "px_ymax")], 1)
    return t["detection_id"].to_pylist(), boxes, t["score"].to_numpy()


def _same(a: Path, b: Path) -> dict:
    ia, ba, sa = _table(a)
    ib, bb, sb = _table(b)
    same_ids = ia == ib
    return {
        "detections": len(ia),
        "same_ids": same_ids,
        "max_box_px": float(np.abs(ba - bb).max()) if same_ids and len(ia) else None,
        "max_score": float(np.abs(sa - sb).max()) if same_ids and len(ia) else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bundle", required=True)
    p.add_argument("--work", default=None)
    p.add_argument("--side", type=int, default=5480, help="scene side in px (5480² ≈ 30 MP)")
    p.add_argument("--scenes", type=int, default=3)
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from jobs.ray_session import ray_session

    root = Path(args.work or tempfile.mkdtemp(prefix="whalescan-workers-"))
    scenes = held_out_scenes(root, args.scenes, args.side, whales=40, seed=9000)
    mp = args.scenes * args.side**2 / 1e6
    with ray_session(None):
        s1, _ = _run(args.bundle, scenes, root / "w1", 1, None)
        s2, _ = _run(args.bundle, scenes, root / "w2", 2, None)
        sk, victim = _run(args.bundle, scenes, root / "w2-killed", 2, kill_after=s2 / 3)
    r = {
        "megapixels": mp,
        "mp_per_s": {"workers_1": mp / s1, "workers_2": mp / s2, "workers_2_killed": mp / sk},
        "killed_pid": victim,
        "w1_vs_w2": _same(root / "w1", root / "w2"),
        "w2_vs_killed": _same(root / "w2", root / "w2-killed"),
    }
    print(f"{args.scenes} scenes, {mp:.0f} MP: workers 1 {mp / s1:.2f} MP/s, 2 {mp / s2:.2f} MP/s, "
          f"2 with actor {victim} SIGKILLed {mp / sk:.2f} MP/s")  # fmt: skip
    print(f"1 vs 2 workers: {r['w1_vs_w2']}")
    print(f"2 workers vs 2 with a killed actor: {r['w2_vs_killed']}")
    save("workers", r)


if __name__ == "__main__":
    main()
