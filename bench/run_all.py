"""``make bench``: every benchmark in turn; each prints its side-by-side ratios and writes JSON."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = [
    "bench.bench_train",
    "bench.bench_backends",
    "bench.bench_detect",
    "bench.bench_demo",
    "bench.bench_ledger",
]


def main() -> int:
    failed = []
    for module in BENCHMARKS:
        print(f"\n=== {module}", flush=True)
        if subprocess.call([sys.executable, "-m", module, *sys.argv[1:]]):
            failed.append(module)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
