"""The FreiHAND v2 reader (Zimmermann et al., ICCV 2019) on hand-written files and on the stand-in written in the
published layout."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from hand3d.datasets import freihand
from hand3d.datasets.base import DatasetLayoutError

# ------------------------------------------------------------------------------------- hand-written known values

K0 = [[500.0, 0.0, 112.0], [0.0, 500.0, 100.0], [0.0, 0.0, 1.0]]
K3 = [[480.0, 0.0, 110.0], [0.0, 520.0, 114.0], [0.0, 0.0, 1.0]]


def _xyz(shift: float) -> list[list[float]]:
    """21 points at depth 0.5-0.7 m, spread over a few centimetres."""
    return [[0.01 * (j % 5) - 0.02 + shift, 0.005 * j - 0.05, 0.5 + 0.01 * j] for j in range(21)]


def _jpeg(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))


def _dump(path: Path, data: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture
def handmade(tmp_path) -> Path:
    """4 training entries: 0 and 3 valid, 1 with a NaN, 2 with 20 points; version 2 of entry 3 has no image.

    2 evaluation entries in the sibling FreiHAND_pub_v2_eval, both valid.
    """
    root = tmp_path / "FreiHAND_pub_v2"
    bad_nan = _xyz(0.0)
    bad_nan[4][1] = float("nan")
    _dump(root / "training_K.json", [K0, K0, K0, K3])
    _dump(root / "training_xyz.json", [_xyz(0.0), bad_nan, _xyz(0.0)[:20], _xyz(0.01)])
    for image_id in (0, 1, 2, 3, 8, 9, 10):  # versions 0 and 2 with N = 4; 11 (entry 3, version 2) missing
        _jpeg(root / "training" / "rgb" / f"{image_id:08d}.jpg")
    for index in range(4):
        _jpeg(root / "training" / "mask" / f"{index:08d}.jpg", 255)
    for index in range(2):
        _jpeg(root / "evaluation" / "rgb" / f"{index:08d}.jpg")
    _dump(root / "evaluation_K.json", [K0, K3])
    _dump(tmp_path / "FreiHAND_pub_v2_eval" / "evaluation_K.json", [K0, K3])
    _dump(tmp_path / "FreiHAND_pub_v2_eval" / "evaluation_xyz.json", [_xyz(0.02), _xyz(-0.02)])
    return root


def _expected_uv(K: list, xyz: list) -> np.ndarray:
    """Pixel coordinates written out point by point: u = fx X / Z + cx, v = fy Y / Z + cy."""
    return np.array([[K[0][0] * x / z + K[0][2], K[1][1] * y / z + K[1][2]] for x, y, z in xyz])


def test_train_projection_versions_masks_and_issues(handmade):
    result = freihand.read(handmade, "train", versions=(0, 2))
    names = [s.name for s in result.samples]
    assert names == ["training/00000000", "training/00000003", "training/00000008"]  # id = index + 4 * version
    assert result.issues == {"malformed_annotation": 4, "missing_image": 1}  # 2 bad entries x 2 versions
    first = result.samples[0]
    assert first.keypoints_2d[0, :2].tolist() == pytest.approx([500 * -0.02 / 0.5 + 112, 500 * -0.05 / 0.5 + 100])
    for sample, K, xyz in zip(result.samples, [K0, K3, K0], [_xyz(0.0), _xyz(0.01), _xyz(0.0)], strict=True):
        np.testing.assert_allclose(sample.keypoints_2d[:, :2], _expected_uv(K, xyz), atol=1e-4)
        np.testing.assert_allclose(sample.keypoints_3d, xyz, atol=1e-7)
        assert np.all(sample.keypoints_2d[:, 2] == 1) and not sample.is_left
        assert Path(sample.image).is_file() and Path(sample.image).name == sample.name.split("/")[1] + ".jpg"
    assert [Path(s.mask).name for s in result.samples] == ["00000000.jpg", "00000003.jpg", "00000000.jpg"]


@pytest.mark.parametrize("x", [1e42, 1e36])  # beyond float32 itself; within, but projected 1e39 px away
def test_a_keypoint_beyond_float32_is_skipped_naming_the_annotation_files(handmade, caplog, x):
    xyz = json.loads((handmade / "training_xyz.json").read_text())
    xyz[3][4][0] = x  # finite in float64, but inf in the float32 the samples keep
    _dump(handmade / "training_xyz.json", xyz)
    result = freihand.read(handmade, "train")
    assert [s.name for s in result.samples] == ["training/00000000"]
    assert result.issues == {"malformed_annotation": 3}
    assert f"{handmade / 'training'}_{{K,xyz}}.json entry 3: keypoints beyond the float32 range" in caplog.text


def test_versions_by_name_and_invalid_versions(handmade):
    assert [s.name for s in freihand.read(handmade, "train", versions=("sample",)).samples] == ["training/00000008"]
    for bad in [(4,), (0, 0), (), ("green",)]:
        with pytest.raises(ValueError, match="versions"):
            freihand.read(handmade, "train", versions=bad)


def test_masks_optional(handmade):
    (handmade / "training" / "mask" / "00000003.jpg").unlink()
    masks = {s.name: s.mask for s in freihand.read(handmade, "train").samples}
    assert masks["training/00000003"] is None and masks["training/00000000"].endswith("mask/00000000.jpg")


def test_test_split_from_sibling_eval_folder(handmade, tmp_path):
    result = freihand.read(handmade, "test")
    assert [s.name for s in result.samples] == ["evaluation/00000000", "evaluation/00000001"]
    assert not result.issues and all(s.mask is None for s in result.samples)
    np.testing.assert_allclose(result.samples[1].keypoints_2d[:, :2], _expected_uv(K3, _xyz(-0.02)), atol=1e-4)
    moved = tmp_path / "elsewhere"
    (tmp_path / "FreiHAND_pub_v2_eval").rename(moved)
    assert len(freihand.read(handmade, "test", eval_root=moved).samples) == 2


def test_a_symlinked_root_finds_the_eval_folder_beside_the_link(handmade, tmp_path):
    links = tmp_path / "links"
    links.mkdir()
    (links / "FreiHAND_pub_v2").symlink_to(handmade)
    (tmp_path / "FreiHAND_pub_v2_eval").rename(tmp_path / "eval_store")  # none beside the link's target now
    (links / "FreiHAND_pub_v2_eval").symlink_to(tmp_path / "eval_store")
    assert len(freihand.read(links / "FreiHAND_pub_v2", "test").samples) == 2


def test_test_split_without_eval_annotations(handmade, tmp_path):
    (tmp_path / "FreiHAND_pub_v2_eval" / "evaluation_xyz.json").unlink()
    with pytest.raises(DatasetLayoutError, match=r"evaluation annotations.*FreiHAND_pub_v2_eval") as info:
        freihand.read(handmade, "test")
    assert "evaluation_xyz.json" in str(info.value) and "eval_root" in str(info.value)


def test_mismatched_counts_name_both_files(handmade):
    _dump(handmade / "training_K.json", [K0, K0, K0])
    with pytest.raises(DatasetLayoutError, match=r"training_K\.json has 3 entries but training_xyz\.json has 4"):
        freihand.read(handmade, "train")


def test_wrong_layout(handmade, tmp_path):
    xyz = handmade / "training_xyz.json"
    saved = xyz.read_text()
    xyz.unlink()
    with pytest.raises(DatasetLayoutError, match="lacks training_xyz.json"):
        freihand.read(handmade, "train")
    xyz.write_text(saved)
    (handmade / "training_K.json").write_text("{not json")
    with pytest.raises(DatasetLayoutError, match="training_K.json: not a readable"):
        freihand.read(handmade, "train")
    (handmade / "training_K.json").write_text('{"K": []}')
    with pytest.raises(DatasetLayoutError, match="a list per sample"):
        freihand.read(handmade, "train")
    with pytest.raises(DatasetLayoutError, match="not the FreiHAND"):
        freihand.read(tmp_path / "nowhere", "test")
    with pytest.raises(ValueError, match="split"):
        freihand.read(handmade, "val")


# ------------------------------------------------------------------------------------------------------ stand-in

TRAIN, TEST, SEED = 3, 2, 7


@pytest.fixture(scope="module")
def photographer(tmp_path_factory):
    from hand3d.datasets.standin import HandPhotographer
    from hand3d.hand_model import build_hand_model

    tmp = tmp_path_factory.mktemp("freihand_model")
    build_hand_model(str(tmp / "MANO_RIGHT.npz"), str(tmp / "template.obj"))
    p = HandPhotographer(str(tmp / "MANO_RIGHT.npz"))
    yield p
    p.release()


@pytest.fixture(scope="module")
def standin(tmp_path_factory, photographer) -> Path:
    root = freihand.write_demo(tmp_path_factory.mktemp("freihand"), photographer, SEED, train=TRAIN, test=TEST)
    assert root.name == "FreiHAND_pub_v2"
    return root


def _mask_iou(path: str, expected: np.ndarray) -> float:
    read = cv2.imread(path, cv2.IMREAD_GRAYSCALE) > 127
    return (read & expected.astype(bool)).sum() / (read | expected.astype(bool)).sum()


def test_standin_layout(standin):
    base = standin.parent
    for name in ("K", "mano", "xyz", "verts", "scale"):
        assert (standin / f"training_{name}.json").is_file()
        assert (base / "FreiHAND_pub_v2_eval" / f"evaluation_{name}.json").is_file()
    assert (standin / "evaluation_K.json").is_file() and (standin / "evaluation_scale.json").is_file()
    assert len(list((standin / "training" / "rgb").glob("*.jpg"))) == TRAIN * len(freihand.VERSIONS)
    assert len(list((standin / "training" / "mask").glob("*.jpg"))) == TRAIN
    assert cv2.imread(str(standin / "evaluation" / "rgb" / "00000001.jpg")).shape == (224, 224, 3)
    mano = np.array(json.loads((standin / "training_mano.json").read_text()))
    assert mano.shape == (TRAIN, 1, 61)


def test_standin_train_matches_photographer(standin, photographer):
    result = freihand.read(standin, "train", versions=(0, 1, 2, 3))
    assert len(result.samples) == TRAIN * 4 and not result.issues
    xyz = np.array(json.loads((standin / "training_xyz.json").read_text()))
    scale = np.array(json.loads((standin / "training_scale.json").read_text()))
    np.testing.assert_allclose(scale, np.linalg.norm(xyz[:, 9] - xyz[:, 10], axis=1), rtol=1e-12)
    shots = [freihand.demo_shot(photographer, SEED, "train", i) for i in range(TRAIN)]
    for sample in result.samples:
        image_id = int(sample.name.split("/")[1])
        shot = shots[image_id % TRAIN]
        np.testing.assert_allclose(sample.keypoints_2d[:, :2], shot.keypoints_2d, atol=1e-3)
        np.testing.assert_allclose(sample.keypoints_3d, shot.keypoints_3d, atol=1e-6)
        assert _mask_iou(sample.mask, shot.mask) > 0.97
    version0 = cv2.imread(result.samples[0].image)[..., ::-1].astype(int)
    assert np.abs(version0 - shots[0].image).mean() < 3  # JPEG of the shot itself
    different = cv2.imread(result.samples[TRAIN].image)[..., ::-1].astype(int)  # version 1 (hom)
    assert np.abs(different - shots[0].image).mean() > 3


def test_standin_test_split_and_determinism(standin, photographer):
    result = freihand.read(standin, "test")
    assert len(result.samples) == TEST and not result.issues
    for index, sample in enumerate(result.samples):
        shot = freihand.demo_shot(photographer, SEED, "test", index)
        np.testing.assert_allclose(sample.keypoints_2d[:, :2], shot.keypoints_2d, atol=1e-3)
        assert 480 <= shot.K[0, 0] <= 600 and abs(shot.K[0, 2] - 112) <= 4
    eval_folder = standin.parent / "FreiHAND_pub_v2_eval"
    xyz = np.array(json.loads((eval_folder / "evaluation_xyz.json").read_text()))
    scale = np.array(json.loads((eval_folder / "evaluation_scale.json").read_text()))
    np.testing.assert_allclose(scale, np.linalg.norm(xyz[:, 9] - xyz[:, 10], axis=1), rtol=1e-12)
    assert json.loads((standin / "evaluation_K.json").read_text()) == json.loads(
        (eval_folder / "evaluation_K.json").read_text()
    )
