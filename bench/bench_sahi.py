"""SAHI vs ``whalescan detect``: the same trained detector, sliced by each, on held-out scenes.

    python -m bench.bench_sahi --bundle B [--bundle B2 ...] [--sizes 4096,16384,32768]
        [--whales N] [--seed S] [--hard] [--contenders sahi-torch,sahi-ort,ws-inline,ws-ray]
        [--repeat R] [--scene-dir DIR]

Contenders, each one job in its own subprocess (wall time and peak RSS of its whole process
tree, sampled every 50 ms by ``bench.common.run_with_peak_rss``):

* ``sahi-torch`` / ``sahi-ort``: ``sahi.predict.get_sliced_prediction`` on the scene path with
  :class:`bench.sahi_model.WhalescanSahiModel` running the bundle in PyTorch / the same ONNX
  Runtime scorer ``whalescan detect`` uses; slices = whalescan's region + halo on each side
  (overlap = 2 × halo), ``perform_standard_pred=False``, SAHI's default GREEDYNMM/IOS 0.5 merge.
* ``ws-inline`` / ``ws-ray``: ``whalescan detect`` (``jobs.detect.run_detect``) with
  ``--workers 0`` / the default Ray actor pool, default backend (``auto``).

Scored against the scene's truth (:mod:`reports.truth`): centre-in-box F1 and AP, IoU-AP50,
duplicates (a second detection on a matched face), and *seam cuts*: detections matched to a face
by centre whose IoU with it is < 0.5 while the face straddles an inner edge of that contender's
slices (SAHI) or read windows (whalescan). Writes ``bench/results/sahi.json``.

``--repeat R`` runs the contenders R times, interleaved (A B C D A B C D …), and keeps each
one's fastest run (all times and the 1-minute load average at each start are in the row): on a
shared machine whose load moves, the minimum of interleaved runs is the fairest comparison.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

CONTENDERS = ("sahi-torch", "sahi-ort", "ws-inline", "ws-ray")
SAHI_BACKENDS = {"sahi-torch": "torch", "sahi-ort": "onnxruntime"}


def slice_geometry(bundle_path: str, region_size: int) -> tuple[int, int, object]:
    """(slice side px, overlap px, detector settings) for SAHI: whalescan's region + halo."""
    from jobs.detect import DetectConfig, for_bundle
    from jobs.worker import DetectorSettings
    from models.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    config = for_bundle(DetectConfig(bundle=bundle_path, out="unused"), bundle)
    settings = DetectorSettings(
        mode=config.mode, stride=bundle.output_stride, threshold=config.threshold
    )
    halo = settings.decode_params(bundle).halo
    core = max(settings.stride, region_size // settings.stride * settings.stride)
    return core + 2 * halo, 2 * halo, settings


def sahi_slices(width: int, height: int, side: int, overlap: int) -> list[tuple[int, ...]]:
    """SAHI's slice boxes [xmin, ymin, xmax, ymax] for this geometry (``sahi.slicing``)."""
    from sahi.slicing import get_slice_bboxes

    ratio = (overlap + 0.5) / side  # SAHI floors ratio × side: this yields exactly ``overlap``
    return get_slice_bboxes(height, width, side, side, False, ratio, ratio)


def whalescan_windows(bundle_path: str, width: int, height: int, region_size: int):
    from jobs.worker import scene_regions
    from models.bundle import load_bundle

    _, _, settings = slice_geometry(bundle_path, region_size)
    regions = scene_regions(settings, load_bundle(bundle_path), width, height, region_size)
    return [
        (r.read.col_off, r.read.row_off, r.read.col_off + r.read.width,
         r.read.row_off + r.read.height)
        for r in regions
    ]  # fmt: skip


# --- one contender, in its own process ------------------------------------------------------


def run_sahi(bundle_path: str, scene: str, backend: str, region_size: int):
    from dataclasses import replace

    from sahi.predict import get_sliced_prediction

    from bench.sahi_model import WhalescanSahiModel

    side, overlap, settings = slice_geometry(bundle_path, region_size)
    model = WhalescanSahiModel(bundle_path, replace(settings, backend=backend))
    ratio = (overlap + 0.5) / side
    result = get_sliced_prediction(
        scene, model, slice_height=side, slice_width=side, overlap_height_ratio=ratio,
        overlap_width_ratio=ratio, perform_standard_pred=False, verbose=0,
    )  # fmt: skip
    preds = result.object_prediction_list
    boxes = np.array([p.bbox.to_xyxy() for p in preds], np.float64).reshape(-1, 4)
    scores = np.array([p.score.value for p in preds], np.float32)
    return boxes, scores


def run_whalescan(bundle_path: str, scene: str, workers: int | None, region_size: int):
    import pyarrow.parquet as pq

    from jobs.detect import DetectConfig, run_detect

    with tempfile.TemporaryDirectory() as out:
        (o,) = run_detect(
            DetectConfig(
                bundle=bundle_path, out=out, scenes=(scene,), workers=workers,
                region_size=region_size, progress=False,
            )
        )  # fmt: skip
        if o.status != "ok":
            raise RuntimeError(f"{scene}: whalescan detect failed: {o.error}")
        t = pq.read_table(o.detections_path)
        cols = ("px_xmin", "px_ymin", "px_xmax", "px_ymax")
        boxes = np.stack([t[c].to_numpy() for c in cols], 1).reshape(-1, 4).astype(np.float64)
        return boxes, t["score"].to_numpy().astype(np.float32)


@click.command("one", hidden=True)
@click.argument("contender", type=click.Choice(CONTENDERS))
@click.argument("bundle")
@click.argument("scene")
@click.argument("out")
@click.option("--region-size", type=int, default=2048)
def one(contender, bundle, scene, out, region_size):
    """Run one contender on one scene; save boxes, scores and its detection seconds to OUT.npz."""
    t0 = time.perf_counter()
    if contender in SAHI_BACKENDS:
        boxes, scores = run_sahi(bundle, scene, SAHI_BACKENDS[contender], region_size)
    else:
        workers = 0 if contender == "ws-inline" else None
        boxes, scores = run_whalescan(bundle, scene, workers, region_size)
    np.savez(out, boxes=boxes, scores=scores, seconds=time.perf_counter() - t0)


# --- scoring --------------------------------------------------------------------------------


def score(boxes, scores, truth, seams) -> dict:
    """Centre-in-box and IoU-0.5 matchings of (N, 4) ``boxes`` with (M, 4) ``truth``."""
    from jobs.evaluate_detections import box_iou
    from reports.truth import centre_in_box_pairs, greedy_match, iou_pairs, match_report

    iou = box_iou(boxes, truth)
    by_centre = greedy_match(scores, *centre_in_box_pairs(boxes, truth))
    by_iou = match_report(greedy_match(scores, *iou_pairs(iou, 0.5)))
    centre = match_report(by_centre)
    return {
        "faces": centre.truths,
        "detections": centre.detections,
        "centre_tp": centre.true_positives,
        "centre_precision": round(centre.precision, 4),
        "centre_recall": round(centre.recall, 4),
        "centre_f1": round(centre.f1, 4),
        "centre_ap": round(centre.average_precision, 4),
        "iou_ap50": round(by_iou.average_precision, 4),
        "duplicates": centre.duplicates,
        "seam_cuts": seam_cuts(by_centre, iou, truth, seams),
    }


def seam_cuts(matching, iou, truth, seams) -> int:
    """Matched detections with IoU < 0.5 on a face that straddles an inner seam."""
    xs, ys = seams
    n = 0
    for rank, t in enumerate(matching.truth_of):
        if t < 0 or not matching.tp[rank]:
            continue
        d = matching.order[rank]
        x0, y0, x1, y1 = truth[t]
        straddles = any(x0 < s < x1 for s in xs) or any(y0 < s < y1 for s in ys)
        n += bool(straddles and iou[d, t] < 0.5)
    return n


def inner_seams(windows, width: int, height: int) -> tuple[set, set]:
    """x and y of window edges strictly inside the scene."""
    xs = {v for w in windows for v in (w[0], w[2]) if 0 < v < width}
    ys = {v for w in windows for v in (w[1], w[3]) if 0 < v < height}
    return xs, ys


# --- the benchmark --------------------------------------------------------------------------


def make_scene(folder: Path, size: int, whales: int, seed: int, hard: bool) -> Path:
    from synth.look import DEFAULT_LOOK, HARD_LOOK
    from synth.scene import SceneSpec, write_scene

    path = folder / f"scene{size}-s{seed}{'-hard' if hard else ''}.tif"
    if not path.exists():
        look = HARD_LOOK if hard else DEFAULT_LOOK
        t0 = time.perf_counter()
        write_scene(path, SceneSpec(size, size, whales=whales, seed=seed, look=look))
        click.echo(f"wrote {path} in {time.perf_counter() - t0:.0f} s", err=True)
    return path


def truth_boxes(scene: Path) -> np.ndarray:
    import pyarrow.parquet as pq

    t = pq.read_table(scene.with_suffix(".truth.parquet"))
    cols = ("px_xmin", "px_ymin", "px_xmax", "px_ymax")
    return np.stack([t[c].to_numpy() for c in cols], 1).reshape(-1, 4)


def contend(contender, bundle, scene: Path, size: int, region_size: int, tmp: Path) -> dict:
    from bench.common import run_with_peak_rss

    out = tmp / f"{contender}.npz"
    cmd = [sys.executable, "-m", "bench.bench_sahi", "one", contender, bundle, str(scene),
           str(out), "--region-size", str(region_size)]  # fmt: skip
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    load = round(os.getloadavg()[0], 2)
    try:
        wall, peak = run_with_peak_rss(cmd, env=env)
    except RuntimeError as e:  # e.g. Ray's node start timing out on a loaded machine: one row lost
        last = str(e).strip().splitlines()[-1]
        return {"contender": contender, "loadavg_1m": load, "error": last}
    got = np.load(out)
    if contender in SAHI_BACKENDS:
        side, overlap, _ = slice_geometry(bundle, region_size)
        windows = sahi_slices(size, size, side, overlap)
    else:
        windows = whalescan_windows(bundle, size, size, region_size)
    row = {
        "contender": contender,
        "job_s": round(wall, 2),
        "detect_s": round(float(got["seconds"]), 2),
        "peak_rss_gib": round(peak / 2**30, 3),
        "loadavg_1m": load,
    }
    return row | score(got["boxes"], got["scores"], truth_boxes(scene),
                       inner_seams(windows, size, size))  # fmt: skip


def fastest(runs: list[dict]) -> dict:
    """One contender's repeated runs → its fastest, with every run's times and load kept; a run
    that failed is counted with its error, and the row is an error row only if all failed."""
    ok = [r for r in runs if "error" not in r]
    errors = [r["error"] for r in runs if "error" in r]
    failed = {"failed_runs": len(errors), "errors": errors} if errors else {}
    if not ok:
        return runs[0] | failed
    return min(ok, key=lambda r: r["job_s"]) | failed | {
        "runs": len(ok),
        "job_s_all": [r["job_s"] for r in ok],
        "detect_s_all": [r["detect_s"] for r in ok],
        "loadavg_1m_all": [r["loadavg_1m"] for r in ok],
        "peak_rss_gib": max(r["peak_rss_gib"] for r in ok),
    }  # fmt: skip


def default_whales(size: int) -> int:
    """Faces per scene: 60 at 16384² as in the issue (0.22 per MP), never fewer than 40."""
    return max(40, round(size * size / 1e6 * 60 / 268.4))


HEADER = ("contender", "job_s", "detect_s", "peak_rss_gib", "detections", "centre_f1",
          "centre_ap", "iou_ap50", "duplicates", "seam_cuts")  # fmt: skip


def table(rows) -> str:
    lines = [" | ".join(HEADER), " | ".join("---" for _ in HEADER)]
    lines += [" | ".join(str(r.get(k, "failed")) for k in HEADER) for r in rows]
    return "\n".join(lines)


@click.group(invoke_without_command=True)
@click.option("--bundle", "bundles", multiple=True, help="A trained bundle (repeat for several).")
@click.option(
    "--sizes", default="4096", show_default=True, help="Scene sides in px, e.g. 4096,16384."
)
@click.option("--whales", type=int, default=None, help="Faces per scene; default by area.")
@click.option("--seed", type=int, default=9101, show_default=True, help="Held-out scene seed.")
@click.option("--hard", is_flag=True, help="The hard look (sizes, calves, haze, distractors).")
@click.option("--contenders", default=",".join(CONTENDERS), show_default=True)
@click.option("--region-size", type=int, default=2048, show_default=True)
@click.option(
    "--repeat",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Runs per contender, interleaved; the fastest is reported.",
)
@click.option("--scene-dir", default=None, help="Keep scenes here (default: a temp dir, deleted).")
@click.option("--save-as", default="sahi", show_default=True, help="bench/results/NAME.json")
@click.pass_context
def main(
    ctx, bundles, sizes, whales, seed, hard, contenders, region_size, repeat, scene_dir, save_as
):
    if ctx.invoked_subcommand:
        return
    if not bundles:
        raise click.UsageError("give at least one --bundle")
    from bench.common import save
    from models.bundle import load_bundle

    names = [c.strip() for c in contenders.split(",") if c.strip()]
    bad = sorted(set(names) - set(CONTENDERS))
    if bad:
        raise click.BadParameter(f"{bad}: expected some of {CONTENDERS}", param_hint="--contenders")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(scene_dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for size in (int(s) for s in sizes.split(",")):
            n = whales or default_whales(size)
            scene = make_scene(folder, size, n, seed, hard)
            for bundle in bundles:
                b = load_bundle(bundle)
                tries = {c: [] for c in names}
                for _ in range(repeat):
                    for c in names:
                        tries[c].append(contend(c, bundle, scene, size, region_size, Path(tmp)))
                        click.echo(json.dumps(tries[c][-1]), err=True)
                rows = [fastest(tries[c]) for c in names]
                click.echo(f"\n{size}² ({n} whales, seed {seed}), {b.kind} {b.arch} {bundle}")
                click.echo(table(rows))
                runs.append({"size": size, "whales": n, "seed": seed, "hard": hard,
                             "bundle": Path(bundle).name, "kind": b.kind, "arch": b.arch,
                             "weights_sha256": b.weights_sha256, "rows": rows})  # fmt: skip
                save(save_as, {"region_size": region_size, "runs": runs})  # keep what is done
            if not scene_dir:
                scene.unlink()
                scene.with_suffix(".truth.parquet").unlink()


main.add_command(one)

if __name__ == "__main__":
    main()
