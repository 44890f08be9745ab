"""Approach 3 on large faces: the issue's labelled set flown at 4 cm/px instead of 10 (faces ×2.5).

    python -m bench.bench_face_scale [--work /tmp/a3big] [--train-seed 41] [--test-seed 9091]

The training set and the held-out 30 MP scene are ``bench.bench_approach3``'s, resampled to
4 cm (``synth.regsd``: cubic, truth scaled). ``whalescan train`` with its defaults then works at
the GSD where the median face is 32 px (``jobs.labelled_scenes``) and ``detect`` reads every
scene there; the test scene is scored both as flown (4 cm) and at the original 10 cm. Beside it,
``--face-px 0`` (the scenes' own 4 cm, as before) trains for two epochs only and detects the
4 cm scene once: its wall times against the default's say what working at native pixels costs
(its scores after two epochs mean nothing; a full run would take hours here: every epoch's
validation, the mining and the threshold tuning read 4.3× the pixels). Writes ``bench/results/face_scale.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bench.bench_approach3 import TEST_SIZE, TRAIN, cli, score, synth
from bench.common import machine, save

GSD = 0.04


def flown_at(labels: Path, work: Path, gsd: float) -> Path:
    """``labels``' scenes and faces at ``gsd`` m/px in ``work``/<set>-gsd<gsd>; its CSV."""
    from synth.labelled import face_rows, write_annotations
    from synth.regsd import write_at_gsd
    from synth.truth import truth_path

    out = work / f"{labels.parent.name}-gsd{gsd}"
    out.mkdir(exist_ok=True)
    rows = []
    for tif in sorted(labels.parent.glob("scene_???.tif")):
        dst = out / tif.name
        if not dst.exists():
            write_at_gsd(tif, dst, gsd)
        rows += face_rows(dst, truth_path(dst))
    return write_annotations(out / "annotations.csv", rows)


def train(labels: Path, bundle: Path, *extra: str) -> dict:
    """Train (once per ``bundle``: its wall time goes to ``<bundle>.train_wall.json``; None for a
    bundle trained otherwise) and return the figures of its bundle.json."""
    wall = bundle.parent / f"{bundle.name}.train_wall.json"
    if not (bundle / "bundle.json").exists():
        seconds, _ = cli("train", str(labels), "--out", str(bundle), "--workers", "2",
                         "--no-progress", *extra)  # fmt: skip
        wall.write_text(json.dumps({"seconds": round(seconds, 1)}))
    manifest = json.loads((bundle / "bundle.json").read_text())
    m = manifest["metrics"]
    epochs = [h["train_seconds"] for h in m["history"]]
    return {
        "train_command": " ".join(["whalescan train", str(labels), "--out", str(bundle),
                                   "--workers 2", *extra]),
        "gsd_m": manifest["gsd_m"], "train_fit_seconds": m["train_seconds"],
        "train_wall_seconds": json.loads(wall.read_text())["seconds"] if wall.exists() else None,
        "seconds_per_epoch": round(sum(epochs) / len(epochs), 2), "epochs": len(epochs),
        "threshold": m["threshold"], "object_size_px": manifest["object_size_px"],
    }  # fmt: skip


@click.command()
@click.option("--work", type=click.Path(path_type=Path), default=Path("/tmp/a3big"))
@click.option("--train-seed", type=int, default=41)
@click.option("--test-seed", type=int, default=9091)
def main(work: Path, train_seed: int, test_seed: int) -> None:
    work.mkdir(parents=True, exist_ok=True)
    base = synth(work / f"train{train_seed}", seed=train_seed, **TRAIN)
    test = synth(work / f"test{test_seed}", 1, TEST_SIZE, test_seed)
    labels, test_big = flown_at(base, work, GSD), flown_at(test, work, GSD)
    scaled = train(labels, work / "bundle")
    tests = {"at 4 cm/px": test_big, "at 10 cm/px": test}
    scaled["tests"] = {
        name: score(
            work / "bundle", t.parent / "scene_000.tif", t, work / f"reports-{t.parent.name}"
        )
        for name, t in tests.items()
    }
    print(json.dumps(scaled, indent=1), flush=True)
    native = train(labels, work / "bundle_native", "--face-px", "0", "--epochs", "2")
    timing = score(work / "bundle_native", test_big.parent / "scene_000.tif", test_big,
                   work / "reports-native")  # fmt: skip
    native["detect_seconds_at_4cm"] = timing["detect_seconds"]  # its accuracy means nothing
    print(json.dumps(native, indent=1), flush=True)
    save("face_scale", {"command": " ".join(sys.argv), "gsd_m": GSD, "default": scaled,
                        "native_two_epochs": native, "machine_end": machine()})  # fmt: skip


if __name__ == "__main__":
    main()
