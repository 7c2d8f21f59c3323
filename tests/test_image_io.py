"""Image files in and out: RGB order, and JPEGs cut short counted as unreadable rather than decoded half grey."""

from __future__ import annotations

import cv2
import numpy as np

from hand3d.image_io import read_rgb, truncated_jpeg, write_rgb


def _picture() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)


def test_png_round_trips_in_rgb_order(tmp_path):
    picture = _picture()
    picture[0, 0] = (255, 0, 0)
    write_rgb(tmp_path / "a.png", picture)
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png"), picture)


def test_a_jpeg_cut_short_is_unreadable(tmp_path):
    whole = tmp_path / "whole.jpg"
    write_rgb(whole, _picture())
    data = whole.read_bytes()
    assert read_rgb(whole).shape == (96, 128, 3) and not truncated_jpeg(whole)
    (tmp_path / "motion.jpg").write_bytes(data + bytes(200_000))  # a motion photo: a video after the end marker
    assert read_rgb(tmp_path / "motion.jpg") is not None
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert truncated_jpeg(cut) and read_rgb(cut) is None


def test_a_thumbnail_s_end_marker_does_not_hide_the_cut(tmp_path):
    """An EXIF thumbnail is a whole JPEG, end marker included, inside an APP1 segment before the image's scans."""
    _, thumbnail = cv2.imencode(".jpg", _picture()[:16, :16])
    payload = b"Exif\x00\x00" + thumbnail.tobytes()
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    _, image = cv2.imencode(".jpg", _picture())
    data = image.tobytes()[:2] + app1 + image.tobytes()[2:]
    (tmp_path / "whole.jpg").write_bytes(data)
    (tmp_path / "cut.jpg").write_bytes(data[: len(app1) + 600])
    assert read_rgb(tmp_path / "whole.jpg").shape == (96, 128, 3)
    assert truncated_jpeg(tmp_path / "cut.jpg") and read_rgb(tmp_path / "cut.jpg") is None
    (tmp_path / "text.jpg").write_text("not an image")
    assert read_rgb(tmp_path / "text.jpg") is None and not truncated_jpeg(tmp_path / "text.jpg")
