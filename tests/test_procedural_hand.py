"""The procedural hand checked as a person would look at it: shape, proportions, rig, and how it bends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hand3d import hand_skeleton as sk
from hand3d.hand_pose_basis import SYNERGIES
from hand3d.hand_rig import SHAPE_DIRECTIONS
from hand3d.hand_stats import edge_face_counts, mesh_statistics, signed_volume
from hand3d.hand_surface import PART_NAMES
from hand3d.keypoints import FINGERS


def test_mesh_is_closed_oriented_genus_zero(procedural_arrays):
    v, f = procedural_arrays["v_template"], procedural_arrays["f"].astype(np.int64)
    assert np.all(edge_face_counts(f) == 2), "every edge must lie in exactly two faces"
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed), "faces must wind consistently"
    assert mesh_statistics(procedural_arrays)["euler_characteristic"] == 2
    assert signed_volume(v, f) > 0, "faces must wind counter-clockwise seen from outside"
    assert 250e-6 < signed_volume(v, f) < 550e-6, "an adult hand displaces about 0.3-0.5 litres"
    assert len(np.unique(f)) == len(v), "no stray vertices"


def test_adult_proportions(procedural_arrays):
    stats = mesh_statistics(procedural_arrays)
    assert 0.18 <= stats["hand_length_m"] <= 0.19
    assert 0.08 <= stats["palm_width_m"] <= 0.09


def test_five_digits_with_three_segments(procedural_arrays):
    labels = procedural_arrays["part_labels"]
    counts = np.bincount(labels, minlength=len(PART_NAMES))
    assert np.all(counts > 200), f"every part has skin: {dict(zip(PART_NAMES, counts, strict=True))}"
    joints = procedural_arrays["J"]
    for name, ids in sk.CHAIN.items():
        segments = np.diff(np.vstack([joints[ids], sk.digit_points(name)[3]]), axis=0)
        lengths = np.linalg.norm(segments, axis=1)
        assert np.all((lengths > 0.015) & (lengths < 0.05)), (name, lengths)
        assert lengths[0] > lengths[1], f"{name}: proximal segment is the longest"


def test_right_hand_thumb_placement(hand_layer):
    """Palm normal from how the fingers curl (grasp), finger direction from the wrist: thumb on the right-hand side."""
    rest = hand_layer.rest().keypoints[0]
    grasp = torch.zeros(1, 6)
    grasp[0, 0] = 1.0
    curled = hand_layer(torch.zeros(1, 3), grasp, torch.zeros(1, 10)).keypoints[0]
    tips = [FINGERS[f][3] for f in ("index", "middle", "ring", "little")]
    palm_normal = (curled[tips] - rest[tips]).mean(0)  # fingertips move towards the palm side
    forward = rest[9] - rest[0]
    thumb_side = rest[1] - rest[9]
    handedness = torch.dot(torch.linalg.cross(forward, palm_normal), thumb_side)
    assert handedness > 0, "a left hand, or a thumb on the wrong side"
    # The thumb starts near the wrist, on the side of the index finger, shorter than the fingers.
    assert torch.dist(rest[1], rest[5]) < torch.dist(rest[1], rest[17])
    assert torch.dist(rest[1], rest[4]) < torch.dist(rest[9], rest[12]) + torch.dist(rest[0], rest[9])


def test_mean_pose_reads_as_a_right_hand(procedural_arrays):
    """The check a converted MANO pickle goes through (hand3d.handedness) takes the procedural hand for a right one."""
    from hand3d.handedness import curl_side

    assert curl_side(procedural_arrays) < -0.9


def test_skinning_weights_are_a_partition_of_unity_and_smooth(procedural_arrays):
    w, f = procedural_arrays["weights"], procedural_arrays["f"].astype(np.int64)
    assert w.shape[1] == 16 and np.all(w >= 0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-9)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert np.abs(w[edges[:, 0]] - w[edges[:, 1]]).max() < 0.5, "weights jump across an edge"


def test_each_fingertip_follows_its_distal_joint(procedural_arrays):
    w, tips = procedural_arrays["weights"], procedural_arrays["tip_vertex_ids"]
    for tip, name in zip(tips, sk.TIP_ORDER, strict=True):
        assert w[tip].argmax() == sk.CHAIN[name][2], name
        assert procedural_arrays["part_labels"][tip] == PART_NAMES.index(name)


def test_joint_regressor_reproduces_the_skeleton(procedural_arrays):
    r, v = procedural_arrays["J_regressor"], procedural_arrays["v_template"]
    assert np.all(r >= 0)
    np.testing.assert_allclose(r.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(r @ v, sk.joints(), atol=2e-5)


def test_pose_basis_orthonormal_and_led_by_synergies(procedural_arrays):
    basis = procedural_arrays["hands_components"]
    np.testing.assert_allclose(basis @ basis.T, np.eye(45), atol=1e-10)
    assert len(SYNERGIES) >= 3 and SYNERGIES[:3] == ("grasp", "spread", "thumb opposition")


def test_grasp_closes_every_finger_towards_the_palm(hand_layer):
    rest = hand_layer.rest().keypoints[0]
    pose = torch.zeros(1, 6)
    pose[0, 0] = 2.0
    fist = hand_layer(torch.zeros(1, 3), pose, torch.zeros(1, 10)).keypoints[0]
    for name in ("index", "middle", "ring", "little"):
        tip, mcp = FINGERS[name][3], FINGERS[name][0]
        assert torch.dist(fist[tip], rest[0]) < 0.8 * torch.dist(rest[tip], rest[0]), name
        assert fist[tip, 2] < rest[mcp, 2], f"{name} tip must curl to the palm side (-z)"


def test_spread_fans_the_fingers(hand_layer):
    pose = torch.zeros(1, 6)
    pose[0, 1] = 1.0
    spread = hand_layer(torch.zeros(1, 3), pose, torch.zeros(1, 10)).keypoints[0]
    rest = hand_layer.rest().keypoints[0]
    width = lambda kp: torch.dist(kp[8], kp[20])  # noqa: E731
    assert width(spread) > 1.2 * width(rest)


def test_thumb_opposition_brings_thumb_towards_little_finger(hand_layer):
    pose = torch.zeros(1, 6)
    pose[0, 2] = 1.0
    opposed = hand_layer(torch.zeros(1, 3), pose, torch.zeros(1, 10)).keypoints[0]
    rest = hand_layer.rest().keypoints[0]
    assert torch.dist(opposed[4], opposed[20]) < 0.5 * torch.dist(rest[4], rest[20]), "thumb and little tips meet"


def test_mean_pose_is_relaxed(procedural_arrays, hand_layer):
    """hands_mean curls the fingers a little: tips lower than in the flat template, far from a fist."""
    rest = hand_layer.rest().keypoints[0]
    flat_tips = procedural_arrays["v_template"][procedural_arrays["tip_vertex_ids"]]
    relaxed_tips = hand_layer.rest().vertices[0, hand_layer.tip_vertex_ids].numpy()
    drop = flat_tips[1:, 2] - relaxed_tips[1:, 2]
    assert np.all((drop > 0.005) & (drop < 0.06)), drop
    assert float(torch.dist(rest[12], rest[0])) > 0.15


@pytest.mark.parametrize("index", range(len(SHAPE_DIRECTIONS)))
def test_shape_directions_are_meaningful(procedural_arrays, index):
    d = procedural_arrays["shapedirs"][..., index]
    assert 0.0005 < np.linalg.norm(d, axis=1).max() < 0.03, SHAPE_DIRECTIONS[index]


def test_shape_directions_independent_and_size_scales(procedural_arrays, hand_layer):
    dirs = procedural_arrays["shapedirs"].reshape(-1, 10)
    assert np.linalg.matrix_rank(dirs, tol=1e-6) == 10
    betas = torch.zeros(1, 10)
    betas[0, SHAPE_DIRECTIONS.index("size")] = 1.0
    bigger = hand_layer(torch.zeros(1, 3), torch.zeros(1, 6), betas).keypoints[0]
    rest = hand_layer.rest().keypoints[0]
    ratio = torch.dist(bigger[12], bigger[0]) / torch.dist(rest[12], rest[0])
    assert 1.05 < ratio < 1.09


def test_deterministic():
    from hand3d.procedural_hand import build_procedural_hand

    a, b = build_procedural_hand(), build_procedural_hand()
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
