"""STB reader: independent projection checks, a hand-written fixture in the published layout, and the stand-in."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from hand3d.datasets import stb
from hand3d.datasets.base import DatasetLayoutError

SK_RVEC = np.array([0.00531, -0.01196, 0.00301])
SK_T = np.array([-24.0381, -0.4563, -1.2326])
K_SK = np.array([[607.92271, 0, 314.78337], [0, 607.88192, 236.42484], [0, 0, 1.0]])
F_BB, CX_BB, CY_BB, BASELINE = 822.79041, 318.47345, 250.31296, 120.054
K_BB = np.array([[F_BB, 0, CX_BB], [0, F_BB, CY_BB], [0, 0, 1.0]])
# A printed copy of Rodrigues(SK_RVEC) from the guide.
SK_R_GUIDE = np.array(
    [
        [0.99992395, -0.00304166, -0.01195165],
        [0.00297816, 0.99998137, -0.00532784],
        [0.01196763, 0.00529184, 0.99991438],
    ]
)


def _known_hand_mm(rng: np.random.Generator, frames: int = 1) -> np.ndarray:
    """(frames, 21, 3) plausible points in mm, 300 to 800 mm in front of the camera."""
    xy = rng.uniform(-150, 150, size=(frames, 21, 2))
    z = rng.uniform(300, 800, size=(frames, 21, 1))
    return np.concatenate([xy, z], axis=-1)


# ------------------------------------------------------------------------------------------ independent projections


def test_sk_rotation_matches_opencv_and_the_guide():
    R = cv2.Rodrigues(SK_RVEC)[0]
    np.testing.assert_allclose(stb.SK_R, R, atol=1e-12)
    np.testing.assert_allclose(R, SK_R_GUIDE, atol=1e-7)


def test_sk_projection_by_hand():
    points = _known_hand_mm(np.random.default_rng(1))
    R = cv2.Rodrigues(SK_RVEC)[0]
    for j in (0, 5, 20):
        x_color = R.T @ (points[0, j] - SK_T)
        uvw = K_SK @ x_color
        kp2d, kp3d = stb.stb_mm2px(points, "SK")
        np.testing.assert_allclose(kp2d[0, j], uvw[:2] / uvw[2], atol=1e-9)
        np.testing.assert_allclose(kp3d[0, j], x_color / 1000.0, atol=1e-12)
    np.testing.assert_allclose(stb.color_to_sk_depth(stb.sk_depth_to_color(points)), points, atol=1e-9)


def test_bb_projection_by_hand():
    points = _known_hand_mm(np.random.default_rng(2))
    left_2d, left_3d = stb.stb_mm2px(points, "BB_left")
    right_2d, right_3d = stb.stb_mm2px(points, "BB_right")
    X, Y, Z = points[0].T
    np.testing.assert_allclose(left_2d[0], np.column_stack([F_BB * X / Z + CX_BB, F_BB * Y / Z + CY_BB]), atol=1e-9)
    np.testing.assert_allclose(right_2d[0, :, 1], left_2d[0, :, 1], atol=1e-9)  # same row
    np.testing.assert_allclose(right_2d[0, :, 0], left_2d[0, :, 0] - F_BB * BASELINE / Z, atol=1e-9)
    np.testing.assert_allclose(left_3d, points / 1000.0, atol=1e-12)
    np.testing.assert_allclose(right_3d - left_3d, np.broadcast_to([-BASELINE / 1000.0, 0, 0], points.shape))


def test_unknown_camera_and_split():
    with pytest.raises(ValueError, match="camera"):
        stb.stb_mm2px(np.zeros((1, 21, 3)), "BB_middle")
    with pytest.raises(ValueError, match="split"):
        stb.read("/nonexistent", "val")


# ------------------------------------------------------------------------------------------ hand-written fixture

FIXTURE_SEQS = ("B1Counting", "B1Random", "B2Counting", "B3Random")


def _save_mat(path: Path, hand_mm: np.ndarray, variable: str = "handPara") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {variable: np.ascontiguousarray(hand_mm.transpose(2, 1, 0))})


def _touch_png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.zeros((480, 640, 3), np.uint8))


@pytest.fixture
def fixture_root(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """B1Counting: 3 frames (0 fine, 1 has a NaN, 2 has no image); B1Random: 2 frames; two train sequences."""
    rng = np.random.default_rng(3)
    labels = {}
    for seq in FIXTURE_SEQS:
        frames = 3 if seq == "B1Counting" else 2
        labels[seq] = _known_hand_mm(rng, frames)
        if seq == "B1Counting":
            labels[seq][1, 7, 2] = np.nan
        for rig in ("SK", "BB"):
            _save_mat(tmp_path / "labels" / f"{seq}_{rig}.mat", labels[seq])
        for i in range(frames):
            if (seq, i) != ("B1Counting", 2):
                for pattern in ("SK_color_{i}.png", "BB_left_{i}.png", "BB_right_{i}.png"):
                    _touch_png(tmp_path / "images" / seq / pattern.format(i=i))
    return tmp_path, labels


def test_fixture_keypoints_order_units_and_wrist(fixture_root):
    root, labels = fixture_root
    result = stb.read(root, "test", cameras=("BB_left",))
    by_name = {s.name: s for s in result.samples}
    assert sorted(by_name) == ["B1Counting/BB_left_0", "B1Random/BB_left_0", "B1Random/BB_left_1"]
    sample, stb_mm = by_name["B1Random/BB_left_1"], labels["B1Random"][1]
    assert sample.is_left and sample.image == str(root / "images" / "B1Random" / "BB_left_1.png")
    np.testing.assert_allclose(sample.keypoints_3d[1], stb_mm[17] / 1000.0, atol=1e-6)  # thumb base (STB "MCP")
    np.testing.assert_allclose(sample.keypoints_3d[4], stb_mm[20] / 1000.0, atol=1e-6)  # thumb tip
    np.testing.assert_allclose(sample.keypoints_3d[13], stb_mm[5] / 1000.0, atol=1e-6)  # ring MCP
    np.testing.assert_allclose(sample.keypoints_3d[20], stb_mm[4] / 1000.0, atol=1e-6)  # little tip
    wrist = stb_mm[5] + 2.0 * (stb_mm[0] - stb_mm[5])  # the palm (STB 0) becomes the factor-2 wrist
    np.testing.assert_allclose(sample.keypoints_3d[0], wrist / 1000.0, atol=1e-6)
    np.testing.assert_allclose(sample.keypoints_2d[0, :2], (K_BB @ wrist)[:2] / wrist[2], atol=1e-3)
    np.testing.assert_allclose(sample.keypoints_2d[1, :2], (K_BB @ stb_mm[17])[:2] / stb_mm[17][2], atol=1e-3)
    np.testing.assert_array_equal(sample.keypoints_2d[:, 2], np.ones(21))


def test_fixture_palm_to_wrist_factor(fixture_root):
    root, labels = fixture_root
    result = stb.read(root, "test", cameras=("SK",), palm_to_wrist=1.0)  # factor 1 keeps the palm
    sample = next(s for s in result.samples if s.name == "B1Random/SK_0")
    palm_color = cv2.Rodrigues(SK_RVEC)[0].T @ (labels["B1Random"][0, 0] - SK_T)
    np.testing.assert_allclose(sample.keypoints_3d[0], palm_color / 1000.0, atol=1e-6)


def test_fixture_skips_and_counts(fixture_root):
    root, _ = fixture_root
    result = stb.read(root, "test", cameras=("BB_left", "BB_right"))
    assert len(result.samples) == 6
    assert result.issues == {"missing_image": 2, "malformed_annotation": 2}
    assert {s.name for s in result.samples} >= {"B1Counting/BB_right_0", "B1Random/BB_left_1"}


def test_a_label_beyond_float32_is_skipped_naming_the_label_file(fixture_root, caplog):
    root, labels = fixture_root
    labels["B1Random"][1, 7, 0] = 1e42  # millimetres: finite in float64, inf in the float32 samples keep
    _save_mat(root / "labels" / "B1Random_BB.mat", labels["B1Random"])
    result = stb.read(root, "test", cameras=("BB_left",))
    assert "B1Random/BB_left_1" not in {s.name for s in result.samples}
    assert result.issues == {"missing_image": 1, "malformed_annotation": 2}
    assert "B1Random_BB.mat frame 1: a label non-finite (also as float32)" in caplog.text


def test_fixture_missing_label_file_is_named(fixture_root):
    root, _ = fixture_root
    with pytest.raises(DatasetLayoutError, match="B2Random_SK.mat"):
        stb.read(root, "train")


def test_fixture_mat_without_hand_para(fixture_root):
    root, labels = fixture_root
    _save_mat(root / "labels" / "B1Random_BB.mat", labels["B1Random"], variable="handPose")
    with pytest.raises(DatasetLayoutError, match="B1Random_BB.mat.*handPara"):
        stb.read(root, "test", cameras=("BB_right",))
    stb.read(root, "test", cameras=("SK",))  # the SK labels are still fine


def test_fixture_mat_with_wrong_shape(fixture_root):
    root, _ = fixture_root
    scipy.io.savemat(root / "labels" / "B1Counting_SK.mat", {"handPara": np.zeros((3, 20, 4))})
    with pytest.raises(DatasetLayoutError, match="B1Counting_SK.mat.*shape"):
        stb.read(root, "test")


def test_root_without_labels(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetLayoutError, match="labels"):
        stb.read(tmp_path, "test")


# ------------------------------------------------------------------------------------------------------ stand-in

DEMO_FRAMES = 2


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The stand-in written once: (root, shots by label-file stem)."""
    from hand3d.datasets.standin import HandPhotographer
    from hand3d.hand_model import build_hand_model

    tmp = tmp_path_factory.mktemp("stb_demo")
    build_hand_model(str(tmp / "MANO_RIGHT.npz"), str(tmp / "template.obj"))
    photographer = HandPhotographer(str(tmp / "MANO_RIGHT.npz"))
    try:
        shots = stb.write_demo(tmp / "STB", photographer, seed=7, frames=DEMO_FRAMES)
    finally:
        photographer.release()
    return tmp / "STB", shots


def test_demo_layout(demo):
    root, _ = demo
    assert len(list((root / "labels").glob("*.mat"))) == 24
    for seq in stb.SEQUENCES:
        assert len(list((root / "images" / seq).glob("*.png"))) == 4 * DEMO_FRAMES
        para = scipy.io.loadmat(root / "labels" / f"{seq}_SK.mat")["handPara"]
        assert para.shape == (3, 21, DEMO_FRAMES) and para.dtype == np.float64
    for name in ("SK_color_0.png", "SK_depth_1.png", "BB_left_0.png", "BB_right_1.png"):
        image = cv2.imread(str(root / "images" / "B4Random" / name), cv2.IMREAD_UNCHANGED)
        assert image.shape == (480, 640, 3) and image.dtype == np.uint8


def test_label_files_rewritten_later_are_the_same_bytes(demo, tmp_path):
    """A rebuilt stand-in is the same files (scipy writes the time, to the second, into each header)."""
    _, shots = demo
    labels = [shot.keypoints_3d * 1000.0 for shot in shots["B1Counting_SK"]]
    stb._write_mat(tmp_path / "first.mat", labels)
    time.sleep(1.1)
    stb._write_mat(tmp_path / "again.mat", labels)
    assert (tmp_path / "first.mat").read_bytes() == (tmp_path / "again.mat").read_bytes()
    np.testing.assert_array_equal(scipy.io.loadmat(tmp_path / "again.mat")["handPara"], stb._hand_para(labels))


def test_demo_sk_matches_the_shots(demo):
    root, shots = demo
    result = stb.read(root, "test", cameras=("SK",))
    assert len(result.samples) == 2 * DEMO_FRAMES and not result.issues
    for sample in result.samples:
        seq, frame = sample.name.split("/")
        shot = shots[f"{seq}_SK"][int(frame.removeprefix("SK_"))]
        assert sample.is_left and sample.image.endswith(f"images/{seq}/SK_color_{frame.removeprefix('SK_')}.png")
        np.testing.assert_allclose(sample.keypoints_3d[0], shot.keypoints_3d[0], atol=1e-6)  # the true wrist
        np.testing.assert_allclose(sample.keypoints_3d, shot.keypoints_3d, atol=1e-6)
        np.testing.assert_allclose(sample.keypoints_2d[:, :2], shot.keypoints_2d, atol=1e-3)


def test_demo_bb_matches_the_shots(demo):
    root, shots = demo
    result = stb.read(root, "test", cameras=("BB_left", "BB_right"))
    assert len(result.samples) == 2 * 2 * DEMO_FRAMES and not result.issues
    assert all(s.is_left for s in result.samples)
    baseline_m = np.array([BASELINE / 1000.0, 0, 0])
    for sample in result.samples:
        seq, frame = sample.name.split("/")
        camera, i = frame.rsplit("_", 1)
        shot = shots[f"{seq}_BB"][int(i)]
        expected_3d = shot.keypoints_3d - (baseline_m if camera == "BB_right" else 0)
        expected_2d = (expected_3d @ K_BB.T)[:, :2] / expected_3d[:, 2:]
        np.testing.assert_allclose(sample.keypoints_3d, expected_3d, atol=1e-6)
        np.testing.assert_allclose(sample.keypoints_2d[:, :2], expected_2d, atol=1e-3)
        if camera == "BB_left":
            np.testing.assert_allclose(sample.keypoints_2d[:, :2], shot.keypoints_2d, atol=1e-3)


def test_demo_depth_png(demo):
    root, shots = demo
    shot = shots["B1Random_SK"][1]
    rgb = cv2.cvtColor(cv2.imread(str(root / "images" / "B1Random" / "SK_depth_1.png")), cv2.COLOR_BGR2RGB)
    depth = rgb[..., 0].astype(int) + 256 * rgb[..., 1].astype(int)
    hand = shot.mask > 0
    assert np.all(depth[~hand] == 2000)
    z_mm = shot.vertices[:, 2] * 1000.0
    assert hand.any() and np.all((depth[hand] >= z_mm.min() - 1) & (depth[hand] <= z_mm.max() + 1))
