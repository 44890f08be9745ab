"""Backends side by side on the same tiles, in one run: speed at region size, the batch-size lever
on chips, and accuracy against torch fp32 (max |Δp| and detections).

    python -m bench.bench_backends [--bundle DIR] [--chips DIR] [--tiles 1024,2048]
                                   [--batch-sizes 1,16,64] [--threads N] [--rounds 3]

Without ``--bundle`` a random-weight whalenet (64 px chips) is used: fine for speed, but its
probabilities sit near 0.5, so reduced-precision errors look smaller than on a trained model —
pass a trained bundle (and ``--chips`` its val chips, tiled into regions that contain faces)
for the accuracy columns. Speed rounds are interleaved (every variant once per round; the median
round is reported) so load from other processes hits all variants alike. Writes
``bench/results/backends.json`` and prints ratios against torch fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import machine

RESULTS = Path(__file__).parent / "results" / "backends.json"

# (label, backend name, options). torch_nchw shows what channels-last buys.
VARIANTS = [
    ("torch_fp32", "torch", {"precision": "fp32"}),
    ("torch_fp32_nchw", "torch", {"precision": "fp32", "channels_last": False}),
    ("torch_bf16", "torch", {"precision": "bf16"}),
    ("onnxruntime_fp32", "onnxruntime", {"precision": "fp32"}),
    ("openvino_fp32", "openvino", {"precision": "fp32"}),
    ("openvino_bf16", "openvino", {"precision": "bf16"}),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, help="model bundle (default: random whalenet 64 px)")
    p.add_argument("--chips", type=Path, help="chip images to tile into the region inputs")
    p.add_argument("--tiles", default="1024,2048", help="region tile sides, px")
    p.add_argument("--batch-sizes", default="1,16,64", help="batch sizes for chip-size tiles")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    p.add_argument("--min-seconds", type=float, default=1.0, help="timed seconds per cell")
    p.add_argument("--calib-chips", type=Path, help="also run onnxruntime int8 (Q/DQ)")
    p.add_argument("--only", help="comma-separated variant labels to run")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def random_bundle(directory: Path):
    from models.bundle import save_bundle
    from models.nets import build_classifier

    return save_bundle(
        directory / "whalenet-random",
        build_classifier("whalenet", 64),
        arch="whalenet", arch_args={}, input_size=64,
        mean=[0.3, 0.4, 0.45], std=[0.2, 0.2, 0.2],
        classes=["face", "not_face"], positive_class="face",
        output_stride=8, receptive_field=64, object_size_px=32,
    )  # fmt: skip


def region_inputs(side: int, chips_dir: Path | None, chip: int, seed: int = 0) -> np.ndarray:
    """(1, 3, side, side) pixels: a mosaic of chips (faces included) or uniform noise."""
    from models.backends.timing import random_tiles

    if chips_dir is None:
        return random_tiles(1, (side, side), seed)
    from models.export import chip_files, load_chips

    n = (side // chip) ** 2
    chips = np.concatenate(list(load_chips(chip_files(chips_dir, 4096), chip)))
    rng = np.random.default_rng(seed)
    pick = chips[rng.integers(0, len(chips), n)]
    k = side // chip
    mosaic = pick.reshape(k, k, 3, chip, chip).transpose(2, 0, 3, 1, 4).reshape(3, k * chip, -1)
    out = rng.uniform(0, 255, size=(1, 3, side, side)).astype(np.float32)
    out[0, :, : k * chip, : k * chip] = mosaic
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from models.backends import BackendUnavailableError, load_backend
    from models.backends.conformance import agreement
    from models.backends.timing import format_table, measure, time_calls
    from models.bundle import load_bundle
    from models.scorer import build_scorer

    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory(prefix="whalescan-bench-")
    bundle = load_bundle(args.bundle) if args.bundle else random_bundle(Path(tmp.name))
    variants = list(VARIANTS)
    if args.calib_chips:
        from models.export import export_onnx

        export_onnx(bundle, "int8", calib_chips=args.calib_chips)
        variants.append(("onnxruntime_int8", "onnxruntime", {"precision": "int8"}))
    if args.only:
        keep = set(args.only.split(","))
        variants = [v for v in variants if v[0] in keep or v[0] == "torch_fp32"]

    backends = {}
    for label, name, opts in variants:
        try:
            backends[label] = load_backend(name, bundle, threads=args.threads, **opts)
        except BackendUnavailableError as e:
            print(f"skip {label}: {e}", file=sys.stderr)

    sides = [int(s) for s in args.tiles.split(",") if s]
    load_before = os.getloadavg()
    report: dict = {
        "machine": {
            **machine(), "threads": args.threads, "torch": torch.__version__,
            "loadavg_before": load_before,
        },
        "bundle": {"arch": bundle.arch, "input_size": bundle.input_size,
                   "trained": bool(args.bundle), "chips": str(args.chips or "")},
        "regions": [], "batch_table": [],
    }  # fmt: skip

    # 1. Accuracy vs the torch fp32 scorer itself (not a backend), per region size.
    reference_model = build_scorer(bundle, "cpu")
    inputs = {s: region_inputs(s, args.chips, bundle.input_size) for s in sides}
    accuracy = {}
    for s, x in inputs.items():
        with torch.inference_mode():
            ref = reference_model(torch.from_numpy(x)).numpy()
        for label, backend in backends.items():
            accuracy[label, s] = agreement(ref, backend(x)).to_dict()

    # 2. Speed at region size, batch 1: interleaved rounds, median of rounds.
    speeds: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for s, x in inputs.items():
            for label, backend in backends.items():
                t = time_calls(backend, x, None, args.min_seconds, warmup=1)
                speeds.setdefault((label, s), []).append(s * s / 1e6 / float(np.median(t)))
    for s in sides:
        base = float(np.median(speeds["torch_fp32", s])) if ("torch_fp32", s) in speeds else None
        for label, backend in backends.items():
            mp_s = float(np.median(speeds[label, s]))
            report["regions"].append({
                "variant": label, "backend": backend.name, "precision": backend.precision,
                "tile": s, "batch_size": 1, "mp_per_s": mp_s,
                "ms_per_tile": s * s / 1e6 / mp_s * 1e3,
                "vs_torch_fp32": mp_s / base if base else None,
                "rounds_mp_per_s": speeds[label, s], **accuracy[label, s],
            })  # fmt: skip

    # 3. The batch-size lever on chip-size tiles.
    sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    chip = (bundle.input_size, bundle.input_size)
    for label, backend in backends.items():
        for row in measure(backend, sizes, chip, min_seconds=args.min_seconds / 2):
            report["batch_table"].append({"variant": label, **row.to_dict()})
    report["machine"]["loadavg_after"] = os.getloadavg()

    _print(report)
    print(format_table(_rows(report["batch_table"])))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    tmp.cleanup()
    return 0


def _rows(table):
    from models.backends.timing import BenchRow

    fields = set(BenchRow.__dataclass_fields__)
    return [BenchRow(**{k: v for k, v in r.items() if k in fields}) for r in table]


def _print(report: dict) -> None:
    m = report["machine"]
    load = f"{m['loadavg_before'][0]:.2f} before, {m['loadavg_after'][0]:.2f} after"
    print(f"{m['cpu']}, {m['cores']} cores, {m['threads']} threads; load avg {load}")
    print(f"{'variant':<18} {'prec':<5} {'tile':>5} {'MP/s':>7} {'ms':>8} {'×torch':>7} "
          f"{'max|Δp|':>9} {'peaks':>6} {'miss':>5} {'extra':>5}")  # fmt: skip
    for r in report["regions"]:
        ratio = f"{r['vs_torch_fp32']:.2f}" if r["vs_torch_fp32"] else "-"
        print(f"{r['variant']:<18} {r['precision']:<5} {r['tile']:>5} {r['mp_per_s']:>7.2f} "
              f"{r['ms_per_tile']:>8.1f} {ratio:>7} {r['max_abs']:>9.2e} {r['peaks_ref']:>6} "
              f"{r['missing']:>5} {r['extra']:>5}")  # fmt: skip


if __name__ == "__main__":
    t0 = time.time()
    rc = main()
    print(f"({time.time() - t0:.0f} s)")
    sys.exit(rc)
