"""The paper's crop, checked against independent computations on images with known marks."""

from __future__ import annotations

import numpy as np
import pytest

from hand3d.crop import CropBox, crop_box, crop_image, crop_keypoints, from_crop, to_crop


def _keypoints(points, vis=None) -> np.ndarray:
    kp = np.zeros((21, 3), np.float32)
    kp[: len(points), :2] = points
    kp[: len(points), 2] = 1 if vis is None else vis
    return kp


def test_box_is_2_2_times_the_visible_box_centred():
    kp = _keypoints([[400, 300], [500, 360]])  # box 100 x 60, centre (450, 330)
    box = crop_box(kp, 1280, 720, mirrored=False)
    assert box.side == 220 and (box.x0, box.y0) == (340, 220)


def test_box_shifts_inside_the_image_and_centres_when_too_big():
    kp = _keypoints([[5, 5], [105, 45]])  # would start at x=-55
    box = crop_box(kp, 400, 300, mirrored=False)
    assert (box.x0, box.y0, box.side) == (0, 0, 220)
    big = crop_box(_keypoints([[10, 10], [190, 90]]), 200, 100, mirrored=False)  # side 396 > both sides
    assert big.side == 396 and big.x0 == (200 - 396) // 2 and big.y0 == (100 - 396) // 2


def test_invisible_and_outside_keypoints_do_not_shape_the_box():
    kp = _keypoints([[400, 300], [500, 360], [900, 900], [1500, 10]], vis=[1, 1, 0, 1])
    assert crop_box(kp, 1280, 720, mirrored=False) == crop_box(kp[:2], 1280, 720, mirrored=False)
    with pytest.raises(ValueError, match="fewer than two"):
        crop_box(_keypoints([[10, 10]]), 100, 100, mirrored=False)


@pytest.mark.parametrize("mirrored", [False, True])
def test_marked_pixel_lands_where_the_keypoint_goes(mirrored):
    image = np.zeros((720, 1280, 3), np.uint8)
    image[333, 411] = 255  # one bright pixel at x=411, y=333
    box = CropBox(x0=300, y0=250, side=320, mirrored=mirrored)  # scale 1: exact pixels
    crop = crop_image(image, box)
    where = to_crop(np.array([[411.0, 333.0]]), box)[0]
    expected_x = 411 - 300 if not mirrored else 319 - (411 - 300)
    assert tuple(np.argwhere(crop[..., 0] == 255)[0]) == (333 - 250, expected_x)
    assert tuple(where) == (expected_x, 333 - 250)


def test_downscaled_crop_keeps_block_centres():
    image = np.zeros((1000, 1000), np.uint8)
    image[400:402, 600:602] = 255  # 2x2 block centred at (600.5, 400.5)
    box = CropBox(x0=500, y0=300, side=640, mirrored=False)  # halves
    crop = crop_image(image, box)
    ((row, col),) = np.argwhere(crop == crop.max())
    centre = to_crop(np.array([[600.5, 400.5]]), box)[0]
    assert (col, row) == tuple(np.rint(centre).astype(int))


def test_to_crop_and_from_crop_are_inverse():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1000, size=(50, 2))
    for mirrored in (False, True):
        box = CropBox(123, 45, 537, mirrored)
        np.testing.assert_allclose(from_crop(to_crop(pts, box), box), pts, atol=1e-3)


def test_region_outside_the_image_is_black():
    image = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_image(image, CropBox(-50, -50, 200, False), size=200)
    assert crop[:50, :50].max() == 0 and crop[60:140, 60:140].min() == 200


@pytest.mark.parametrize("box", [CropBox(-500, 10, 50, False), CropBox(10, -80, 50, False), CropBox(120, 0, 40, True)])
def test_a_box_that_misses_the_image_crops_black(box):
    crop = crop_image(np.full((100, 100, 3), 200, np.uint8), box, size=32)
    assert crop.shape == (32, 32, 3) and crop.max() == 0


def test_crop_keypoints_visibility():
    kp = _keypoints([[50, 50], [60, 60], [-5, 20], [70, 70]], vis=[1, 1, 1, 0])
    box = crop_box(kp, 100, 100, mirrored=True)
    out = crop_keypoints(kp, box, 100, 100)
    assert out[:4, 2].tolist() == [1, 1, 0, 0], "outside the image or unannotated: not visible"
    np.testing.assert_allclose(out[:2, :2], to_crop(kp[:2, :2], box))
    # inside the image but outside a tight crop (a user's box_scale below 1): not visible either
    tight = CropBox(40, 40, 20, False)
    assert crop_keypoints(kp, tight, 100, 100)[:2, 2].tolist() == [1, 0]
