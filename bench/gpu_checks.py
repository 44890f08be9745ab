"""One-shot GPU checks (no Ray): conformance and throughput of torch CUDA and TensorRT.

    python -m bench.gpu_checks [--bundle DIR] [--out FILE] [--budget-s 170]

On a machine with an NVIDIA GPU: torch CUDA fp32/fp16/bf16 and, where ``tensorrt`` imports,
TensorRT fp32/fp16 (and int8 with ``--calib-chips``) are compared with torch CPU fp32 on the same
tiles (max |Δp|, strict and within-bound detection agreement), then timed at region size
(1024², 2048²) and on chip-size batches. Steps past ``--budget-s`` are recorded as skipped, so
the run ends in about three minutes. Writes JSON to ``--out`` (default ``$OUT/gpu_checks.json``,
else ``bench/results/gpu_checks.json``) and exits 1 if a conformance check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

SHAPES = [(1, 3, 64, 64), (2, 3, 96, 160), (3, 3, 136, 200), (2, 3, 512, 768)]
CHIP_BATCHES = (1, 16, 64, 256)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--bundle", type=Path, help="model bundle (default: a sharpened random whalenet)"
    )
    p.add_argument("--calib-chips", type=Path, help="chips for a TensorRT int8 (Q/DQ) check")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--budget-s", type=float, default=170.0, help="skip steps after this long")
    p.add_argument("--min-seconds", type=float, default=0.5, help="timed seconds per cell")
    p.add_argument("--region-sides", default="1024,2048", help="region tile sides, px")
    p.add_argument("--device", default="cuda:0",
                   help="cpu: a smoke run of this script's flow (torch fp32/bf16) without a GPU")  # fmt: skip
    return p.parse_args(argv)


def test_bundle(directory: Path):
    """Random whalenet with its last layer ×30: heatmaps span ~0.1..0.9 with real peaks."""
    import torch

    from models.bundle import save_bundle
    from models.nets import build_classifier

    torch.manual_seed(0)
    model = build_classifier("whalenet", 64)
    with torch.no_grad():
        model.head[-1].weight.mul_(30.0)
    return save_bundle(
        directory / "whalenet-sharp", model,
        arch="whalenet", arch_args={}, input_size=64, mean=[0.5] * 3, std=[0.25] * 3,
        classes=["face", "not_face"], positive_class="face",
        output_stride=8, receptive_field=64, object_size_px=32,
    )  # fmt: skip


def blocky(shape, seed=0) -> np.ndarray:
    n, c, h, w = shape
    rng = np.random.default_rng(seed)
    blocks = rng.uniform(0, 255, (n, c, -(-h // 16), -(-w // 16)))
    return np.kron(blocks, np.ones((1, 1, 16, 16)))[:, :, :h, :w].astype(np.float32)


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    import torch

    from models.backends import available, load_backend
    from models.backends.conformance import TOLERANCE, agreement
    from models.backends.timing import measure, time_calls
    from models.bundle import load_bundle
    from models.scorer import build_scorer

    out_path = args.out or (
        Path(os.environ["OUT"]) / "gpu_checks.json"
        if os.environ.get("OUT")
        else Path(__file__).parent / "results" / "gpu_checks.json"
    )
    tmp = tempfile.TemporaryDirectory(prefix="whalescan-gpu-")
    bundle = load_bundle(args.bundle) if args.bundle else test_bundle(Path(tmp.name))
    report: dict = {
        "machine": {
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "cpu_threads": torch.get_num_threads(),
        },
        "bundle": {"arch": bundle.arch, "trained": bool(args.bundle)},
        "conformance": [], "regions": [], "chips": [], "skipped": [], "errors": [],
    }  # fmt: skip
    gpu = args.device.startswith("cuda")
    if gpu and not torch.cuda.is_available():
        report["errors"].append("no CUDA device visible to torch")
        return _finish(report, out_path, t0, ok=False)
    sides = [int(s) for s in args.region_sides.split(",") if s]

    # References: torch CPU fp32 on the same tiles.
    ref_model = build_scorer(bundle, "cpu")
    inputs = {s: blocky(s, i) for i, s in enumerate(SHAPES)}
    inputs.update({(1, 3, s, s): blocky((1, 3, s, s), 10 + s) for s in sides})
    refs = {}
    with torch.inference_mode():
        for s, x in inputs.items():
            refs[s] = ref_model(torch.from_numpy(x)).numpy()

    precisions = ("fp32", "fp16", "bf16") if gpu else ("fp32", "bf16")
    variants = [("torch", p, {"device": args.device, "precision": p}) for p in precisions]
    if gpu and available("tensorrt"):
        import tensorrt

        report["machine"]["tensorrt"] = tensorrt.__version__
        trt_precisions = ["fp32", "fp16"]
        if args.calib_chips:
            from models.export import export_onnx

            export_onnx(bundle, "int8", calib_chips=args.calib_chips)
            trt_precisions.append("int8")
        for p in trt_precisions:
            options = {"device": args.device, "precision": p, "tile": max(sides), "max_batch": 4}
            variants.append(("tensorrt", p, options))
    else:
        report["skipped"].append("tensorrt: not installed (pip install 'whalescan[tensorrt]')")

    ok = True
    for name, precision, options in variants:
        label = f"{name}_{precision}"
        if time.monotonic() - t0 > args.budget_s:
            report["skipped"].append(f"{label}: time budget")
            continue
        try:
            t_load = time.monotonic()
            backend = load_backend(name, bundle, **options)
            load_s = time.monotonic() - t_load
            tol = TOLERANCE[precision]
            for s, x in inputs.items():
                out = backend(x)
                strict = agreement(refs[s], out)
                within = agreement(refs[s], out, margin=tol)
                passed = within.max_abs <= tol and within.same_detections
                ok &= passed
                report["conformance"].append({
                    "variant": label, "shape": list(s), "tolerance": tol, "passed": passed,
                    "strict": strict.to_dict(), "within_bound": within.to_dict(),
                })  # fmt: skip
            for side in sides:
                x = inputs[1, 3, side, side]
                for b in (1, 4):
                    xb = np.repeat(x, b, axis=0)
                    t = time_calls(backend, xb, None, args.min_seconds, warmup=2)
                    mp_s = b * side * side / 1e6 / float(np.median(t))
                    report["regions"].append({
                        "variant": label, "tile": side, "batch_size": b, "mp_per_s": mp_s,
                        "latency_p50_ms": float(np.median(t) * 1e3), "load_s": load_s,
                    })  # fmt: skip
            if name == "tensorrt":  # a chip-size profile, so chip batches are not split by 4
                backend = load_backend(
                    name, bundle, device=args.device, precision=precision, tile=64, max_batch=256
                )
            for row in measure(backend, list(CHIP_BATCHES), (64, 64), min_seconds=args.min_seconds):
                report["chips"].append({"variant": label, **row.to_dict()})
            print(f"{label}: done at {time.monotonic() - t0:.0f} s", flush=True)
        except Exception as e:  # record and go on: one failing variant must not hide the others
            ok = False
            report["errors"].append({"variant": label, "error": repr(e),
                                     "traceback": traceback.format_exc()})  # fmt: skip
            print(f"{label}: ERROR {e!r}", flush=True)
    tmp.cleanup()
    return _finish(report, out_path, t0, ok)


def _finish(report: dict, out_path: Path, t0: float, ok: bool) -> int:
    report["seconds"] = time.monotonic() - t0
    report["ok"] = ok
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    fails = [c for c in report["conformance"] if not c["passed"]]
    print(f"conformance: {len(report['conformance']) - len(fails)} passed, {len(fails)} failed")
    for c in fails:
        print(f"  FAIL {c['variant']} {c['shape']}: {c['within_bound']}")
    for r in report["regions"]:
        print(f"  {r['variant']:<14} {r['tile']}² ×{r['batch_size']}: {r['mp_per_s']:8.1f} MP/s")
    for r in report["chips"]:
        print(f"  {r['variant']:<14} 64² ×{r['batch_size']:<4}: {r['latency_p50_ms']:7.2f} ms "
              f"p50, {r['throughput_tiles_per_s']:9.0f} tiles/s")  # fmt: skip
    for s in report["skipped"]:
        print(f"  skipped {s}")
    for e in report["errors"]:
        print(f"  error {e}")
    print(f"wrote {out_path} ({report['seconds']:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
