"""The static HTML report: ``index.html`` plus its images, from a reports root (local or S3).

Per scene row of the ledger (``scenes/``): a summary line up top; for ``ok`` scenes a section
with the overview and its boxes, an optional detection-density overlay, the score histogram,
chips of the best detections and the run/model metadata; ``failed``/``skipped`` rows are listed
with their reasons. Given an evaluation against labelled truth (:mod:`reports.evaluate`), the
page adds metrics and a precision/recall curve for all scenes and per scene, with thumbnails of
missed faces and false alarms (by centre-in-box). Scene pixels are read from the scene itself (local or ``s3://``) as one
decimated overview read and small windowed reads (:mod:`reports.overview`). Images go to
``<out>/img/`` and are linked relatively, so the folder can be moved or served as it is.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rasterio.errors import RasterioError

from reports import page
from reports.charts import pr_chart, score_histogram
from reports.evaluate import Evaluation, SceneEval, metrics
from reports.latest import detection_relpaths, read_detections
from reports.ledger import read_ledger
from reports.overview import (
    TRUTH_RGB,
    density_overlay,
    display_bands,
    draw_boxes,
    read_chip,
    read_overview,
)
from reports.store import Store
from reports.truth import Matching
from storage.atomic import write_bytes_atomic
from tiling.scene import SceneError, open_scene, resolve_scene, scene_env

__all__ = ["HtmlReport", "write_html_report"]

log = logging.getLogger(__name__)

_DETECTION_COLUMNS = [
    "detection_id", "label", "score", "px_xmin", "px_ymin", "px_xmax", "px_ymax", "lon", "lat",
]  # fmt: skip
_PX = ["px_xmin", "px_ymin", "px_xmax", "px_ymax"]
_IMAGE_NAME = re.compile(
    r"[0-9a-f]{24}-(overview|density|top\d{2}|miss\d{2}|fa\d{2})\.jpg"
    r"|[0-9a-f]{24}-(scores|pr)\.png|overall-pr\.png"
)


@dataclass(frozen=True)
class HtmlReport:
    """What ``write_html_report`` wrote: the page and its counts (scene rows by status)."""

    index: Path
    scenes: int
    ok: int
    failed: int
    skipped: int
    detections: int


def write_html_report(
    store: Store,
    out_dir: str | os.PathLike[str],
    scene_uris: Sequence[str] = (),
    *,
    heatmap: bool = False,
    top_n: int = 12,
    overview_px: int = 1024,
    evaluation: Evaluation | None = None,
) -> HtmlReport:
    """Write ``out_dir/index.html`` (and ``out_dir/img/*``) for the reports in ``store``.

    ``scene_uris`` keeps only those scenes (each must have a ledger row); empty keeps all.
    ``top_n`` chips per scene; ``overview_px`` the overview's long side (clamped to 512..1600).
    A scene that cannot be read now (moved, no access) keeps its section, with the reason in
    place of the pictures. ``evaluation`` (of the same reports against labels) adds the truth
    views, with up to ``top_n`` thumbnails each of misses and false alarms per scene.
    The page is written last and atomically, after all its images.
    """
    out = Path(out_dir)
    (out / "img").mkdir(parents=True, exist_ok=True)
    rows = _scene_rows(store, scene_uris)
    det_paths = detection_relpaths(store)
    ok_rows = [r for r in rows if r["status"] == "ok"]
    evals = {s.scene_key: s for s in evaluation.scenes} if evaluation else {}
    sections = []
    for i, row in enumerate(ok_rows, 1):
        log.info("scene %d/%d: %s", i, len(ok_rows), row["scene_uri"])
        scene_eval = evals.get(row["scene_key"])
        truth_boxes = None if scene_eval is None else scene_eval.truth_boxes
        section = _scene_section(
            store, det_paths, row, out, heatmap, top_n, overview_px, truth_boxes
        )
        if scene_eval is not None:
            truth = _truth_view(out, row, scene_eval, evaluation.iou_threshold, top_n)
            section = dataclasses.replace(section, truth=truth)
        sections.append(section)
    overall = _overall_view(out, evaluation) if evaluation else None
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "skipped")}
    whales = sum(r["detections"] or 0 for r in rows if r["status"] == "ok")
    html = page.render_page(
        root=store.root,
        generated=datetime.now(UTC),
        rows=rows,
        sections=sections,
        counts=counts,
        whales=whales,
        truth=overall,
    )
    index = out / "index.html"
    write_bytes_atomic(index, html.encode("utf-8"))
    linked = [p for sec in sections for p in _pictures(sec.images)]
    linked += [
        p for view in (overall, *(s.truth for s in sections)) if view for p in view.pictures()
    ]
    _remove_stale(out / "img", {p.src for p in linked})
    return HtmlReport(index, len(rows), counts["ok"], counts["failed"], counts["skipped"], whales)


def _scene_rows(store: Store, scene_uris: Sequence[str]) -> list[dict[str, Any]]:
    """Ledger rows (one per scene key, the latest attempt), ok first, then by URI and time."""
    rows = read_ledger(store).to_pylist()  # the latest attempt of each key wins
    if scene_uris:
        known = {r["scene_uri"] for r in rows}
        missing = [u for u in scene_uris if u not in known]
        if missing:
            raise ValueError(
                f"{', '.join(map(repr, missing))}: no scene rows under {store.root!r} "
                f"({len(known)} scene(s) recorded)"
            )
        wanted = set(scene_uris)
        rows = [r for r in rows if r["scene_uri"] in wanted]
    never = datetime.min.replace(tzinfo=UTC)
    order = {"ok": 0, "failed": 1, "skipped": 2}
    return sorted(
        rows,
        key=lambda r: (order.get(r["status"], 3), r["scene_uri"], r["finished_at"] or never),
    )


def _scene_section(
    store: Store,
    det_paths: dict[str, str],
    row: dict[str, Any],
    out: Path,
    heatmap: bool,
    top_n: int,
    overview_px: int,
    truth_boxes: np.ndarray | None = None,
) -> page.SceneSection:
    """One ``ok`` scene's pictures; ``truth_boxes`` (M, 4) scene px, if given, are outlined in
    ``TRUTH_RGB`` on the overview under the detections."""
    key = row["scene_key"]
    uri = row["scene_uri"]
    det = read_detections(store, det_paths.get(key), _DETECTION_COLUMNS)
    notes = []
    if det_paths.get(key) is None and row["detections"]:
        notes.append(f"detections file for key {key} not found under {store.root}")
    boxes = (
        np.stack([det.column(c).to_numpy() for c in _PX], axis=1) if len(det) else np.zeros((0, 4))
    )
    scores = det.column("score").to_numpy().astype(np.float64) if len(det) else np.zeros(0)

    hist = _save(out, f"{key}-scores.png", score_histogram(scores))
    top = det.slice(0, top_n).to_pylist()
    overview_pic = density_pic = None
    chips: list[page.Picture] = []
    try:
        notes.extend(_version_note(row))
        with scene_env(uri), open_scene(uri) as ds:
            display = display_bands(ds, uri)
            overview = read_overview(ds, uri, display, overview_px)
            if truth_boxes is not None and len(truth_boxes):
                labelled = draw_boxes(
                    overview, truth_boxes, np.zeros(len(truth_boxes)), 0, TRUTH_RGB
                )
                overview = dataclasses.replace(overview, image=labelled)
            overview_pic = _save(out, f"{key}-overview.jpg", draw_boxes(overview, boxes, scores))
            if heatmap:
                density = density_overlay(overview, boxes, scores)
                density_pic = _save(out, f"{key}-density.jpg", density)
            for i, d in enumerate(top):
                chip = read_chip(ds, uri, display, np.array([d[c] for c in _PX]))
                chips.append(_save(out, f"{key}-top{i + 1:02d}.jpg", chip))
    except (SceneError, RasterioError, OSError) as err:
        log.warning("%s: no pictures: %s", uri, err)
        notes.append(f"scene not readable now, so no pictures: {err}")
    images = page.SceneImages(overview_pic, density_pic, hist, tuple(chips))
    return page.SceneSection(row, len(det), tuple(top), images, tuple(notes))


def _curves(matching_of: Callable[[str], Matching]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Legend label → (recall, precision) for centre-in-box and IoU."""
    curves = {}
    for label, criterion in (("centre in box", "centre"), ("IoU", "iou")):
        _, precision, recall = matching_of(criterion).pr_curve()
        curves[label] = (recall, precision)
    return curves


def _overall_view(out: Path, evaluation: Evaluation) -> page.TruthView:
    pr = _save(out, "overall-pr.png", pr_chart(_curves(evaluation.overall)))
    return page.TruthView(
        evaluation.iou_threshold, {c: metrics(evaluation.overall(c)) for c in ("iou", "centre")}, pr
    )


def _truth_view(
    out: Path, row: dict[str, Any], ev: SceneEval, iou_threshold: float, top_n: int
) -> page.TruthView:
    """The scene's metrics, PR chart and thumbnails of its misses and false alarms (centre in box,
    the first ``top_n`` of each: misses in label order, false alarms best score first)."""
    key, uri = row["scene_key"], row["scene_uri"]
    pr = _save(out, f"{key}-pr.png", pr_chart(_curves(ev.matching)))
    matching = ev.by_centre
    miss_idx, fa_idx = matching.missed()[:top_n], matching.false_alarms()[:top_n]
    misses: list[tuple[page.Picture, str]] = []
    alarms: list[tuple[page.Picture, str]] = []
    try:
        with scene_env(uri), open_scene(uri) as ds:
            display = display_bands(ds, uri)
            for i, j in enumerate(miss_idx):
                box = ev.truth_boxes[j]
                chip = _save(out, f"{key}-miss{i + 1:02d}.jpg", read_chip(ds, uri, display, box))
                misses.append((chip, "missed face, px " + ", ".join(f"{v:.0f}" for v in box)))
            for i, j in enumerate(fa_idx):
                box = ev.det_boxes[j]
                chip = _save(out, f"{key}-fa{i + 1:02d}.jpg", read_chip(ds, uri, display, box))
                alarms.append(
                    (chip, f"score {ev.scores[j]:.3f}, px " + ", ".join(f"{v:.0f}" for v in box))
                )
    except (SceneError, RasterioError, OSError) as err:
        log.warning("%s: no truth thumbnails: %s", uri, err)
    per = {c: metrics(ev.matching(c)) for c in ("iou", "centre")}
    return page.TruthView(iou_threshold, per, pr, tuple(misses), tuple(alarms))


def _version_note(row: dict[str, Any]) -> list[str]:
    """A warning when the scene changed since it was detected (boxes may no longer match)."""
    try:
        now = resolve_scene(row["scene_uri"]).version
    except (SceneError, OSError):
        return []  # open_scene below says why it cannot be read
    if now != row["scene_version"]:
        return [
            f"the scene changed since this run (version {row['scene_version']} then, {now} now); "
            "the pictures show the current file"
        ]
    return []


def _save(out: Path, name: str, image: Image.Image) -> page.Picture:
    """Save ``image`` as ``out/img/name`` (JPEG or PNG by suffix); its relative link and size."""
    path = out / "img" / name
    if name.endswith(".jpg"):
        image.save(path, "JPEG", quality=88, subsampling=0)  # 4:4:4 keeps thin box lines yellow
    else:
        image.save(path, "PNG", optimize=True)
    return page.Picture(f"img/{name}", image.width, image.height)


def _pictures(images: page.SceneImages) -> list[page.Picture]:
    return [p for p in (images.overview, images.density, images.histogram, *images.chips) if p]


def _remove_stale(img_dir: Path, linked: set[str]) -> None:
    """Delete images of an earlier report in ``img_dir`` that the new page does not link.

    Only names this module writes (``<scene key>-<kind>.jpg|png``) are touched.
    """
    for path in img_dir.iterdir():
        if _IMAGE_NAME.fullmatch(path.name) and f"img/{path.name}" not in linked:
            path.unlink(missing_ok=True)
