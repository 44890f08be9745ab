"""Scan planning against a large ledger: plan time and peak memory at 10k, 100k and 1M rows.

For each size N a local reports root gets a compacted scenes table of N rows (30 ``dt=``
segments, as ``whalescan compact`` leaves them), and ``jobs.scan.plan_scan`` is fed a synthetic
listing of N objects (pages of 1000, as S3 sends them): 0.5 % of them new, 0.5 % of the ledger's
URIs gone from the source, 0.1 % failed before, the rest done. At 10k the same ledger is also
planned uncompacted (one object per attempt, as ``whalescan detect`` writes them) and then
compacted, to show what compaction buys. Each plan runs in a fresh process, so its peak RSS
(``ru_maxrss``) is its own. Writes bench/results/ledger.json.

    python -m bench.bench_ledger                  # 10k, 100k, 1M (≈ 2 min on 2 cores)
    python -m bench.bench_ledger --sizes 10000    # one size
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import save

MODEL = "b" * 64
MODE = "fcn"
SOURCE = "s3://bench-scenes/drops/"
PARTITIONS = 30
PAGE = 1000


def _uri(i: int) -> str:
    return f"{SOURCE}{i // 1000:04d}/scene-{i:07d}.tif"


def _version(i: int) -> str:
    return f"{i:032x}"


def _modified(i: int) -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=i % PARTITIONS, seconds=i)


def _ledger_range(n: int) -> range:
    """The ledger's scenes: all but the first 0.5 % of the listing, plus 0.5 % gone from it."""
    return range(n // 200, n + n // 200)


def _stamp():
    """The run stamp of the benchmark's scan: default-like settings, a fixed model."""
    from reports.run import RunStamp

    params = {"threshold": 0.5, "nms_iou": 0.3, "stride": 8, "bands": None, "scale": "auto"}
    return RunStamp("20260201T000000Z-bench", MODEL, MODE, "torch:cpu", params, params)


def _ledger_table(n: int):
    import pyarrow as pa

    from reports.schema import SCENES_SCHEMA

    ids, stamp = _ledger_range(n), _stamp()
    finished = datetime(2026, 2, 1, tzinfo=UTC)
    cols = {
        "scene_uri": [_uri(i) for i in ids],
        "scene_version": [_version(i) for i in ids],
        "scene_key": [stamp.scene_key(_uri(i), _version(i)) for i in ids],
        "status": ["failed" if i % 1000 == 7 else "ok" for i in ids],
        "mode": [MODE] * len(ids),
        "model_sha256": [MODEL] * len(ids),
        "run_id": ["20260201T000000Z-bench"] * len(ids),
        "finished_at": [finished] * len(ids),
        "scene_modified": [_modified(i) for i in ids],
    }
    arrays = [
        pa.array(cols[f.name], f.type) if f.name in cols else pa.nulls(len(ids), f.type)
        for f in SCENES_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=SCENES_SCHEMA)


def build(n: int, root: Path, compacted: bool) -> None:
    """Write the ledger of size ``n`` under ``root``: 30 segments, or one object per row."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = _ledger_table(n)
    days = pc.strftime(table["scene_modified"], format="%Y-%m-%d")
    for day in sorted(set(days.to_pylist())):
        part = table.filter(pc.equal(days, day))
        folder = root / "scenes" / f"dt={day}"
        folder.mkdir(parents=True, exist_ok=True)
        if compacted:
            pq.write_table(part, folder / "compacted-bench.parquet")
            continue
        for i in range(len(part)):
            row = part.slice(i, 1)
            pq.write_table(row, folder / f"{row['scene_key'][0].as_py()}.run.parquet")


def _listing(n: int) -> Iterator:
    from jobs.scan import ListingPage
    from tiling.scene import Scene

    for start in range(0, n, PAGE):
        refs = [
            Scene(_uri(i), _version(i), _modified(i)) for i in range(start, min(n, start + PAGE))
        ]
        yield ListingPage(refs, [])


def plan(n: int, root: Path) -> dict:
    """Plan a scan of the synthetic listing against the ledger under ``root``; time and memory."""
    from jobs.scan import ScanConfig, plan_scan

    bundle = Path(tempfile.mkdtemp())  # ScanConfig checks only that the bundle path exists
    config = ScanConfig(SOURCE, str(bundle), str(root), retry_failed=False)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0, c0 = time.perf_counter(), time.process_time()
    result = plan_scan(config, pages=_listing(n), stamp=_stamp())
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "plan_s": round(seconds, 2),
        "plan_cpu_s": round(cpu, 2),  # wall time is inflated when other jobs share the cores
        "peak_rss_mib": round(peak / 2**20, 1),
        "rss_before_plan_mib": round(base / 2**20, 1),
        "todo": len(result.todo) + len(result.deferred),
        "unchanged": result.unchanged,
        "failed_before": len(result.failed_before),
        "deleted": len(result.deleted),
    }


def _child(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_ledger", "--child", *args],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _compact(root: Path) -> dict:
    from reports.compact import compact
    from reports.store import open_store

    t0, c0 = time.perf_counter(), time.process_time()
    summary = compact(open_store(root))
    return {
        "compact_s": round(time.perf_counter() - t0, 2),
        "compact_cpu_s": round(time.process_time() - c0, 2),
        "objects_in": summary.objects_in,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--child", nargs=3, metavar=("WHAT", "N", "ROOT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        what, n, root = args.child[0], int(args.child[1]), Path(args.child[2])
        if what in ("build", "build-uncompacted"):
            t0 = time.perf_counter()
            build(n, root, compacted=what == "build")
            result = {"build_s": round(time.perf_counter() - t0, 2)}
        elif what == "compact":
            result = _compact(root)
        else:
            result = plan(n, root)
        print(json.dumps(result))
        return 0

    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
            if n <= 10_000:
                loose = Path(tmp) / "uncompacted"
                _child("build-uncompacted", str(n), str(loose))
                row = {
                    "rows": n,
                    "layout": "one object per attempt",
                    **_child("plan", str(n), str(loose)),
                }
                rows.append(row)
                print(row)
                row = {"rows": n, "layout": "compacted by `whalescan compact`",
                       **_child("compact", str(n), str(loose)), **_child("plan", str(n), str(loose))}  # fmt: skip
                rows.append(row)
                print(row)
            root = Path(tmp) / "compacted"
            built = _child("build", str(n), str(root))
            row = {
                "rows": n,
                "layout": "30 compacted segments",
                **built,
                **_child("plan", str(n), str(root)),
            }
            rows.append(row)
            print(row)
    save("ledger", {"listing": "synthetic, pages of 1000 objects", "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
