"""Training throughput with 1 and 2 Ray Train workers, side by side in one run.

    python -m bench.bench_train [--chips DIR] [--n 600] [--size 64] [--epochs 8]
                                [--batch-size 64] [--rounds 2]

Both runs train the default whalenet with the same global batch (split over the workers), the
same data and the default augmentation on one local Ray instance, in interleaved rounds (the
best round per worker count is kept); the first epoch (worker start, warm-up) is left out.
Prints samples/s and the 2-worker / 1-worker ratio (ideal: 2.0 on 2 free cores), plus samples
per CPU-second, whose ratio is the parallel efficiency whatever else loads the machine.
Writes ``bench/results/train.json``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import save


def samples_per_s(history: list[dict], skip: int = 1, key: str = "train_seconds") -> float:
    """Train samples / train seconds (or CPU seconds) over the epochs after the first ``skip``."""
    rows = history[skip:] or history
    return sum(h["train_samples"] for h in rows) / sum(h[key] for h in rows)


def run(chips: Path, epochs: int, batch_size: int, workers: tuple[int, ...], rounds: int) -> dict:
    """Interleaved rounds (1, 2, 1, 2, …) so load from other processes hits both alike; the best
    round per worker count is reported (the least disturbed)."""
    import ray

    from jobs.ray_session import ray_session
    from jobs.ray_train import fit
    from jobs.train_classifier import TrainConfig, loop_config
    from models.data import read_dataset

    data = read_dataset(chips)
    results: dict = {k: {"rounds": []} for k in workers}
    with ray_session(None, num_cpus=max(workers)), tempfile.TemporaryDirectory() as runs:
        for r in range(rounds):
            for k in workers:
                config = TrainConfig(data=chips, out=Path(runs) / f"w{k}", epochs=epochs,
                                     workers=k, batch_size=batch_size)  # fmt: skip
                result = fit(loop_config(config, data), data, workers=k, storage_path=runs,
                             name=f"w{k}-{r}", use_gpu=False)  # fmt: skip
                history = _history(result)
                rate = samples_per_s(history)
                per_cpu = samples_per_s(history, key="train_cpu_seconds")
                results[k]["rounds"].append(rate)
                results[k].setdefault("per_cpu_s", []).append(per_cpu)
                print(f"round {r + 1}: {k} worker(s) {rate:.0f} samples/s, "
                      f"{per_cpu:.0f} samples per CPU-second", flush=True)  # fmt: skip
        cpus = ray.cluster_resources().get("CPU")
    for k in workers:
        results[k]["samples_per_s"] = max(results[k]["rounds"])
    return {"workers": results, "cluster_cpus": cpus}


def _history(result) -> list[dict]:
    import json

    with result.checkpoint.as_directory() as d:
        return json.loads((Path(d) / "train_state.json").read_text())["history"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=Path, help="ImageFolder chips; default: synth chips")
    ap.add_argument("--n", type=int, default=600, help="synth train chips")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        chips = args.chips
        if chips is None:
            from synth.chips import write_chips

            chips = Path(tmp) / "chips"
            write_chips(chips, n=args.n, size=args.size, seed=11)
        res = run(chips, args.epochs, args.batch_size, (1, 2), args.rounds)
    one, two = (res["workers"][k]["samples_per_s"] for k in (1, 2))
    cpu1, cpu2 = (max(res["workers"][k]["per_cpu_s"]) for k in (1, 2))
    print(f"1 worker {one:.0f}, 2 workers {two:.0f} samples/s: ratio {two / one:.2f}×")
    # Samples per CPU-second: the parallel efficiency, independent of how busy the machine is.
    print(f"samples per CPU-second: 1 worker {cpu1:.0f}, 2 workers {cpu2:.0f}: "
          f"efficiency {cpu2 / cpu1:.2f}")  # fmt: skip
    save("train", {
        "chips": str(args.chips or f"synth n={args.n} size={args.size}"),
        "epochs": args.epochs, "batch_size": args.batch_size, "rounds": args.rounds,
        "samples_per_s": {"1": one, "2": two}, "ratio_2_over_1": two / one,
        "rounds_samples_per_s": {str(k): v["rounds"] for k, v in res["workers"].items()},
        "samples_per_cpu_s": {"1": cpu1, "2": cpu2}, "efficiency_2_over_1": cpu2 / cpu1,
        "cluster_cpus": res["cluster_cpus"],
    })  # fmt: skip


if __name__ == "__main__":
    main()
