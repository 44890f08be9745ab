"""The HTML report: pictures exist and show the boxes, failures are listed, Chromium loads it."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import uuid
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from jobs.detect import DetectConfig, run_detect
from jobs.report import report
from reports.charts import pr_chart
from reports.overview import BOX_RGB, TRUTH_RGB, Display, Overview, draw_boxes, read_overview
from reports.store import open_store
from tests.helpers import (
    noise_scene,
    read_detections,
    read_scene_rows,
    record_attempt,
    untrained_bundle,
    write_tif,
)
from tiling.bands import Scaling
from tiling.scene import open_scene

CHROMIUM = "/usr/bin/chromium"  # Debian's `chromium` package (.ci/run installs it)


class Images(HTMLParser):
    """Collects the attributes of every <img> and the <body> data attributes of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.body: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append({k: v or "" for k, v in attrs})
        elif tag == "body":
            self.body = {k: v or "" for k, v in attrs}


def parse(page: str) -> Images:
    parser = Images()
    parser.feed(page)
    return parser


def detect(bundle: Path, scenes, out) -> None:
    config = DetectConfig(
        bundle=str(bundle), out=str(out), scenes=tuple(map(str, scenes)), backend="torch",
        workers=0, progress=False,
    )  # fmt: skip
    run_detect(config)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return untrained_bundle(tmp_path_factory.mktemp("bundle") / "b")


@pytest.fixture(scope="module")
def built(tmp_path_factory, bundle):
    """Two scenes: a noise scene (ok, many detections) and a text file named with HTML
    metacharacters (failed); then ``whalescan report`` in-process."""
    d = tmp_path_factory.mktemp("report")
    scene = noise_scene(d / "noise.tif", 700, 500)
    bad = d / "notes<b>&.tif"
    bad.write_text("not an image")
    reports, out = d / "reports", d / "html"
    detect(bundle, [scene, bad], reports)
    result = CliRunner().invoke(
        report, [str(reports), "--out", str(out), "--heatmap", "--top", "6"]
    )
    assert result.exit_code == 0, result.output
    return {"scene": scene, "bad": bad, "reports": reports, "out": out, "stdout": result.output}


FACE_RGB, ALARM_RGB = (210, 40, 40), (40, 200, 60)
TRUTH_BOXES = [[40, 40, 64, 64], [200, 100, 224, 124], [120, 220, 144, 244]]  # 2nd, 3rd missed
ALARMS = [[300, 200, 324, 224], [330, 40, 354, 64]]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A scene with red faces (one found, two missed) and green false alarms, recorded as a
    detect attempt, its labels CSV, then ``whalescan report --labels`` in-process."""
    d = tmp_path_factory.mktemp("labelled")
    data = np.full((3, 300, 400), 90, np.uint8)
    for boxes, rgb in ((TRUTH_BOXES, FACE_RGB), (ALARMS, ALARM_RGB)):
        for x0, y0, x1, y1 in boxes:
            data[:, y0:y1, x0:x1] = np.array(rgb, np.uint8)[:, None, None]
    scene = write_tif(d / "faces.tif", data)
    dets = [(TRUTH_BOXES[0], 0.9), (ALARMS[0], 0.8), (ALARMS[1], 0.3)]
    record_attempt(open_store(d / "reports"), scene, dets)
    labels = d / "labels.csv"
    rows = ["image_path,xmin,ymin,xmax,ymax,label"]
    rows += [f"faces.tif,{x0},{y0},{x1},{y1},whale_face" for x0, y0, x1, y1 in TRUTH_BOXES]
    labels.write_text("\n".join(rows) + "\n")
    out = d / "html"
    args = [str(d / "reports"), "--out", str(out), "--labels", str(labels), "--top", "1"]
    result = CliRunner().invoke(report, args)
    assert result.exit_code == 0, result.output
    return {"out": out, "scene": scene}


def test_labels_add_pr_curves_and_thumbnails_of_misses_and_false_alarms(labelled):
    out = labelled["out"]
    text = (out / "index.html").read_text()
    images = parse(text).images
    by_alt = {}
    for img in images:
        by_alt.setdefault(img["alt"], []).append(img)
        with Image.open(out / img["src"]) as im:
            assert im.size == (int(img["width"]), int(img["height"]))
    assert len(by_alt["precision/recall curve"]) == 2  # all scenes, and the scene
    assert "Misses (2 by centre in box, 1 shown)" in text  # --top 1 caps the thumbnails
    assert "False alarms (2 by centre in box, 1 shown)" in text
    (miss,) = by_alt["missed face"]
    (alarm,) = by_alt["false alarm"]
    for img, rgb in ((miss, FACE_RGB), (alarm, ALARM_RGB)):
        pixels = np.asarray(Image.open(out / img["src"]).convert("RGB"), np.float64)
        h, w, _ = pixels.shape
        centre = pixels[h // 2 - 3 : h // 2 + 3, w // 2 - 3 : w // 2 + 3].reshape(-1, 3).mean(0)
        assert np.argmax(centre) == int(np.argmax(rgb)), (img["src"], centre)
    # the overview outlines labelled faces in cyan under the yellow detections
    (overview,) = by_alt["overview with detections"]
    drawn = np.asarray(Image.open(out / overview["src"]).convert("RGB"), np.float64)
    f = drawn.shape[1] / 400
    for (x0, y0, _x1, y1), rgb in ((TRUTH_BOXES[1], TRUTH_RGB), (TRUTH_BOXES[0], BOX_RGB)):
        edge = drawn[round(y0 * f) + 3 : round(y1 * f) - 3, round(x0 * f)]
        assert np.median(np.abs(edge - rgb).max(axis=1)) < 60, (x0, y0)
    assert "labelled faces cyan" in text
    # the miss shown is the first missed label (px 200, 100, ...); the alarm the best-scored one
    assert "missed face, px 200, 100, 224, 124" in text
    assert "score 0.800, px 300, 200, 324, 224" in text
    # the metrics table: 1 of 3 faces found, 2 false alarms, by IoU and by centre
    assert re.search(
        r"centre in box</td><td class=\"n\">3</td><td class=\"n\">3</td>"
        r"<td class=\"n\">1</td><td class=\"n\">2</td><td class=\"n\">2</td>",
        text,
    )


def test_pr_chart_draws_each_curve_in_its_colour():
    chart = pr_chart(
        {"a": (np.array([0.5, 1.0]), np.array([1.0, 1.0])), "b": (np.array([0.5]), np.array([0.5]))}
    )
    pixels = np.asarray(chart)
    left, right, top, bottom = 40, chart.width - 12, 24, chart.height - 34
    x_mid = round(left + 0.75 * (right - left))
    assert tuple(pixels[top, x_mid]) == (31, 119, 180)  # a: precision 1 at recall 0.5..1
    y_half = round(bottom - 0.5 * (bottom - top))
    assert tuple(pixels[y_half - 8, round(left + 0.5 * (right - left))]) == (
        214,
        39,
        40,
    )  # b's drop
    with pytest.raises(ValueError, match="1–3 curves"):
        pr_chart({})


def test_every_image_exists_with_the_size_the_page_says(built):
    out = built["out"]
    page = parse((out / "index.html").read_text())
    assert len(page.images) == 1 + 1 + 1 + 6  # overview, density, histogram, 6 chips
    assert {f"img/{p.name}" for p in (out / "img").iterdir()} == {i["src"] for i in page.images}
    for img in page.images:
        assert not img["src"].startswith(("/", "file:")), img["src"]  # relative links
        path = out / img["src"]
        with Image.open(path) as im:
            im.load()
            assert im.format == ("JPEG" if path.suffix == ".jpg" else "PNG")
            assert im.size == (int(img["width"]), int(img["height"]))
            if "overview" in img.get("class", ""):
                assert max(im.size) >= 512
                assert abs(im.width / im.height - 700 / 500) < 0.01
    assert "1 ok, 1 failed" in built["stdout"]


def test_overview_shows_the_boxes(built):
    """Along the left edge of the best box the written overview is box-yellow; the scene isn't."""
    out = built["out"]
    det = read_detections(built["reports"]).sort_by([("score", "descending")]).to_pylist()
    inside = [d for d in det if d["px_xmin"] >= 0 and d["px_ymin"] >= 0 and d["px_ymax"] <= 500]
    x0, y0, y1 = inside[0]["px_xmin"], inside[0]["px_ymin"], inside[0]["px_ymax"]
    uri = str(built["scene"])
    with open_scene(uri) as ds:
        plain = read_overview(ds, uri, Display((1, 2, 3), Scaling((0.0,) * 3, (1.0,) * 3)))
    (overview,) = (
        i for i in parse((out / "index.html").read_text()).images if "overview" in i["alt"]
    )
    drawn = np.asarray(Image.open(out / overview["src"]).convert("RGB"), np.float64)
    assert drawn.shape[:2] == plain.image.size[::-1]
    col = round(x0 * plain.scale_x)
    rows = slice(round(y0 * plain.scale_y) + 4, round(y1 * plain.scale_y) - 4)
    # per pixel, the largest channel difference from box yellow (a label may cross the edge)
    edge = np.abs(drawn[rows, col] - BOX_RGB).max(axis=1)
    before = np.abs(np.asarray(plain.image, np.float64)[rows, col] - BOX_RGB).max(axis=1)
    assert np.median(edge) < 50
    assert np.median(before) > 100


def test_draw_boxes_outlines_each_box_exactly():
    grey = Overview(Image.new("RGB", (600, 400), (90, 90, 90)), scale_x=0.5, scale_y=0.5)
    boxes = np.array([[100.0, 100.0, 300.0, 260.0], [800.0, 400.0, 1000.0, 600.0]])
    image = np.asarray(draw_boxes(grey, boxes, np.array([0.9, 0.7]), label_top=0))
    yellow = np.all(image == BOX_RGB, axis=2)
    # box 1 → overview px (50, 50)–(149, 129) inclusive, 1 px line at this image size
    assert yellow[50, 50:150].all() and yellow[129, 50:150].all()
    assert yellow[50:130, 50].all() and yellow[50:130, 149].all()
    assert not yellow[51:129, 51:149].any()
    assert yellow[200:300, 400].all()  # box 2's left edge
    assert yellow.sum() == (2 * 100 + 2 * 78) + (2 * 100 + 2 * 98)


def test_failed_scene_and_summary_are_on_the_page(built):
    text = (built["out"] / "index.html").read_text()
    (error,) = [r for r in read_scene_rows(built["reports"]).to_pylist() if r["status"] == "failed"]
    reason = error["error"]
    assert "not a readable raster" in reason
    assert html.escape(reason) in text
    assert "notes<b>&" not in text  # every URI and error is escaped
    assert html.escape(str(built["bad"])) in text
    n = len(read_detections(built["reports"]))
    assert re.search(rf'id="stat-whale-faces"><b>{n}</b>', text)
    assert re.search(r'id="stat-failed"><b>1</b>', text)


def test_scene_filter_and_unknown_scene(built, tmp_path):
    out = tmp_path / "one"
    result = CliRunner().invoke(report, [str(built["reports"]), "--out", str(out), "--top", "1"])
    assert result.exit_code == 0 and len(list((out / "img").iterdir())) == 3
    args = [str(built["reports"]), "--out", str(out), "--scene", str(built["bad"])]
    result = CliRunner().invoke(report, args)
    assert result.exit_code == 0, result.output
    assert parse((out / "index.html").read_text()).images == []  # a failed scene has no pictures
    assert list((out / "img").iterdir()) == []  # the earlier report's images are gone
    result = CliRunner().invoke(
        report, [str(built["reports"]), "--out", str(out), "--scene", "x.tif"]
    )
    assert result.exit_code != 0 and "'x.tif': no scene rows" in result.output


def test_a_scene_gone_since_the_run_keeps_its_section(bundle, tmp_path):
    scene = noise_scene(tmp_path / "gone.tif", 300, 200, seed=5)
    detect(bundle, [scene], tmp_path / "reports")
    scene.unlink()
    result = CliRunner().invoke(report, [str(tmp_path / "reports")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "reports" / "html" / "index.html").read_text()
    assert "scene not readable now" in text
    (hist,) = parse(text).images  # the histogram needs only the report
    assert (tmp_path / "reports" / "html" / hist["src"]).is_file()


def test_s3_reports_of_s3_scenes(s3_server, bundle, tmp_path):
    from storage.s3 import s3_client

    client = s3_client()
    bucket = f"survey-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    scene = noise_scene(tmp_path / "s.tif", 400, 300, seed=7)
    client.upload_file(str(scene), bucket, "scenes/s.tif")
    detect(bundle, [f"s3://{bucket}/scenes/s.tif"], f"s3://{bucket}/reports")
    out = tmp_path / "html"
    result = CliRunner().invoke(report, [f"s3://{bucket}/reports", "--out", str(out), "--top", "2"])
    assert result.exit_code == 0, result.output
    text = (out / "index.html").read_text()
    assert "not readable" not in text and "changed since" not in text
    images = parse(text).images
    assert len(images) == 1 + 1 + 2
    for img in images:
        with Image.open(out / img["src"]) as im:
            im.verify()


@pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)",
)
@pytest.mark.parametrize("which", ["built", "labelled"])
def test_chromium_loads_every_image(which, request, tmp_path):
    index = request.getfixturevalue(which)["out"] / "index.html"
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000", "--dump-dom", index.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    body = parse(done.stdout).body
    n = len(parse(index.read_text()).images)
    assert body.get("data-images-loaded") == f"{n}/{n}", done.stdout[-2000:]
