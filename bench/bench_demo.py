"""The demo's headline figures over several runs: how its detections compare with the truth.

    python -m bench.bench_demo [--runs 3] [--scene-size 4096] [--whales 20] [--work DIR]

Each run is ``make demo``'s pipeline (synthetic data → train the classifier and the box detector
on Ray → detect the held-out scene three ways → score against its truth) into a fresh directory;
training is not bit-reproducible across runs, so the spread is the figure. Writes
``bench/results/demo.json``: per run and approach train and detect seconds, precision, recall,
AP by IoU and by centre, duplicates, and the run's wall seconds. About 5 minutes a run on 2 cores.
With ``--work`` the runs are kept there (``DIR/run-0/bundle``, ``DIR/run-0/chips``: the bundle
and chips other benchmarks take).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench.common import save


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--scene-size", type=int, default=4096)
    p.add_argument("--whales", type=int, default=20)
    p.add_argument("--work", type=Path, help="keep the runs here (default: a temporary folder)")
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from jobs.demo import DemoConfig, run_demo

    runs = []
    with tempfile.TemporaryDirectory(prefix="whalescan-demo-") as tmp:
        root = args.work or tmp
        for i in range(args.runs):
            config = DemoConfig(Path(root) / f"run-{i}", args.scene_size, args.whales)
            runs.append(run_demo(config))
            print(f"run {i + 1}/{args.runs}: {runs[-1]}")
    save("demo", {"scene_size": args.scene_size, "whales": args.whales, "runs": runs})


if __name__ == "__main__":
    main()
