"""GrabCut seeded with the skeleton on a rendered hand with a known silhouette; heatmaps; OpenPose detections."""

from __future__ import annotations

import json

import numpy as np

from hand3d.heatmaps import detected_hand, gaussian_heatmaps, openpose_json
from hand3d.segment import GrabCutConfig, grabcut_mask, seed_mask
from hand3d.synthetic import SamplerConfig, composite, pose_batch, project


def test_grabcut_recovers_a_rendered_hand(hand_layer):
    from hand3d.backgrounds import procedural_backgrounds
    from hand3d.render import Renderer

    rng = np.random.default_rng(2)
    cfg = SamplerConfig(pose_range=0.5)
    batch = pose_batch(hand_layer, rng, 3, cfg)
    backgrounds, _ = procedural_backgrounds(3, 320, seed=1)
    renderer = Renderer(320, 320)
    ious = []
    for verts, params, kp, bg in zip(batch.vertices, batch.params, batch.keypoints_2d, backgrounds, strict=True):
        rendered, coverage = renderer.render(project(verts[None], params[None, :3])[0], hand_layer.faces,
                                             np.array([0.85, 0.62, 0.5]), ambient=0.5)  # fmt: skip
        truth = coverage > 0.5
        mask = grabcut_mask(composite(rendered, coverage, bg), kp).astype(bool)
        ious.append((mask & truth).sum() / (mask | truth).sum())
    renderer.release()
    assert np.mean(ious) > 0.7, ious


def test_seeds_grade_from_sure_hand_on_the_bone_to_sure_background_beyond_the_margin():
    """One bone along row 160 with widths 12 / 40 and a 60 px margin: labels by distance from the bone."""
    import cv2

    kp = np.zeros((21, 3), np.float32)
    kp[0], kp[1] = [100, 160, 1], [220, 160, 1]
    mask = seed_mask((320, 320), kp, GrabCutConfig(bone_width=12, probable_width=40, background_margin=60))
    column = mask[:, 160]
    assert column[160 + 4] == cv2.GC_FGD and column[160 - 4] == cv2.GC_FGD
    assert column[160 + 12] == cv2.GC_PR_FGD and column[160 - 12] == cv2.GC_PR_FGD
    assert column[160 + 40] == cv2.GC_PR_BGD and column[160 - 40] == cv2.GC_PR_BGD
    assert column[160 + 80] == cv2.GC_BGD and column[160 - 80] == cv2.GC_BGD
    assert np.all(mask[:, :30] == cv2.GC_BGD), "beyond the margin from the bone's end"


def test_grabcut_needs_two_visible_keypoints():
    kp = np.zeros((21, 3), np.float32)
    kp[0] = [100, 100, 1]
    assert grabcut_mask(np.zeros((320, 320, 3), np.uint8), kp) is None


def test_heatmap_peaks_at_the_keypoint_scaled_by_confidence():
    kp = np.zeros((21, 3), np.float32)
    kp[3] = [159.5, 79.5, 1.0]  # crop pixel (159.5, 79.5) is heatmap pixel (39.5, 19.5) at size 80: between pixels
    kp[7] = [40.0 * 4 + 1.5, 10 * 4 + 1.5, 0.5]  # exactly heatmap pixel (40, 10), half confidence
    maps = gaussian_heatmaps(kp, size=80, sigma=6.0)
    assert maps.shape == (21, 80, 80) and maps.dtype == np.uint8
    assert maps[0].max() == 0, "an invisible keypoint has an empty map"
    assert tuple(np.argwhere(maps[7] == maps[7].max())[0]) == (10, 40) and maps[7].max() == 128
    peak = np.argwhere(maps[3] == maps[3].max())
    assert {tuple(p) for p in peak} == {(19, 39), (19, 40), (20, 39), (20, 40)}
    # the Gaussian's width: one sigma (6 crop px = 1.5 heatmap px) away the value is exp(-1/2) of the peak
    assert abs(int(maps[7][10, 40 + 3]) - 255 * 0.5 * np.exp(-((3 / 1.5) ** 2) / 2)) <= 1


def test_openpose_detection_of_the_right_side_nearest_the_hand(tmp_path):
    right_far = np.tile([900.0, 900.0, 0.9], 21).tolist()
    right_near = np.tile([110.0, 120.0, 0.8], 21).tolist()
    left = np.tile([100.0, 100.0, 0.7], 21).tolist()
    people = [
        {"hand_right_keypoints_2d": right_far, "hand_left_keypoints_2d": [0.0] * 63},
        {"hand_right_keypoints_2d": right_near, "hand_left_keypoints_2d": left},
    ]
    (tmp_path / "seq").mkdir()
    path = tmp_path / "seq" / "img_7_keypoints.json"
    path.write_text(json.dumps({"version": 1.3, "people": people}))
    found = openpose_json(tmp_path, "/data/root/seq/img_7.png", "/data/root")
    assert found == path
    hand = detected_hand(found, is_left=False, near=np.array([100.0, 100.0]))
    np.testing.assert_allclose(hand[0], [110, 120, 0.8])
    assert detected_hand(found, is_left=True, near=np.array([0.0, 0.0]))[0, 2] == np.float32(0.7)
    assert openpose_json(tmp_path, "/data/root/other.png", "/data/root") is None
