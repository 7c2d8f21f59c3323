"""Readers and stand-ins for the CMU Panoptic HandDB layouts (Simon et al., CVPR 2017): hand_labels (MPII+NZSL)
and hand143_panopticdb, as described in /work/shared/guides/datasets.md section 1."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from hand3d.datasets import mpii_nzsl, panoptic
from hand3d.datasets.base import DatasetLayoutError

NZSL_SIZES = {(400, 300), (640, 360)}


def _points(offset: float) -> np.ndarray:
    """21 distinct keypoints with float32-exact coordinates (quarter pixels), all valid."""
    xy = np.stack([np.arange(21) * 1.25 + offset, np.arange(21) * 0.75 + offset / 2], axis=1)
    return np.column_stack([xy, np.ones(21)])


def _jpeg(path: Path, width: int = 64, height: int = 48) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((height, width, 3), 128, np.uint8))


def _pair(folder: Path, stem: str, annotation: object | str, image: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = annotation if isinstance(annotation, str) else json.dumps(annotation)
    (folder / f"{stem}.json").write_text(text)
    if image:
        _jpeg(folder / f"{stem}.jpg")


# ---------------------------------------------------------------------------------------------------------------------
# hand_labels (MPII + NZSL): hand-written files with known values


RIGHT = _points(10.0)
RIGHT[7, 2] = 0  # an unannotated keypoint
LEFT = _points(20.0)
LEFT[4, :2] = [-5.5, 100.25]  # outside the 64 x 48 image: kept as given
NZSL = _points(3.0)
NZSL[9, 2] = 2  # any v other than 1 is not valid


@pytest.fixture
def hand_labels(tmp_path) -> Path:
    train, test = tmp_path / "manual_train", tmp_path / "manual_test"
    _pair(train, "000000002_01_l", {"hand_pts": LEFT.tolist(), "is_left": 1, "hand_box_center": [30, 20]})
    _pair(train, "000000001_01_r", {"hand_pts": RIGHT.tolist(), "is_left": 0, "hand_box_center": [20, 10]})
    extra = {"head_size": 31.5, "mpii_body_pts": [[1, 2, 1]], "hand_box_center": [5, 5]}
    _pair(train, "Berry_roof_story.flv_000053_l", {"hand_pts": NZSL.tolist(), "is_left": True, **extra})
    _pair(train, "bad_corrupt_r", '{"hand_pts": [[1, 2, 1]')
    _pair(train, "bad_no_pts_r", {"is_left": 0})
    _pair(train, "bad_shape_r", {"hand_pts": RIGHT[:20].tolist(), "is_left": 0})
    _pair(train, "bad_nan_r", {"hand_pts": np.where(RIGHT[3, 0] == RIGHT, np.nan, RIGHT).tolist(), "is_left": 0})
    _pair(train, "bad_is_left_r", {"hand_pts": RIGHT.tolist(), "is_left": "yes"})
    _pair(train, "no_image_r", {"hand_pts": RIGHT.tolist(), "is_left": 0}, image=False)
    _jpeg(train / "orphan_r.jpg")  # an image without annotation is not a sample
    _pair(test, "000000003_02_r", {"hand_pts": RIGHT.tolist(), "is_left": 0})
    return tmp_path


def test_hand_labels_known_values(hand_labels):
    result = mpii_nzsl.read(hand_labels, "train")
    names = [s.name for s in result.samples]
    assert names == [
        "manual_train/000000001_01_r",
        "manual_train/000000002_01_l",
        "manual_train/Berry_roof_story.flv_000053_l",
    ]
    right, left, nzsl = result.samples
    assert right.keypoints_2d[7, 2] == 0
    np.testing.assert_array_equal(right.keypoints_2d, RIGHT.astype(np.float32))
    np.testing.assert_array_equal(left.keypoints_2d, LEFT.astype(np.float32))
    assert left.keypoints_2d[4].tolist() == [-5.5, 100.25, 1.0]
    expected_nzsl = NZSL.copy()
    expected_nzsl[9, 2] = 0
    np.testing.assert_array_equal(nzsl.keypoints_2d, expected_nzsl.astype(np.float32))
    assert [s.is_left for s in result.samples] == [False, True, True]
    assert right.image == str(hand_labels / "manual_train" / "000000001_01_r.jpg")
    assert all(s.keypoints_2d.dtype == np.float32 and s.keypoints_3d is None and s.mask is None for s in result.samples)


def test_hand_labels_skips_and_counts_bad_pairs(hand_labels):
    result = mpii_nzsl.read(hand_labels, "train")
    assert result.issues == Counter({"malformed_annotation": 5, "missing_image": 1})


def test_hand_labels_test_split(hand_labels):
    result = mpii_nzsl.read(hand_labels, "test")
    assert [s.name for s in result.samples] == ["manual_test/000000003_02_r"]
    assert not result.issues


def test_hand_labels_wrong_layout(tmp_path):
    (tmp_path / "manual_test").mkdir()
    with pytest.raises(DatasetLayoutError, match="manual_train") as error:
        mpii_nzsl.read(tmp_path, "train")
    assert str(tmp_path) in str(error.value)
    with pytest.raises(DatasetLayoutError, match="not a directory"):
        mpii_nzsl.read(tmp_path / "nowhere", "test")
    with pytest.raises(ValueError, match="unknown split"):
        mpii_nzsl.read(tmp_path, "val")


# ---------------------------------------------------------------------------------------------------------------------
# hand143_panopticdb: hand-written files with known values


def _panoptic_entry(index: int, keypoints: np.ndarray) -> dict:
    return {
        "img_paths": f"imgs/{index:08d}.jpg",
        "img_width": 64,
        "img_height": 48,
        "objpos": [30.0, 20.0],
        "joint_self": keypoints.tolist(),
    }


@pytest.fixture
def panopticdb(tmp_path) -> Path:
    entries = [_panoptic_entry(0, RIGHT), _panoptic_entry(1, RIGHT[:, :2]), _panoptic_entry(5, LEFT)]
    entries[2]["surplus"] = "ignored"
    (tmp_path / panoptic.ANNOTATIONS).write_text(json.dumps({"root": entries}))
    for index in (0, 1, 5):
        _jpeg(tmp_path / "imgs" / f"{index:08d}.jpg")
    return tmp_path


def test_panoptic_known_values(panopticdb):
    result = panoptic.read(panopticdb, "train")
    assert [s.name for s in result.samples] == ["imgs/00000000", "imgs/00000005"]
    np.testing.assert_array_equal(result.samples[0].keypoints_2d, RIGHT.astype(np.float32))
    np.testing.assert_array_equal(result.samples[1].keypoints_2d, LEFT.astype(np.float32))
    assert result.samples[1].image == str(panopticdb / "imgs" / "00000005.jpg")
    assert not any(s.is_left for s in result.samples)
    assert result.issues == Counter({"malformed_annotation": 1})


def test_panoptic_missing_image_and_duplicates(panopticdb):
    data = json.loads((panopticdb / panoptic.ANNOTATIONS).read_text())
    data["root"] += [_panoptic_entry(7, RIGHT), _panoptic_entry(0, LEFT), {"img_paths": 3}, "not an entry"]
    (panopticdb / panoptic.ANNOTATIONS).write_text(json.dumps(data))
    result = panoptic.read(panopticdb, "train")
    assert [s.name for s in result.samples] == ["imgs/00000000", "imgs/00000005"]
    assert result.issues == Counter({"malformed_annotation": 3, "missing_image": 1, "duplicate_name": 1})


def test_panoptic_images_outside_the_folder_are_malformed(panopticdb, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "00000009.jpg"
    _jpeg(outside)
    data = json.loads((panopticdb / panoptic.ANNOTATIONS).read_text())
    data["root"] += [_panoptic_entry(9, RIGHT) | {"img_paths": path} for path in (str(outside), "../elsewhere/x.jpg")]
    (panopticdb / panoptic.ANNOTATIONS).write_text(json.dumps(data))
    result = panoptic.read(panopticdb, "train")
    assert [s.name for s in result.samples] == ["imgs/00000000", "imgs/00000005"]
    assert result.issues == Counter({"malformed_annotation": 3})


def test_panoptic_wrong_layout(tmp_path):
    with pytest.raises(DatasetLayoutError, match=panoptic.ANNOTATIONS) as error:
        panoptic.read(tmp_path, "train")
    assert str(tmp_path) in str(error.value) and "imgs" in str(error.value)
    (tmp_path / "imgs").mkdir()
    (tmp_path / panoptic.ANNOTATIONS).write_text('{"root": [')
    with pytest.raises(DatasetLayoutError, match="annotation file"):
        panoptic.read(tmp_path, "train")
    (tmp_path / panoptic.ANNOTATIONS).write_text('{"hands": []}')
    with pytest.raises(DatasetLayoutError, match="'root' list"):
        panoptic.read(tmp_path, "train")
    with pytest.raises(ValueError, match="unknown split"):
        panoptic.read(tmp_path, "test")


# ---------------------------------------------------------------------------------------------------------------------
# Stand-ins written in the published layouts


@pytest.fixture(scope="module")
def photographer(hand_model_path):
    """One photographer for the module; it records whether each shot's mask is the hand (to check the frames)."""
    from hand3d.datasets.standin import HandPhotographer

    camera = HandPhotographer(str(hand_model_path))
    shoot, camera.drawn = camera.shoot, []

    def recording_shoot(*args, **kwargs):
        shot = shoot(*args, **kwargs)
        camera.drawn.append(_hand_drawn(shot))
        return shot

    camera.shoot = recording_shoot
    yield camera
    camera.release()


@pytest.fixture(scope="module")
def hand_labels_demo(tmp_path_factory, photographer):
    root = tmp_path_factory.mktemp("hand_labels")
    photographer.drawn.clear()
    labels = mpii_nzsl.write_demo(root, photographer, seed=3, train=4, test=3)
    return root, labels, list(photographer.drawn)


@pytest.fixture(scope="module")
def panoptic_demo(tmp_path_factory, photographer):
    root = tmp_path_factory.mktemp("hand143_panopticdb")
    return root, panoptic.write_demo(root, photographer, seed=4, train=3)


def _hand_drawn(shot) -> bool:
    """True when the shot's mask is non-empty and inside the box of its projected vertices (2 pixels margin)."""
    from hand3d.datasets.standin import perspective

    uv = perspective(shot.vertices, shot.K)[:, :2]
    low, high = np.floor(uv.min(axis=0)) - 2, np.ceil(uv.max(axis=0)) + 2
    ys, xs = np.nonzero(shot.mask)
    if len(xs) == 0:
        return False
    return bool(xs.min() >= low[0] and ys.min() >= low[1] and xs.max() <= high[0] and ys.max() <= high[1])


def _image_size(path: str) -> tuple[int, int]:
    assert Path(path).read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
    height, width = cv2.imread(path).shape[:2]
    return width, height


def _check_keypoints_exact_and_inside(sample, labels: dict, size: tuple[int, int]) -> None:
    np.testing.assert_array_equal(sample.keypoints_2d[:, :2], labels[sample.name].astype(np.float32))
    np.testing.assert_array_equal(sample.keypoints_2d[:, 2], 1)
    xy = sample.keypoints_2d[:, :2]
    assert (xy >= 0).all() and (xy <= np.array(size) - 1).all(), sample.name


def test_hand_labels_demo_reads_back(hand_labels_demo):
    root, labels, _ = hand_labels_demo
    train, test = mpii_nzsl.read(root, "train"), mpii_nzsl.read(root, "test")
    assert (len(train.samples), len(test.samples)) == (4, 3) and not train.issues and not test.issues
    samples = train.samples + test.samples
    assert sorted(labels) == sorted(s.name for s in samples)
    assert {s.is_left for s in train.samples} == {s.is_left for s in test.samples} == {False, True}
    for sample in samples:
        assert sample.name.endswith("_l" if sample.is_left else "_r")
        size = _image_size(sample.image)
        assert size in NZSL_SIZES if ".flv_" in sample.name else size == (1280, 720)
        _check_keypoints_exact_and_inside(sample, labels, size)
    assert any(".flv_" in s.name for s in samples) and any(".flv_" not in s.name for s in samples)


def test_hand_labels_demo_json(hand_labels_demo):
    root, labels, _ = hand_labels_demo
    for name, keypoints in labels.items():
        annotation = json.loads((root / f"{name}.json").read_text())
        assert np.array(annotation["hand_pts"]).tolist() == np.column_stack([keypoints, np.ones(21)]).tolist()
        assert annotation["is_left"] == int(name.endswith("_l"))
        box_centre = (keypoints.min(axis=0) + keypoints.max(axis=0)) / 2
        np.testing.assert_allclose(annotation["hand_box_center"], box_centre, rtol=0, atol=1e-9)
        assert annotation["head_size"] > np.ptp(keypoints, axis=0).max()


def test_hand_labels_demo_frames_show_their_hands(hand_labels_demo):
    """Mixed frame sizes and left/right hands, as the stand-in writes them: every frame must show its hand."""
    _, labels, drawn = hand_labels_demo
    assert len(drawn) == len(labels)
    assert all(drawn), drawn


def test_hand_labels_demo_is_deterministic(tmp_path, photographer):
    first = mpii_nzsl.write_demo(tmp_path / "a", photographer, seed=9, train=2, test=1)
    second = mpii_nzsl.write_demo(tmp_path / "b", photographer, seed=9, train=2, test=1)
    assert list(first) == list(second)
    for name in first:
        assert (tmp_path / "a" / f"{name}.json").read_bytes() == (tmp_path / "b" / f"{name}.json").read_bytes()


def test_panoptic_demo_reads_back(panoptic_demo):
    root, labels = panoptic_demo
    result = panoptic.read(root, "train")
    assert [s.name for s in result.samples] == ["imgs/00000000", "imgs/00000001", "imgs/00000002"] == list(labels)
    assert not result.issues and not any(s.is_left for s in result.samples)
    entries = json.loads((root / panoptic.ANNOTATIONS).read_text())["root"]
    for sample, entry in zip(result.samples, entries, strict=True):
        assert _image_size(sample.image) == (entry["img_width"], entry["img_height"]) == (1920, 1080)
        _check_keypoints_exact_and_inside(sample, labels, (1920, 1080))
        keypoints = labels[sample.name]
        assert np.array(entry["joint_self"]).tolist() == np.column_stack([keypoints, np.ones(21)]).tolist()
        np.testing.assert_allclose(entry["objpos"], (keypoints.min(axis=0) + keypoints.max(axis=0)) / 2, atol=1e-9)


def test_panoptic_demo_is_deterministic(tmp_path, photographer, panoptic_demo):
    root, _ = panoptic_demo
    panoptic.write_demo(tmp_path, photographer, seed=4, train=3)
    assert (tmp_path / panoptic.ANNOTATIONS).read_bytes() == (root / panoptic.ANNOTATIONS).read_bytes()
