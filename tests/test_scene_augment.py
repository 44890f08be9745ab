"""Detector crop views (scale, look) and the spatial hold-out keep labels and pixels consistent."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.scene_augment import blur, change_look, resize_crop
from models.scene_crops import SceneCrops
from models.scene_holdout import split_scene, strip_start

RF, STRIDE = 135, 4


def painted_scene(size: int, boxes: np.ndarray, seed: int = 0) -> np.ndarray:
    """A dark noisy sea (3, size, size) with each box painted white."""
    rng = np.random.default_rng(seed)
    img = rng.integers(20, 60, (3, size, size)).astype(np.uint8)
    for x0, y0, x1, y1 in boxes.astype(int):
        img[:, y0:y1, x0:x1] = 255
    return img


@pytest.mark.parametrize("augment", [("scale",), ("scale", "rot90", "flip", "look")])
def test_crop_boxes_follow_the_painted_faces_through_scale_and_turns(augment):
    boxes = np.array([[300, 310, 330, 338], [520, 200, 544, 222], [150, 600, 186, 640]], float)
    crops = SceneCrops([painted_scene(800, boxes)], [boxes], crop=199, receptive_field=RF,
                       stride=STRIDE, crops_per_epoch=40, positive_fraction=1.0,
                       augment=augment, seed=5)  # fmt: skip
    checked, sides = 0, set()
    for i in range(len(crops)):
        image, heat, target, weight = (t.numpy() for t in crops[i])
        for b in target[:, weight > 0].T:  # each supervised box, crop px after the view
            x0, y0, x1, y1 = b
            sides.add(round(float(x1 - x0), 1))
            core = image[:, int(y0) + 3 : int(np.ceil(y1)) - 3, int(x0) + 3 : int(np.ceil(x1)) - 3]
            if core.size:
                assert core.min() > 150, (i, b)  # inside the label: the white face
                checked += 1
            ring = image[0, max(int(y1) + 3, 0) : int(y1) + 5, int(x0) + 3 : int(x1) - 3]
            if ring.size:
                assert ring.max() < 200, (i, b)  # just below it: sea again
    assert checked > 20
    assert len(sides) > 3, "the zoom never changed the box sizes"


def test_resize_crop_scales_a_square_and_keeps_the_mask_sharp():
    image = np.zeros((3, 100, 100), np.uint8)
    image[:, 40:60, 40:60] = 200
    valid = np.zeros((100, 100), bool)
    valid[:, :50] = True
    out, mask = resize_crop(image, valid, 150)
    assert out.shape == (3, 150, 150) and mask.dtype == bool
    assert out[:, 62:88, 62:88].min() == 200 and out[:, :55, :].max() == 0
    assert mask[:, :75].all() and not mask[:, 75:].any()


def test_change_look_changes_off_scene_colour_with_the_scene_but_keeps_it_flat():
    """Past the edge (the scene's fill colour) the pointwise changes apply as to a sea pixel of
    that colour; blur and noise do not, so it stays one flat colour as detection reads it."""
    rng = np.random.default_rng(0)
    image = np.full((3, 64, 64), 90, np.uint8)
    image[:, :, :24] = rng.integers(60, 120, (3, 64, 24))
    valid = np.ones((64, 64), bool)
    valid[:, 48:] = False
    changed = 0
    for _ in range(20):
        out = change_look(image, valid, rng)
        off = out[:, :, 48:].reshape(3, -1)
        assert out.dtype == np.uint8 and (off == off[:, :1]).all()
        changed += abs(float(off.mean()) - 90) > 2
        assert np.abs(out[:, 20:40, 30:40].astype(int).mean((1, 2)) - off[:, 0]).max() < 4
    assert changed >= 10


def test_blur_matches_a_slow_gaussian_and_keeps_constants():
    rng = np.random.default_rng(3)
    x = rng.random((2, 20, 30)).astype(np.float32)
    k = np.exp(-(np.arange(-2, 3) ** 2) / (2 * 0.9**2))
    k /= k.sum()
    p = np.pad(x, ((0, 0), (2, 2), (2, 2)), mode="edge")
    slow = np.zeros_like(x)
    for i in range(20):
        for j in range(30):
            slow[:, i, j] = np.einsum("cab,a,b->c", p[:, i : i + 5, j : j + 5], k, k)
    np.testing.assert_allclose(blur(x, 0.9), slow, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(blur(np.full((1, 9, 9), 0.4, np.float32), 1.1), 0.4, rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 470), st.floats(0, 470), st.floats(5, 40), st.floats(5, 40)),
             max_size=12),
    st.floats(0.05, 0.5),
)  # fmt: skip
def test_holdout_strip_never_cuts_a_box_and_keeps_every_box_once(raw, fraction):
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in raw], float).reshape(-1, 4)
    image = np.arange(3 * 512 * 16, dtype=np.uint32).reshape(3, 512, 16).astype(np.uint8)
    part = split_scene(image, boxes, fraction)
    cut = part.cut
    assert 0 < cut <= round(512 * (1 - fraction))
    assert not np.any((boxes[:, 1] < cut) & (boxes[:, 3] > cut))
    assert len(part.train_boxes) + len(part.val_boxes) == len(boxes)
    assert (part.train_boxes[:, 3] <= cut).all() and (part.val_boxes[:, 1] >= 0).all()
    np.testing.assert_array_equal(np.concatenate([part.train_image, part.val_image], 1), image)
    back = np.concatenate([part.train_boxes, part.val_boxes + [0, cut, 0, cut]])
    np.testing.assert_allclose(np.sort(back, 0), np.sort(boxes, 0))


def test_strip_start_moves_up_past_a_box_on_the_nominal_row():
    boxes = np.array([[0, 860, 30, 890]], float)
    assert strip_start(boxes, 1000, 0.125) == 860  # 875 would cut the box
    with pytest.raises(ValueError, match="fraction"):
        strip_start(boxes, 1000, 1.0)
