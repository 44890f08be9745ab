"""labels.chips / ``whalescan chips``: positives centred, negatives off faces, split by scene,
resampled to a target GSD, scaled like detect, dataset.json as agreed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from PIL import Image

from jobs.chips import chips as chips_command
from labels.chips import OFF_CENTRE, ChipsConfig, cut_chips
from labels.read import LabelsError
from tests.helpers import FACES, GSD, labelled_squares, square_scene


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    return labelled_squares(tmp_path)


def _pngs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def _bright_centre(chip: np.ndarray) -> np.ndarray:
    """Centre (x, y) of the face square's pixels (red 200, green 120) in a chip."""
    ys, xs = np.nonzero((chip[..., 0] > 150) & (chip[..., 1] > 90) & (chip[..., 1] < 150))
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


def test_positives_are_centred_and_negatives_are_off_faces(labelled, tmp_path):
    out = tmp_path / "chips"
    summary = cut_chips(ChipsConfig(labelled, out, size=48, jitter_px=2.0, seed=1))
    for split in ("train", "val"):
        faces = _pngs(out / split / "face")
        for chip in faces.values():
            assert chip.shape == (48, 48, 3)
            assert np.abs(_bright_centre(chip) - 24).max() <= 2.0 + 1e-6
        for name, chip in _pngs(out / split / "not_face").items():
            face_px = (chip[..., 0] > 150) & (chip[..., 1] > 90) & (chip[..., 1] < 150)
            if face_px.sum() >= 20:  # part of a face shows: it must be well off-centre
                assert np.hypot(*(_bright_centre(chip) - 24)) > OFF_CENTRE * 48 - 10, name
    assert summary.counts["train/face"] + summary.counts["val/face"] == 4 * 5
    assert summary.skipped_faces == 0


def test_split_is_by_scene_and_dataset_json(labelled, tmp_path):
    out = tmp_path / "chips"
    summary = cut_chips(ChipsConfig(labelled, out, size=32, seed=3, val_fraction=0.34))
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["chip_size"] == 32 and meta["gsd_m"] == pytest.approx(GSD, rel=1e-3)  # UTM scale
    assert meta["face_size_px"] == pytest.approx(20.0)
    assert meta["source"].startswith("sha256:") and len(meta["source"]) == 7 + 64
    train, val = set(meta["scenes"]["train"]), set(meta["scenes"]["val"])
    assert len(val) == 1 and len(train) == 2 and not train & val
    index = {Path(s).name: i for i, s in enumerate(str(p) for p in sorted(labelled.parent.glob("s?.tif")))}  # fmt: skip
    val_ids = {f"s{index[Path(s).name]:03d}" for s in val}
    for split, ids in (("val", val_ids), ("train", {f"s{i:03d}" for i in range(3)} - val_ids)):
        for cls in ("face", "not_face"):
            names = {p.name[:4] for p in (out / split / cls).glob("*.png")}
            assert names and names <= ids, (split, cls, names, ids)
    assert summary.counts == meta["counts"]
    # the fingerprint follows the labels
    labelled.write_text(labelled.read_text().replace("whale_face", "face"))
    cut_chips(ChipsConfig(labelled, tmp_path / "again", size=32, seed=3, val_fraction=0.34))
    assert json.loads((tmp_path / "again" / "dataset.json").read_text())["source"] != meta["source"]


def test_chips_at_a_coarser_gsd_are_block_averages(labelled, tmp_path):
    """At twice the scenes' ground GSD a chip pixel is the mean of 2 x 2 native pixels."""
    from tiling.gsd import scene_gsd

    with rasterio.open(labelled.parent / "s0.tif") as ds:
        native = ds.read()
        target = 2 * scene_gsd(ds).m  # ground metres: UTM's scale factor included
    out = tmp_path / "chips"
    summary = cut_chips(ChipsConfig(labelled, out, size=24, gsd_m=target, jitter_px=0.0))
    assert summary.face_size_px == pytest.approx(10.0)
    assert json.loads((out / "dataset.json").read_text())["gsd_m"] == pytest.approx(target)
    chip = np.asarray(Image.open(next(out.glob("*/face/s000_face_00000.png"))))
    cx, cy = FACES["s0.tif"][0]
    crop = native[:, cy - 24 : cy + 24, cx - 24 : cx + 24].astype(np.float64)
    expected = crop.reshape(3, 24, 2, 24, 2).mean(axis=(2, 4)).transpose(1, 2, 0)
    assert np.abs(chip - expected).max() <= 1.0


def test_sixteen_bit_scenes_are_scaled_like_detect(tmp_path):
    rows = []
    for i, (name, centres) in enumerate(FACES.items()):
        square_scene(tmp_path / name, centres, dtype="uint16", seed=i)
        rows += [f"{name},{cx - 10},{cy - 10},{cx + 10},{cy + 10},whale_face" for cx, cy in centres]
    (tmp_path / "l.csv").write_text("image_path,xmin,ymin,xmax,ymax,label\n" + "\n".join(rows))
    cut_chips(ChipsConfig(tmp_path / "l.csv", tmp_path / "c", size=32, jitter_px=0.0))
    chip = np.asarray(Image.open(next((tmp_path / "c").glob("*/face/*.png"))))
    # 12-bit data (x16 of 8-bit) read as 12-bit: 200 * 16 / 4095 * 255 ≈ 199
    assert chip[16, 16, 0] == round(200 * 16 * 255 / 4095)


def test_salient_negatives_find_the_distractor(labelled, tmp_path):
    out = tmp_path / "chips"
    cut_chips(ChipsConfig(labelled, out, size=32, negatives=3.0, seed=5))
    salient = [c for p in out.glob("*/not_face/*salient*.png") for c in [np.asarray(Image.open(p))]]
    assert salient
    with_blob = [c for c in salient if ((c > 240).all(axis=2)).sum() >= 16]
    assert len(with_blob) >= len(salient) // 2


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_errors_name_the_problem(labelled, tmp_path):
    with pytest.raises(LabelsError, match="at least 2 scenes"):
        one = tmp_path / "one.csv"
        one.write_text("\n".join(labelled.read_text().splitlines()[:3]))
        cut_chips(ChipsConfig(one, tmp_path / "x"))
    square_scene(tmp_path / "plain.tif", [(60, 60)], crs=None)
    (tmp_path / "p.csv").write_text(labelled.read_text() + "plain.tif,50,50,70,70,whale_face\n")
    with pytest.raises(LabelsError, match=r"plain\.tif.*ground sample distance unknown"):
        cut_chips(ChipsConfig(tmp_path / "p.csv", tmp_path / "x", gsd_m=0.1))
    with pytest.raises(ValueError, match="jitter_px"):
        ChipsConfig(labelled, tmp_path / "x", size=32, jitter_px=20)


def test_cli(labelled, tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(chips_command, [str(labelled), str(out), "--size", "32", "--gsd", "0.1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "0.1 m/px" in result.output and (out / "dataset.json").is_file()
    # another class in the file: every box is a face (4 chips each), or --label's only
    mixed = labelled.parent / "mixed.csv"
    mixed.write_text(
        labelled.read_text().replace("whale_face", "whale") + "s0.tif,1,1,21,21,boat\n"
    )
    for extra, faces in (([], 6), (["--label", "whale"], 5)):
        result = CliRunner().invoke(chips_command, [str(mixed), str(out), "--size", "32", *extra])
        assert result.exit_code == 0, result.output
        chips = sum(len(list((out / s / "face").glob("*.png"))) for s in ("train", "val"))
        assert chips == 4 * faces
    bad = CliRunner().invoke(chips_command, [str(labelled), str(out), "--size", "8"])
    assert bad.exit_code == 2 and "size=8" in bad.output


def test_point_labels_in_a_geopackage_cut_the_same_faces(labelled, tmp_path):
    """Vector labels (points in lon/lat, sized in ground metres) give the CSV's positive chips."""
    import geopandas as gpd
    import shapely

    rows = [r.split(",") for r in labelled.read_text().splitlines()[1:]]
    with rasterio.open(labelled.parent / "s0.tif") as ds:
        transform, crs = ds.transform, ds.crs
    points = [shapely.Point(transform @ ((float(r[1]) + float(r[3])) / 2, (float(r[2]) + float(r[4])) / 2)) for r in rows]  # fmt: skip
    frame = gpd.GeoDataFrame({"scene_uri": [r[0] for r in rows]}, geometry=points, crs=crs)
    frame.to_crs("EPSG:4326").to_file(labelled.parent / "points.gpkg")
    config = {"size": 32, "jitter_px": 0.0, "seed": 2}
    cut_chips(ChipsConfig(labelled, tmp_path / "csv", **config))
    summary = cut_chips(
        ChipsConfig(labelled.parent / "points.gpkg", tmp_path / "gpkg", point_box_m=1.0, **config)
    )
    assert summary.face_size_px == pytest.approx(20.0, abs=0.01)  # 1 m at 0.05 m/px
    for split in ("train", "val"):
        a, b = _pngs(tmp_path / "csv" / split / "face"), _pngs(tmp_path / "gpkg" / split / "face")
        assert a.keys() == b.keys() and a
        for name in a:
            assert np.abs(a[name].astype(int) - b[name]).max() <= 1, name


def test_faces_at_the_edge_and_edge_negatives_are_read_as_detect_reads(tmp_path):
    """At native pixels a chip may reach past the scene: filled exactly as detect's windows."""
    from rasterio.windows import Window

    from tiling.bands import resolve_scaling, select_bands
    from tiling.read import read_window

    edge = {"e0.tif": [(11, 150), (390, 289)], "e1.tif": [(200, 10)]}
    rows = []
    for i, (name, centres) in enumerate(edge.items()):
        square_scene(tmp_path / name, centres, seed=i)
        rows += [f"{name},{cx - 10},{cy - 10},{cx + 10},{cy + 10},whale_face" for cx, cy in centres]
    (tmp_path / "e.csv").write_text("image_path,xmin,ymin,xmax,ymax,label\n" + "\n".join(rows))
    out = tmp_path / "c"
    summary = cut_chips(ChipsConfig(tmp_path / "e.csv", out, size=32, jitter_px=0.0, seed=4))
    assert summary.skipped_faces == 0
    assert summary.counts["train/face"] + summary.counts["val/face"] == 4 * 3
    [chip_path] = out.glob("*/face/s000_face_00000.png")
    with rasterio.open(tmp_path / "e0.tif") as ds:
        bands = select_bands(ds, "e0", None)
        pixels, valid = read_window(ds, "e0", Window(11 - 16, 150 - 16, 32, 32), bands,
                                    resolve_scaling(ds, bands, "auto"))  # fmt: skip
    assert not valid[:, :5].any() and valid[:, 5:].all()
    expected = np.rint(pixels).astype(np.uint8).transpose(1, 2, 0)
    np.testing.assert_array_equal(np.asarray(Image.open(chip_path)), expected)
    edges = list(out.glob("*/not_face/*_edge_*.png"))
    assert edges  # negatives reaching past a border
