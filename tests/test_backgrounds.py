"""Background sets: reading a user's folder, the offline default set, HDF5 round trip, random crops at render time."""

from __future__ import annotations

import logging

import cv2
import h5py
import numpy as np
import pytest

from hand3d import backgrounds as backgrounds_module
from hand3d.backgrounds import SKIMAGE_PHOTOS, build_backgrounds, open_backgrounds, random_background

SIZE = 24


@pytest.fixture
def photo_folder(tmp_path):
    """Five image files of every supported kind (one corrupt) plus a text file, one level nested."""
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    rng = np.random.default_rng(0)
    red = np.zeros((30, 40, 3), np.uint8)
    red[..., 2] = 255  # BGR: pure red
    cv2.imwrite(str(folder / "a_red.png"), red)
    cv2.imwrite(str(folder / "nested" / "b_gray.jpg"), rng.integers(0, 256, size=(50, 30), dtype=np.uint8))
    rgba = np.dstack([np.full((32, 32, 3), (255, 0, 0), np.uint8), np.full((32, 32), 128, np.uint8)])  # blue
    cv2.imwrite(str(folder / "nested" / "c_rgba.png"), rgba)
    thirds = np.zeros((30, 90, 3), np.uint8)
    thirds[:, :30], thirds[:, 30:60], thirds[:, 60:] = (0, 0, 255), (0, 255, 0), (255, 0, 0)
    cv2.imwrite(str(folder / "D_THIRDS.JPG"), thirds)
    (folder / "nested" / "broken.jpg").write_bytes(rng.integers(0, 256, size=500, dtype=np.uint8).tobytes())
    (folder / "notes.txt").write_text("not an image")
    return folder


def built(path, folder, procedural=0, seed=0):
    """(images, names, skipped) of the set `build_backgrounds` writes to `path`."""
    build_backgrounds(path, folder=folder, size=SIZE, procedural=procedural, seed=seed)
    with h5py.File(path, "r") as f:
        assert f["images"].chunks == (1, SIZE, SIZE, 3)
        return f["images"][()], [n.decode() for n in f["names"][()]], int(f.attrs["skipped"])


def test_folder_images_are_read_squared_and_corrupt_ones_skipped(photo_folder, tmp_path, caplog):
    path = tmp_path / "out" / "backgrounds.h5"
    with caplog.at_level(logging.WARNING, logger="hand3d.backgrounds"):
        images, names, skipped = built(path, photo_folder, procedural=3)
    assert names == ["D_THIRDS.JPG", "a_red.png", "nested/b_gray.jpg", "nested/c_rgba.png"]
    assert skipped == 1 and "broken.jpg" in caplog.text
    assert images.shape == (4, SIZE, SIZE, 3) and images.dtype == np.uint8
    thirds, red, gray, rgba = images
    assert np.all(np.abs(thirds[:, 4:-4].astype(int) - (0, 255, 0)) < 40)  # the middle third (JPEG edges aside)
    assert np.all(red == (255, 0, 0))
    assert np.all(gray[..., 0] == gray[..., 1]) and np.all(gray[..., 1] == gray[..., 2])
    assert np.all(rgba == (0, 0, 255))
    assert [p.name for p in path.parent.iterdir()] == ["backgrounds.h5"]  # no temporary file left


def test_folder_without_usable_image_is_an_error_naming_it_and_writes_nothing(tmp_path):
    empty, path = tmp_path / "empty_photos", tmp_path / "out" / "backgrounds.h5"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty_photos"):
        built(path, empty)
    (empty / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="empty_photos.*1 unreadable"):
        built(path, empty)
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        built(path, tmp_path / "no_such_folder")
    assert not path.parent.exists() or not any(path.parent.iterdir())


def test_default_set_is_skimage_photos_plus_deterministic_textures(tmp_path):
    images, names, skipped = built(tmp_path / "a.h5", None, procedural=5, seed=3)
    assert images.shape == (len(SKIMAGE_PHOTOS) + 5, SIZE, SIZE, 3) and images.dtype == np.uint8
    assert skipped == 0 and names[0] == "skimage:astronaut" and names[-1].startswith("procedural:")
    again, again_names, _ = built(tmp_path / "b.h5", None, procedural=5, seed=3)
    np.testing.assert_array_equal(images, again)
    assert names == again_names
    other, _, _ = built(tmp_path / "c.h5", None, procedural=5, seed=4)
    np.testing.assert_array_equal(other[: len(SKIMAGE_PHOTOS)], images[: len(SKIMAGE_PHOTOS)])
    assert not np.array_equal(other[len(SKIMAGE_PHOTOS) :], images[len(SKIMAGE_PHOTOS) :])
    assert all(image.std() > 1 for image in images)  # no blank texture


def test_a_large_set_is_read_an_image_a_draw_with_the_same_draws(tmp_path, monkeypatch):
    path = tmp_path / "backgrounds.h5"
    images, _, _ = built(path, None, procedural=2)
    with open_backgrounds(path) as small:
        assert isinstance(small, np.ndarray)
        np.testing.assert_array_equal(small, images)
        expected = [random_background(np.random.default_rng(3), small, 16) for _ in range(3)]
    monkeypatch.setattr(backgrounds_module, "IN_MEMORY_BYTES", images.nbytes - 1)
    with open_backgrounds(path) as large:
        assert isinstance(large, h5py.Dataset)
        drawn = [random_background(np.random.default_rng(3), large, 16) for _ in range(3)]
    for want, got in zip(expected, drawn, strict=True):
        np.testing.assert_array_equal(want, got)


def test_a_file_without_images_is_refused_naming_it(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="other.h5.*no 'images'"), open_backgrounds(path):
        pass


def test_random_background_is_deterministic_and_varied():
    backgrounds = np.random.default_rng(0).integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    first = [random_background(np.random.default_rng(7), backgrounds, 40) for _ in range(2)]
    np.testing.assert_array_equal(first[0], first[1])
    assert first[0].shape == (40, 40, 3) and first[0].dtype == np.uint8
    rng = np.random.default_rng(7)
    draws = [random_background(rng, backgrounds, 40) for _ in range(4)]
    assert all(not np.array_equal(draws[i], draws[j]) for i in range(4) for j in range(i + 1, 4))


def test_random_background_jitter_stays_near_the_source_colour():
    grey = np.full((1, 64, 64, 3), 128, np.uint8)
    out = random_background(np.random.default_rng(1), grey, 32)
    assert out.shape == (32, 32, 3) and np.all(out == out[0, 0])  # flat stays flat
    assert np.all(np.abs(out.astype(int) - 128) <= 0.3 * 128 + 1)
