"""The real-data rules on small fixtures in each dataset's published layout, checked against computations made here.

The fixtures hold known keypoints: left and right hands, a keypoint outside the image, a corrupt JPEG, and STB labels
in the depth camera's frame with the palm centre as root. After real `snakemake`, the packed crops must hold exactly
the keypoints this file computes from the paper's crop rule (2.2x box, shifted inside the image), the mirroring of
left hands (x' = 319 - x, X' = -X), the OpenPose order and STB's projection.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from scipy.io import savemat
from test_workflow import TINY, snakemake

from hand3d.h5io import open_packed, read_field

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(7)


def _noise_image(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), RNG.integers(0, 255, (height, width, 3), dtype=np.uint8))


def _hand_2d(cx: float, cy: float, spread: float) -> np.ndarray:
    """21 distinct points around (cx, cy), each keypoint at its own place."""
    angles = np.linspace(0, 2 * np.pi, 21, endpoint=False)
    radii = spread * (0.3 + 0.7 * np.arange(21) / 20)
    return np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)])


def expected_crop(kp: np.ndarray, width: int, height: int, mirrored: bool) -> np.ndarray:
    """The paper's crop, written out: box 2.2 x the visible keypoints' box, shifted inside, 320 px, then mirror."""
    vis = (kp[:, 2] > 0) & (kp[:, 0] >= 0) & (kp[:, 1] >= 0) & (kp[:, 0] <= width - 1) & (kp[:, 1] <= height - 1)
    lo, hi = kp[vis, :2].min(0), kp[vis, :2].max(0)
    side = int(np.ceil(2.2 * (hi - lo).max()))
    start = [
        min(max(round((lo[i] + hi[i]) / 2 - side / 2), 0), extent - side) for i, extent in enumerate((width, height))
    ]
    out = (kp[:, :2] - start + 0.5) * 320 / side - 0.5
    if mirrored:
        out[:, 0] = 319 - out[:, 0]
    inside = np.all((out >= 0) & (out <= 319), axis=1)
    return np.column_stack([out, vis & inside])


# --- fixtures in the published layouts -----------------------------------------------------------------------------


def write_hand_labels(root: Path) -> dict[str, tuple[np.ndarray, int, int, bool]]:
    """CMU hand_labels: a right hand, a left hand with a keypoint outside the image, a corrupt JPEG."""
    truth = {}
    for split, stem, (w, h), left, outside in [
        ("manual_test", "000015774_01_r", (1280, 720), False, False),
        ("manual_test", "Berry_roof_story.flv_000053_l", (400, 300), True, True),
        ("manual_train", "000020000_02_l", (640, 480), True, False),
    ]:
        kp = np.column_stack([_hand_2d(w * 0.4, h * 0.5, min(w, h) * 0.15), np.ones(21)])
        if outside:
            kp[20, :2] = [w + 30, 10]
        _noise_image(root / split / f"{stem}.jpg", w, h)
        (root / split / f"{stem}.json").write_text(json.dumps({"hand_pts": kp.tolist(), "is_left": int(left)}))
        truth[f"{split}/{stem}"] = (kp, w, h, left)
    (root / "manual_train" / "broken_01_r.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    kp = np.column_stack([_hand_2d(100, 100, 40), np.ones(21)])
    (root / "manual_train" / "broken_01_r.json").write_text(json.dumps({"hand_pts": kp.tolist(), "is_left": 0}))
    return truth


STB_K = np.array([[607.92271, 0, 314.78337], [0, 607.88192, 236.42484], [0, 0, 1]])
STB_R = cv2.Rodrigues(np.array([0.00531, -0.01196, 0.00301]))[0]
STB_T = np.array([-24.0381, -0.4563, -1.2326])
OPENPOSE_TO_STB = [0, 17, 18, 19, 20, 13, 14, 15, 16, 9, 10, 11, 12, 5, 6, 7, 8, 1, 2, 3, 4]  # STB index of each


def write_stb(root: Path) -> np.ndarray:
    """STB: left hands, SK labels in millimetres in the DEPTH frame, palm centre as joint 0. Returns the true
    OpenPose-order 3D keypoints (metres, colour frame, with the wrist) of B1Counting's two frames."""
    hands = []
    for _ in range(2):
        pts = np.column_stack([_hand_2d(0.0, 0.0, 0.06), np.zeros(21)])
        pts[:, 2] = RNG.uniform(0.45, 0.5, 21)
        hands.append(pts + [0.02, -0.01, 0])
    truth = np.stack(hands)  # OpenPose order, metres, colour frame
    stb_mm = np.zeros_like(truth)
    for i, stb_index in enumerate(OPENPOSE_TO_STB):
        stb_mm[:, stb_index] = truth[:, i] * 1000
    stb_mm[:, 0] = (truth[:, 0] + truth[:, 13]) / 2 * 1000  # palm centre, so that the factor-2 rule gives the wrist
    depth_frame = stb_mm @ STB_R.T + STB_T  # X_color = R^T (X - T)  <=>  X = R X_color + T
    for seq in ("B1Counting", "B1Random"):
        (root / "labels").mkdir(parents=True, exist_ok=True)
        savemat(root / "labels" / f"{seq}_SK.mat", {"handPara": depth_frame.transpose(2, 1, 0)})
        for i in range(2):
            _noise_image(root / "images" / seq / f"SK_color_{i}.png", 640, 480)
    return truth


def write_panoptic(root: Path) -> np.ndarray:
    kp = np.column_stack([_hand_2d(900, 500, 120), np.ones(21)])
    _noise_image(root / "imgs" / "00000000.jpg", 1920, 1080)
    entry = {"img_paths": "imgs/00000000.jpg", "img_width": 1920, "img_height": 1080, "objpos": [900, 500],
             "joint_self": kp.tolist()}  # fmt: skip
    (root / "hands_v143_14817.json").write_text(json.dumps({"root": [entry]}))
    return kp


def write_freihand(root: Path) -> tuple[np.ndarray, np.ndarray]:
    K = np.array([[500.0, 0, 112], [0, 500.0, 112], [0, 0, 1]])
    xyz = np.column_stack([_hand_2d(0.0, 0.0, 0.05), np.full(21, 0.6)])
    main, evaluation = root / "FreiHAND_pub_v2", root / "FreiHAND_pub_v2_eval"
    for folder, prefix in ((main, "training"), (main, "evaluation"), (evaluation, "evaluation")):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{prefix}_K.json").write_text(json.dumps([K.tolist()]))
        (folder / f"{prefix}_xyz.json").write_text(json.dumps([xyz.tolist()]))
    _noise_image(main / "training" / "rgb" / "00000000.jpg", 224, 224)
    _noise_image(main / "evaluation" / "rgb" / "00000000.jpg", 224, 224)
    mask = np.zeros((224, 224), np.uint8)
    mask[60:160, 80:150] = 255
    (main / "training" / "mask").mkdir(parents=True)
    cv2.imwrite(str(main / "training" / "mask" / "00000000.jpg"), mask)
    return K, xyz


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    raw, work = tmp_path_factory.mktemp("raw"), tmp_path_factory.mktemp("work")
    truth = {
        "hand_labels": write_hand_labels(raw / "hand_labels"),
        "stb": write_stb(raw / "STB"),
        "panoptic": write_panoptic(raw / "panoptic"),
        "freihand": write_freihand(raw / "freihand"),
    }
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config.update(TINY)
    config["datasets"] = {
        "mpii_nzsl": {"root": str(raw / "hand_labels")},
        "panoptic": {"root": str(raw / "panoptic")},
        "stb": {"root": str(raw / "STB"), "cameras": ["SK"]},
        "freihand": {"root": str(raw / "freihand" / "FreiHAND_pub_v2")},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    targets = [f"results/datasets/{name}.h5" for name in
               ("mpii_nzsl_train", "mpii_nzsl_test", "stb_test", "panoptic_train", "freihand_train")]  # fmt: skip
    snakemake(work, "--cores", "2", *targets, "results/real/mpii_nzsl/issues.json")
    return work, truth


def _packed(work: Path, name: str) -> dict:
    with open_packed(work / "results" / "datasets" / f"{name}.h5") as f:
        data = {key: read_field(f[key]) for key in f}
    data["names"] = list(data["names"])
    return data


@pytest.mark.workflow
def test_hand_labels_crops_mirroring_and_outside_keypoints(built):
    work, truth = built
    for split in ("train", "test"):
        data = _packed(work, f"mpii_nzsl_{split}")
        for i, name in enumerate(data["names"]):
            kp, w, h, left = truth["hand_labels"][name]
            expected = expected_crop(kp, w, h, mirrored=left)
            np.testing.assert_allclose(data["keypoints_2d"][i], expected, atol=1e-3, err_msg=name)
            assert data["is_left"][i] == left and data["crop_box"][i, 3] == float(left)
            assert not data["has_3d"][i] and data["heatmaps"].shape[1:] == (21, 80, 80)
    test = _packed(work, "mpii_nzsl_test")
    outside = test["names"].index("manual_test/Berry_roof_story.flv_000053_l")
    assert test["keypoints_2d"][outside, 20, 2] == 0, "a keypoint outside the image is kept but not visible"


@pytest.mark.workflow
def test_corrupt_jpeg_is_skipped_and_counted(built):
    work, _ = built
    train = _packed(work, "mpii_nzsl_train")
    assert train["names"] == ["manual_train/000020000_02_l"]
    issues = json.loads((work / "results/real/mpii_nzsl/issues.json").read_text())
    assert issues["train"]["unreadable_image"] == 1 and issues["test"]["keypoints_outside_image"] == 1
    assert issues["total"]["unreadable_image"] == 1


@pytest.mark.workflow
def test_stb_depth_frame_palm_root_projection_and_mirroring(built):
    work, truth = built
    data = _packed(work, "stb_test")
    counting = [i for i, n in enumerate(data["names"]) if n.startswith("B1Counting/")]
    assert len(data["names"]) == 4 and data["is_left"].all() and counting, data["names"]
    for frame, i in enumerate(counting):
        xyz = truth["stb"][frame]
        np.testing.assert_allclose(data["keypoints_3d"][i], xyz * [-1, 1, 1], atol=1e-5)  # mirrored X' = -X
        uv = xyz @ STB_K.T
        uv = uv[:, :2] / uv[:, 2:]
        expected = expected_crop(np.column_stack([uv, np.ones(21)]), 640, 480, mirrored=True)
        np.testing.assert_allclose(data["keypoints_2d"][i], expected, atol=2e-3)


@pytest.mark.workflow
def test_panoptic_and_freihand(built):
    work, truth = built
    panoptic = _packed(work, "panoptic_train")
    np.testing.assert_allclose(panoptic["keypoints_2d"][0], expected_crop(truth["panoptic"], 1920, 1080, False),
                               atol=1e-3)  # fmt: skip
    freihand = _packed(work, "freihand_train")
    K, xyz = truth["freihand"]
    uv = xyz @ K.T
    expected = expected_crop(np.column_stack([uv[:, :2] / uv[:, 2:], np.ones(21)]), 224, 224, False)
    np.testing.assert_allclose(freihand["keypoints_2d"][0], expected, atol=1e-3)
    np.testing.assert_allclose(freihand["keypoints_3d"][0], xyz, atol=1e-6)
    assert freihand["has_mask"][0] and freihand["masks"][0].sum() > 1000, "FreiHAND's own mask is used"


@pytest.mark.workflow
def test_a_root_in_the_wrong_layout_fails_naming_what_is_missing(tmp_path):
    wrong = tmp_path / "not_hand_labels"
    wrong.mkdir()
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["datasets"]["mpii_nzsl"]["root"] = str(wrong)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "--cores", "1", "results/real/mpii_nzsl/test/samples.json", check=False)
    assert result.returncode != 0
    log = (tmp_path / "results/logs/read_annotations/mpii_nzsl_test.log").read_text()
    assert str(wrong) in log and "manual_test" in log
