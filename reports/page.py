"""The HTML markup of the report page: pure functions from scene rows and picture links to text.

Every value that comes from data (URIs, errors, labels, ids) goes through ``html.escape``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from string import Template
from typing import Any

__all__ = ["Picture", "SceneImages", "SceneSection", "TruthView", "render_page"]


@dataclass(frozen=True)
class Picture:
    """An image written next to the page: ``src`` relative to ``index.html``, size in px."""

    src: str
    width: int
    height: int


@dataclass(frozen=True)
class SceneImages:
    """The pictures of one scene; ``overview``/``density`` None when the scene was not readable."""

    overview: Picture | None
    density: Picture | None
    histogram: Picture
    chips: tuple[Picture, ...] = ()


@dataclass(frozen=True)
class TruthView:
    """A scene (or all scenes) against labelled truth: ``metrics`` per criterion (``"iou"``,
    ``"centre"``: dicts of :func:`reports.evaluate.metrics`), the PR chart, and thumbnails of
    missed faces and false alarms (by centre-in-box) with their captions."""

    iou_threshold: float
    metrics: dict[str, dict[str, Any]]
    pr: Picture
    misses: tuple[tuple[Picture, str], ...] = ()
    false_alarms: tuple[tuple[Picture, str], ...] = ()

    def pictures(self) -> list[Picture]:
        return [self.pr, *(p for p, _ in self.misses), *(p for p, _ in self.false_alarms)]


@dataclass(frozen=True)
class SceneSection:
    """One ``ok`` scene: ledger row, detection count, best detections (dicts), pictures, notes."""

    row: dict[str, Any]
    detections: int
    top: tuple[dict[str, Any], ...]
    images: SceneImages
    notes: tuple[str, ...] = ()
    truth: TruthView | None = None


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: float | int | None, fmt: str = ".1f") -> str:
    return "–" if value is None else format(value, fmt)


def _time(value: datetime | None) -> str:
    return "–" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _rate(row: dict[str, Any]) -> float | None:
    mp, s = row.get("megapixels"), row.get("seconds")
    return mp / s if mp is not None and s else None


def anchor(row: dict[str, Any]) -> str:
    return f"scene-{row['scene_key']}"


def _img(pic: Picture, alt: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return (
        f'<img src="{esc(pic.src)}" width="{pic.width}" height="{pic.height}" alt="{esc(alt)}"{c}>'
    )


def _summary(rows: Sequence[dict[str, Any]], counts: dict[str, int], whales: int) -> str:
    mp = sum(r["megapixels"] or 0 for r in rows if r["status"] == "ok")
    runs = sorted({r["run_id"] for r in rows if r["run_id"]})
    tiles = [
        ("scenes", len(rows)), ("ok", counts["ok"]), ("failed", counts["failed"]),
        ("skipped", counts["skipped"]), ("whale faces", whales), ("megapixels", f"{mp:.1f}"),
        ("runs", len(runs)),
    ]  # fmt: skip
    stats = "".join(
        f'<div class="stat" id="stat-{esc(k.replace(" ", "-"))}"><b>{esc(v)}</b>{esc(k)}</div>'
        for k, v in tiles
    )
    body = []
    for r in rows:
        name = esc(r["scene_uri"])
        target = anchor(r) if r["status"] == "ok" else f"failed-{r['scene_key']}"
        link = f'<a href="#{esc(target)}">{name}</a>'
        body.append(
            f'<tr class="{esc(r["status"])}"><td>{link}</td><td>{esc(r["status"])}</td>'
            f'<td class="n">{_num(r["detections"], "d")}</td>'
            f'<td class="n">{_num(r["megapixels"])}</td>'
            f'<td class="n">{_num(r["seconds"])}</td><td class="n">{_num(_rate(r))}</td>'
            f"<td>{esc(r['backend'])}</td><td>{esc(r['mode'])}</td>"
            f"<td>{esc(_time(r['finished_at']))}</td></tr>"
        )
    table = (
        '<table id="scenes"><thead><tr><th>scene</th><th>status</th><th>whales</th><th>MP</th>'
        "<th>s</th><th>MP/s</th><th>backend</th><th>mode</th><th>finished</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
        if rows
        else "<p>No scenes recorded under this reports root.</p>"
    )
    return f'<div class="stats">{stats}</div>{table}'


def _failed(rows: Sequence[dict[str, Any]]) -> str:
    bad = [r for r in rows if r["status"] != "ok"]
    if not bad:
        return ""
    items = "".join(
        f'<li id="failed-{esc(r["scene_key"])}"><code>{esc(r["scene_uri"])}</code> '
        f'<span class="tag {esc(r["status"])}">{esc(r["status"])}</span>'
        f'<pre class="error">{esc(r["error"] or "(no reason recorded)")}</pre>'
        f"<small>version {esc(r['scene_version'])} · run {esc(r['run_id'])} · "
        f"{esc(_time(r['finished_at']))}</small></li>"
        for r in bad
    )
    title = f"Failed and skipped scenes ({len(bad)})"
    return f'<section id="failed"><h2>{title}</h2><ul>{items}</ul></section>'


def _metadata(row: dict[str, Any]) -> str:
    sha = row["model_sha256"] or ""
    size = (
        f"{row['width']} × {row['height']} px, {row['bands']} band(s) {row['dtype']}"
        if row["width"]
        else "–"
    )
    items = [
        ("version", esc(row["scene_version"])),
        ("size", esc(size)),
        ("CRS", esc(row["native_crs"] or "none")),
        ("run", f"<code>{esc(row['run_id'])}</code>"),
        ("model", f'<code title="{esc(sha)}">{esc(sha[:12])}</code>'),
        ("backend", esc(row["backend"])),
        ("mode", esc(row["mode"])),
        ("time", f"{_num(row['seconds'])} s for {_num(row['megapixels'])} MP "
                 f"({_num(_rate(row))} MP/s)"),
        ("started", esc(_time(row["started_at"]))),
        ("finished", esc(_time(row["finished_at"]))),
    ]  # fmt: skip
    return '<dl class="meta">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _gallery(section: SceneSection) -> str:
    """The best detections as chips with score, label, lon/lat and id (box in the tooltip)."""
    if not section.top:
        return "<p>No detections.</p>"
    chips = section.images.chips
    cards = []
    for i, d in enumerate(section.top):
        chip = _img(chips[i], f"detection {i + 1}", "chip") if i < len(chips) else ""
        lonlat = f"{d['lon']:.6f}, {d['lat']:.6f}" if d["lon"] is not None else "no CRS"
        box = ", ".join(f"{d[c]:.0f}" for c in ("px_xmin", "px_ymin", "px_xmax", "px_ymax"))
        cards.append(
            f'<figure class="det" title="box (px x0, y0, x1, y1): {esc(box)}">{chip}'
            f"<figcaption><b>#{i + 1}</b> {d['score']:.3f} {esc(d['label'])}<br>{esc(lonlat)}"
            f"<br><code>{esc(d['detection_id'])}</code></figcaption></figure>"
        )
    return f'<div class="gallery">{"".join(cards)}</div>'


def _truth(view: TruthView | None, heading: str = "h3") -> str:
    """Metrics by IoU and by centre-in-box, the PR chart, then misses and false alarms."""
    if view is None:
        return ""
    cols = [
        ("truths", "faces"), ("detections", "detections"), ("true_positives", "found"),
        ("false_positives", "false alarms"), ("misses", "misses"), ("duplicates", "duplicates"),
        ("precision", "precision"), ("recall", "recall"), ("f1", "F1"),
        ("average_precision", "AP"),
    ]  # fmt: skip
    names = {"iou": f"IoU ≥ {view.iou_threshold:g}", "centre": "centre in box"}
    head = "".join(f"<th>{esc(label)}</th>" for _, label in cols)
    body = "".join(
        f"<tr><td>{esc(names[c])}</td>"
        + "".join(
            f'<td class="n">{_num(m[k], ".3f" if isinstance(m[k], float) else "d")}</td>'
            for k, _ in cols
        )
        + "</tr>"
        for c, m in view.metrics.items()
    )
    parts = [
        f'<{heading}>Against truth</{heading}><div class="side"><table class="truth">'
        f"<thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<figure>{_img(view.pr, 'precision/recall curve')}"
        "<figcaption>precision/recall</figcaption></figure></div>"
    ]
    centre = view.metrics.get("centre", {})
    for kind, pics, total in (
        ("misses", view.misses, centre.get("misses", len(view.misses))),
        ("false alarms", view.false_alarms, centre.get("false_positives", len(view.false_alarms))),
    ):
        if not pics:  # the all-scenes view has none; a scene shows up to --top
            continue
        cards = "".join(
            f'<figure class="det">{_img(pic, "missed face" if kind == "misses" else "false alarm", "chip")}'
            f"<figcaption>{esc(caption)}</figcaption></figure>"
            for pic, caption in pics
        )
        shown = f", {len(pics)} shown" if len(pics) < total else ""
        parts.append(
            f'<h4 class="{esc(kind.replace(" ", "-"))}">{esc(kind.capitalize())} '
            f'({total} by centre in box{shown})</h4><div class="gallery">{cards}</div>'
        )
    return "".join(parts)


def _scene(section: SceneSection) -> str:
    row, images = section.row, section.images
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in section.notes)
    pictures = []
    key = " (yellow; labelled faces cyan)" if section.truth else ""
    if images.overview:
        pictures.append(
            f"<figure>{_img(images.overview, 'overview with detections', 'overview')}"
            f"<figcaption>overview, {section.detections} box(es){key}</figcaption></figure>"
        )
    if images.density:
        pictures.append(
            f"<figure>{_img(images.density, 'detection density', 'overview')}"
            "<figcaption>detection density (score-weighted box centres)</figcaption></figure>"
        )
    return (
        f'<section class="scene" id="{esc(anchor(row))}">'
        f"<h2>{esc(row['scene_uri'])}</h2>{notes}"
        f'<p class="count"><b>{section.detections}</b> whale face(s)</p>'
        f'<div class="pictures">{"".join(pictures)}</div>'
        f'<div class="side">{_metadata(row)}<figure>'
        f"{_img(images.histogram, 'score histogram')}<figcaption>scores</figcaption></figure></div>"
        f"{_truth(section.truth)}<h3>Best detections</h3>{_gallery(section)}</section>"
    )


_PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>whalescan report — $root</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1640px; padding: 0 1em;
       color: #222; }
h1 { margin-bottom: 0; } h2 { margin-top: 2em; word-break: break-all; }
.sub { color: #666; margin-top: .2em; }
.stats { display: flex; gap: .8em; flex-wrap: wrap; margin: 1em 0; }
.stat { background: #f3f5f8; border-radius: 6px; padding: .5em 1em; min-width: 6em; }
.stat b { display: block; font-size: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border-bottom: 1px solid #ddd; padding: .25em .6em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td, .tag.failed { color: #b00020; } tr.skipped td, .tag.skipped { color: #8a6d00; }
pre.error { white-space: pre-wrap; background: #fff3f3; padding: .4em; margin: .3em 0; }
.pictures { display: flex; gap: 1em; flex-wrap: wrap; }
.pictures figure { flex: 1 1 600px; max-width: 1600px; }
img.overview { max-width: 100%; height: auto; border: 1px solid #ccc; }
.gallery { display: flex; flex-wrap: wrap; gap: .8em; }
figure.det { width: 160px; font-size: 12px; } figure.det code { font-size: 10px; }
img.chip { display: block; }
.side { display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: .1em 1em; }
dl.meta dt { color: #666; } dl.meta dd { margin: 0; }
.note { background: #fff8e1; padding: .4em; }
table.truth td:first-child { color: #666; white-space: nowrap; }
figure { margin: .5em 0; } figcaption { color: #666; }
</style>
</head>
<body>
<h1>whalescan report</h1>
<p class="sub">reports <code>$root</code> · generated $generated</p>
$summary
$truth
$failed
$scenes
<script>
// Marks the page once every image has finished: data-images-loaded="loaded/total" on <body>
// (headless-browser tests read it; a broken image is finished but not loaded).
(function () {
  function check() {
    var imgs = Array.prototype.slice.call(document.images);
    if (imgs.some(function (i) { return !i.complete; })) { setTimeout(check, 50); return; }
    var ok = imgs.filter(function (i) { return i.naturalWidth > 0; }).length;
    document.body.dataset.imagesLoaded = ok + "/" + imgs.length;
  }
  if (document.readyState === "complete") { check(); }
  else { window.addEventListener("load", check); }
})();
</script>
</body>
</html>
""")


def render_page(
    *,
    root: str,
    generated: datetime,
    rows: Sequence[dict[str, Any]],
    sections: Sequence[SceneSection],
    counts: dict[str, int],
    whales: int,
    truth: TruthView | None = None,
) -> str:
    """The whole ``index.html``: summary, all scenes against truth (when labels were given),
    failed scenes, then one section per ``ok`` scene."""
    return _PAGE.substitute(
        root=esc(root),
        generated=esc(_time(generated)),
        summary=_summary(rows, counts, whales),
        truth=f'<section id="truth">{_truth(truth, "h2")}</section>' if truth else "",
        failed=_failed(rows),
        scenes="\n".join(_scene(s) for s in sections),
    )
