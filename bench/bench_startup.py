"""Where a ``detect`` run's fixed cost goes before its first region, in-process and on Ray.

Each scenario runs in a fresh Python process (cold imports, warm disk cache, as a second
``whalescan detect`` on a machine would), on a one-region scene, and reports seconds since the
process started: imports, bundle load, Ray start or join, actor start, backend (ONNX Runtime
session), first region (read, score, peaks, NMS); plus the wall time of the whole CLI command.
Scenarios: ``--workers 0`` (in-process), ``--workers 1`` on a local Ray that the run starts, and
``--workers 1 --address`` joining a running cluster (a head without CPUs and one 2-CPU worker
node, each a ``ray start``: the warm machine of issue #11). ``--fresh-onnx`` deletes the
bundle's exported ONNX first (a first run on a new bundle).

Usage: python -m bench.bench_startup [--bundle B] [--rounds 3] [--fresh-onnx] [--no-cluster]
                                    [--no-pools]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.check_nodes import LocalCluster
from bench.common import save

# Runs in the child process; prints one JSON line of cumulative seconds since its start.
PROBE = r"""
import contextlib, json, sys, time
t0 = time.perf_counter()
marks, extra = {}, {}
def mark(name):
    marks[name] = round(time.perf_counter() - t0, 3)
bundle_path, scene, out, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
address = sys.argv[5] if len(sys.argv) > 5 else None
import jobs.detect
mark("import_detect")
from models.bundle import load_bundle
from jobs.detect import DetectConfig
from jobs.worker import DetectorSettings, RegionTask, scene_regions
from tiling.scene import open_scene
from tiling.bands import select_bands, resolve_scaling
bundle = load_bundle(bundle_path)
mark("bundle_loaded")
with open_scene(scene) as ds:
    bands = select_bands(ds, scene, None)
    scaling = resolve_scaling(ds, bands, "auto")
    width, height = ds.width, ds.height
settings = DetectorSettings(stride=bundle.output_stride, backend="auto")
region = scene_regions(settings, bundle, width, height, 2048)[0]
task = RegionTask(0, scene, region, bands, scaling)
if workers == 0:
    from jobs.pool import inline_pool
    with inline_pool(str(bundle.path), settings) as pool:
        mark("backend_ready")
        pool.submit_region(task)
        pool.get_next_unordered()
        mark("first_region")
else:
    import ray
    from jobs.ray_session import ray_session
    mark("import_ray")
    with ray_session(address):
        mark("ray_started")
        if address is None:  # what a local ray.init starts (ray[default], include_dashboard=False)
            import psutil
            names = set()
            for p in psutil.Process().children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    cmd = p.cmdline()
                    script = next((c for c in cmd[1:] if c.endswith(".py")), cmd[0] if cmd else "")
                    names.add(script.rsplit("/", 1)[-1] or p.name())
            extra["ray_processes"] = sorted(names)
        from jobs.pool import actor_pool
        with actor_pool(str(bundle.path), settings, workers, address) as pool:
            ray.get([a.placement.remote() for a in pool.actors])
            mark("actors_started")
            pool.submit_region(task)
            pool.get_next_unordered()
            mark("first_region")
# Whether torch was loaded on the way (in-process: NMS and the default backend need none).
print(json.dumps({"marks": marks, "torch_imported": "torch" in sys.modules, **extra}))
"""


# The framework's own cost, no model: first and last of 16 trivial items through two actors.
POOLS = r"""
import json, time, ray
ray.init("local", num_cpus=2, include_dashboard=False, log_to_driver=False)

class Echo:
    def __call__(self, batch):
        return batch

    def echo(self, x):
        return x

def actor_pool():
    from ray.util import ActorPool
    t0 = time.perf_counter()
    pool = ActorPool([ray.remote(num_cpus=0.5)(Echo).remote() for _ in range(2)])
    it = pool.map_unordered(lambda a, x: a.echo.remote(x), range(16))
    first = next(it); first_s = time.perf_counter() - t0
    list(it)
    return first_s, time.perf_counter() - t0

def ray_data():
    import ray.data
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    t0 = time.perf_counter()
    ds = ray.data.from_items([{"x": i} for i in range(16)]).map_batches(
        Echo, batch_size=1, num_cpus=0.5, compute=ray.data.ActorPoolStrategy(min_size=1, max_size=2))
    it = iter(ds.iter_rows())
    first = next(it); first_s = time.perf_counter() - t0
    list(it)
    return first_s, time.perf_counter() - t0

out = {}
for name, f in (("actor_pool", actor_pool), ("ray_data", ray_data)):
    f()  # warm: worker processes and imports
    out[name] = f()
print(json.dumps(out))
"""


def _probe(bundle: str, scene: Path, out: Path, workers: int, env: dict, address=None) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", PROBE, bundle, str(scene), str(out), str(workers),
         *([address] if address else [])],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if run.returncode != 0:
        raise RuntimeError(run.stderr[-3000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def _cli(bundle: str, scene: Path, out: Path, workers: int, env: dict, address=None) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "jobs.detect", bundle, str(scene), "--out", str(out),
         "--workers", str(workers), "--quiet", *(["--address", address] if address else [])],
        env=env, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return time.perf_counter() - t0


def _scenario(args, bundle: str, scene: Path, root: Path, workers: int, address, env) -> dict:
    """Medians over ``args.rounds`` of the probe's marks and of the whole CLI run."""
    probes, clis, loads = [], [], []
    for i in range(args.rounds):
        if args.fresh_onnx and args.bundle is None:
            _drop_onnx(Path(bundle))
        loads.append(round(os.getloadavg()[0], 2))
        probes.append(_probe(bundle, scene, root / f"p{i}", workers, env, address))
        clis.append(_cli(bundle, scene, root / f"c{i}", workers, env, address))
    marks = [p["marks"] for p in probes]
    return {
        "marks_s": {k: statistics.median(m[k] for m in marks) for k in marks[0]},
        "cli_wall_s": statistics.median(clis),
        "torch_imported": any(p["torch_imported"] for p in probes),
        **({"ray_processes": probes[-1]["ray_processes"]} if "ray_processes" in probes[-1] else {}),
        "loadavg_1m": loads, "all": marks, "cli_all": clis,
    }  # fmt: skip


def _drop_onnx(bundle: Path) -> None:
    for f in bundle.glob("model*.onnx"):
        f.unlink()
    manifest = bundle / "bundle.json"
    m = json.loads(manifest.read_text())
    m.pop("artifacts", None)
    manifest.write_text(json.dumps(m, indent=2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bundle", default=None, help="default: an untrained whalenet bundle")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--fresh-onnx", action="store_true", help="delete exported ONNX each round")
    p.add_argument("--no-cluster", action="store_true", help="skip joining a running cluster")
    p.add_argument("--no-pools", action="store_true", help="skip ActorPool vs Ray Data")
    p.add_argument("--save-as", default="startup", help="write bench/results/NAME.json")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="whalescan-startup-"))
    from synth.scene import SceneSpec, write_scene

    scene = root / "scene.tif"
    write_scene(scene, SceneSpec(384, 384, whales=1, seed=5))  # one small region: start-up
    bundle = args.bundle
    if bundle is None:
        from tests.helpers import untrained_bundle

        bundle = str(untrained_bundle(root / "bundle"))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}  # fmt: skip
    _probe(bundle, scene, root / "warm", 0, env)  # warm the disk cache and the ONNX export
    results: dict = {"rounds": args.rounds, "fresh_onnx": args.fresh_onnx}
    scenarios = {"workers_0": (0, None, env), "workers_1": (1, None, env)}
    cluster = None
    if not args.no_cluster:
        cluster = LocalCluster(root)
        cluster.start(workers=1, cpus_per_worker=2)  # "warm machine": a cluster already running
        scenarios["workers_1_address"] = (1, cluster.address, cluster.env)
    try:
        for name, (workers, address, scenario_env) in scenarios.items():
            try:
                results[name] = _scenario(args, bundle, scene, root / name, workers, address,
                                          scenario_env)  # fmt: skip
            except RuntimeError as err:  # e.g. a local ray.init timing out on a loaded machine
                results[name] = {"error": str(err)[-600:], "loadavg_1m": os.getloadavg()[0]}
                print(f"{name}: failed: {str(err).strip().splitlines()[-1]}")
                continue
            marks = results[name]["marks_s"]
            steps = " → ".join(f"{k} {v:.2f}" for k, v in marks.items())
            print(f"{name}: {steps} s; whole CLI run {results[name]['cli_wall_s']:.2f} s "
                  f"(torch imported: {results[name]['torch_imported']}, "
                  f"load {results[name]['loadavg_1m']})")  # fmt: skip
    finally:
        if cluster is not None:
            cluster.stop()
    if args.no_pools:
        save(args.save_as, results)
        return
    run = subprocess.run([sys.executable, "-c", POOLS], env=env, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    if run.returncode == 0:
        pools = json.loads(run.stdout.strip().splitlines()[-1])
        results["pool_overhead_s"] = pools
        print("first / all of 16 trivial items, 2 actors (warm): " + ", ".join(
            f"{k} {a:.3f} / {b:.3f} s" for k, (a, b) in pools.items()))  # fmt: skip
    else:
        print(run.stderr[-2000:])
    save(args.save_as, results)


if __name__ == "__main__":
    main()
