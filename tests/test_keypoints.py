"""Tests for hand3d.keypoints: canonical order, dataset gathers (by name and by geometry), mirroring."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from hand3d import keypoints as kp

# ----------------------------------------------------------------------------------------------------
# Published orders, spelled out here independently of hand3d.keypoints (position-based joint names: the first
# thumb joint is "thumb_cmc" even where STB / RHD call it "thumb_mcp").

OPENPOSE = [
    "wrist",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "little_mcp", "little_pip", "little_dip", "little_tip",
]  # fmt: skip

# STB (Zhang et al.): 0 palm; 1-4 little MCP..tip; 5-8 ring; 9-12 middle; 13-16 index; 17-20 thumb.
STB = [
    "palm",
    "little_mcp", "little_pip", "little_dip", "little_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
]  # fmt: skip

# RHD (Zimmermann & Brox): 0 wrist; each finger tip -> base, thumb, index, middle, ring, little.
RHD = [
    "wrist",
    "thumb_tip", "thumb_ip", "thumb_mcp", "thumb_cmc",
    "index_tip", "index_dip", "index_pip", "index_mcp",
    "middle_tip", "middle_dip", "middle_pip", "middle_mcp",
    "ring_tip", "ring_dip", "ring_pip", "ring_mcp",
    "little_tip", "little_dip", "little_pip", "little_mcp",
]  # fmt: skip

# MANO (Romero et al.): 0 wrist; 1-3 index; 4-6 middle; 7-9 little; 10-12 ring; 13-15 thumb; + 5 tips.
MANO = [
    "wrist",
    "index_mcp", "index_pip", "index_dip",
    "middle_mcp", "middle_pip", "middle_dip",
    "little_mcp", "little_pip", "little_dip",
    "ring_mcp", "ring_pip", "ring_dip",
    "thumb_cmc", "thumb_mcp", "thumb_ip",
    "thumb_tip", "index_tip", "middle_tip", "ring_tip", "little_tip",
]  # fmt: skip

PUBLISHED = {"stb": STB, "rhd": RHD, "mano": MANO}

# The one documented alias: STB's palm centre sits where OpenPose has the wrist (see stb_palm_to_wrist).
STB_ALIAS = {"palm": "wrist"}


def right_hand() -> dict[str, np.ndarray]:
    """A synthetic right hand in metres: wrist at the origin, fingers fanned along +x, thumb on the +y side,
    palm facing -z (fingers curl towards -z). Every bone has a distinct length, so any swap changes the
    geometry."""
    joints: dict[str, np.ndarray] = {"wrist": np.zeros(3)}
    fingers = {  # base position, fan angle in the x-y plane (rad), segment lengths
        "index": ((0.090, 0.030, -0.004), 0.12, (0.041, 0.025, 0.019)),
        "middle": ((0.094, 0.010, -0.006), 0.03, (0.045, 0.028, 0.021)),
        "ring": ((0.089, -0.010, -0.005), -0.07, (0.043, 0.027, 0.020)),
        "little": ((0.080, -0.028, -0.002), -0.18, (0.033, 0.022, 0.016)),
    }
    for name, (base, fan, lengths) in fingers.items():
        pos = np.array(base)
        joints[f"{name}_mcp"] = pos
        for k, (joint, length) in enumerate(zip(("pip", "dip", "tip"), lengths, strict=True)):
            curl = 0.25 * (k + 1)  # flexion towards the palm side (-z)
            step = np.array([np.cos(fan) * np.cos(curl), np.sin(fan) * np.cos(curl), -np.sin(curl)])
            pos = pos + length * step
            joints[f"{name}_{joint}"] = pos
    pos = np.array([0.022, 0.024, -0.010])
    joints["thumb_cmc"] = pos
    for joint, length, direction in (
        ("mcp", 0.046, (0.6, 0.7, -0.3)),
        ("ip", 0.032, (0.8, 0.5, -0.35)),
        ("tip", 0.024, (0.9, 0.3, -0.4)),
    ):
        d = np.array(direction)
        pos = pos + length * d / np.linalg.norm(d)
        joints[f"thumb_{joint}"] = pos
    # STB's palm centre, placed so that the documented rule (factor 2 from the ring MCP) recovers the wrist.
    joints["palm"] = 0.5 * (joints["wrist"] + joints["ring_mcp"])
    return joints


def canonical(joints: dict[str, np.ndarray]) -> np.ndarray:
    return np.stack([joints[name] for name in OPENPOSE])


def triple(points: np.ndarray) -> float:
    """det(index_mcp - wrist, little_mcp - wrist, middle_tip - wrist): its sign is the handedness."""
    w = points[0]
    return float(np.linalg.det(np.stack([points[5] - w, points[17] - w, points[12] - w])))


# ----------------------------------------------------------------------------------------------------
# Canonical order, skeleton


def test_canonical_names_and_counts():
    assert kp.NUM_KEYPOINTS == 21
    assert list(kp.KEYPOINT_NAMES) == OPENPOSE
    assert kp.FINGER_NAMES == ("thumb", "index", "middle", "ring", "little")
    assert list(kp.FINGERS) == list(kp.FINGER_NAMES)
    for finger, idx in kp.FINGERS.items():
        assert len(idx) == 4
        assert all(kp.KEYPOINT_NAMES[i].startswith(finger + "_") for i in idx)
        assert kp.KEYPOINT_NAMES[idx[-1]] == f"{finger}_tip"


def test_bones_each_keypoint_is_a_child_once():
    assert len(kp.BONES) == 20
    children = [c for _, c in kp.BONES]
    assert sorted(children) == list(range(1, 21))
    assert kp.PARENTS[0] == -1
    assert all(kp.PARENTS[c] == p for p, c in kp.BONES)


def test_each_finger_is_a_chain_of_four_from_the_wrist():
    bones = set(kp.BONES)
    for finger, idx in kp.FINGERS.items():
        chain = (0, *idx)
        for parent, child in zip(chain[:-1], chain[1:], strict=True):
            assert (parent, child) in bones, (finger, parent, child)
        # walking parents from the tip reaches the wrist in exactly 4 steps
        node, steps = idx[-1], 0
        while node != 0:
            node, steps = kp.PARENTS[node], steps + 1
        assert steps == 4


# ----------------------------------------------------------------------------------------------------
# Gathers by name


@pytest.mark.parametrize("source", ["stb", "rhd", "mano"])
def test_source_name_tables_match_published_orders(source):
    assert list(kp.SOURCE_NAMES[source]) == PUBLISHED[source]


@pytest.mark.parametrize("source", ["stb", "rhd", "mano"])
def test_gather_by_name(source):
    names = np.array(PUBLISHED[source], dtype=object)[:, None]  # (21, 1)
    gathered = [str(n) for n in kp.to_openpose(names, source)[:, 0]]
    alias = STB_ALIAS if source == "stb" else {}
    assert [alias.get(n, n) for n in gathered] == OPENPOSE


@pytest.mark.parametrize("source", ["openpose", "cmu", "freihand"])
def test_identity_sources(source):
    assert np.array_equal(kp.GATHER[source], np.arange(21))
    assert list(kp.SOURCE_NAMES[source]) == OPENPOSE


def test_gather_arrays_are_readonly_permutations():
    assert set(kp.GATHER) == {"openpose", "cmu", "freihand", "stb", "rhd", "mano"}
    for idx in kp.GATHER.values():
        assert idx.dtype.kind == "i"
        assert sorted(idx.tolist()) == list(range(21))
        with pytest.raises(ValueError, match="read-only"):
            idx[0] = 1
    assert np.array_equal(kp.STB_TO_OPENPOSE[kp.STB_TO_OPENPOSE], np.arange(21))  # STB's gather is an involution


# ----------------------------------------------------------------------------------------------------
# Gathers by geometry


@pytest.mark.parametrize("source", ["stb", "rhd", "mano"])
def test_gather_by_geometry(source):
    joints = right_hand()
    expected = canonical(joints)
    src = np.stack([joints[name] for name in PUBLISHED[source]])  # the hand written in the source's order
    got = kp.to_openpose(src, source)
    if source == "stb":
        assert np.allclose(got[0], joints["palm"])
        got = kp.stb_palm_to_wrist(got)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(kp.bone_lengths(got), kp.bone_lengths(expected), atol=1e-12)


def test_synthetic_hand_is_right_handed_and_bones_distinct():
    points = canonical(right_hand())
    lengths = kp.bone_lengths(points)
    assert len(np.unique(np.round(lengths, 6))) == 20
    assert triple(points) > 0


def test_to_openpose_batches_and_torch():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(2, 3, 21, 3))
    out = kp.to_openpose(pts, "mano")
    assert out.shape == pts.shape
    for b in range(2):
        for c in range(3):
            np.testing.assert_array_equal(out[b, c], kp.to_openpose(pts[b, c], "mano"))
    t = torch.tensor(pts, requires_grad=True)
    out_t = kp.to_openpose(t, "rhd")
    assert isinstance(out_t, torch.Tensor)
    np.testing.assert_array_equal(out_t.detach().numpy(), kp.to_openpose(pts, "rhd"))
    out_t.sum().backward()
    assert torch.all(t.grad == 1)


def test_to_openpose_errors():
    with pytest.raises(ValueError, match="unknown keypoint source"):
        kp.to_openpose(np.zeros((21, 3)), "coco")
    with pytest.raises(ValueError, match="21"):
        kp.to_openpose(np.zeros((16, 3)), "mano")
    with pytest.raises(ValueError, match="21"):
        kp.to_openpose(np.zeros((42, 3)), "rhd")  # RHD: pass one hand, [:21] or [21:]


def test_stb_palm_to_wrist_hand_built():
    pts = np.zeros((21, 3))
    pts[0] = [1.0, 2.0, 3.0]  # palm
    pts[13] = [0.0, 1.0, 1.0]  # ring MCP
    pts[9] = [5.0, 5.0, 5.0]  # must not be used
    out = kp.stb_palm_to_wrist(pts)
    np.testing.assert_allclose(out[0], [2.0, 3.0, 5.0])  # ring + 2 * (palm - ring)
    np.testing.assert_allclose(kp.stb_palm_to_wrist(pts, factor=1.5)[0], [1.5, 2.5, 4.0])
    np.testing.assert_array_equal(out[1:], pts[1:])
    assert np.array_equal(pts[0], [1.0, 2.0, 3.0])  # input untouched
    batch = np.stack([pts, 2 * pts])
    np.testing.assert_allclose(kp.stb_palm_to_wrist(batch)[1, 0], [4.0, 6.0, 10.0])


# ----------------------------------------------------------------------------------------------------
# Mirroring


def test_mirror_3d_flips_handedness_and_is_an_involution():
    points = canonical(right_hand())
    mirrored = kp.mirror_keypoints_3d(points)
    assert triple(points) > 0 > triple(mirrored)
    np.testing.assert_allclose(mirrored[:, 0], -points[:, 0])
    np.testing.assert_array_equal(mirrored[:, 1:], points[:, 1:])
    np.testing.assert_array_equal(kp.mirror_keypoints_3d(mirrored), points)
    np.testing.assert_allclose(kp.bone_lengths(mirrored), kp.bone_lengths(points))


def test_mirror_2d():
    width = 320
    pts = np.zeros((2, 21, 3))
    pts[..., 0] = np.arange(21) * 10.0
    pts[..., 1] = 7.0
    pts[..., 2] = 1.0
    pts[1, 3, 2] = 0.0
    out = kp.mirror_keypoints_2d(pts, width)
    assert out[0, 0, 0] == width - 1  # x = 0 -> W - 1
    np.testing.assert_array_equal(out[..., 0], width - 1 - pts[..., 0])
    np.testing.assert_array_equal(out[..., 1:], pts[..., 1:])  # y and visibility kept
    np.testing.assert_array_equal(kp.mirror_keypoints_2d(out, width), pts)
    np.testing.assert_array_equal(kp.mirror_keypoints_2d(pts[..., :2], width), out[..., :2])
    assert pts[0, 0, 0] == 0.0  # input untouched


def test_mirror_2d_matches_mirrored_image_pixels():
    img = np.zeros((5, 8, 3), dtype=np.uint8)
    img[2, 1] = 255  # a keypoint at x = 1, y = 2
    flipped = kp.mirror_image(img)
    x, y = kp.mirror_keypoints_2d(np.array([[1.0, 2.0]]), img.shape[1])[0]
    assert flipped[int(y), int(x)].tolist() == [255, 255, 255]
    assert flipped.sum() == img.sum()


def test_mirror_image_layouts():
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 255, size=(4, 6), dtype=np.uint8)
    np.testing.assert_array_equal(kp.mirror_image(gray), gray[:, ::-1])
    rgb = rng.integers(0, 255, size=(4, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(kp.mirror_image(rgb), rgb[:, ::-1, :])
    batch = rng.integers(0, 255, size=(2, 4, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(kp.mirror_image(batch), batch[:, :, ::-1, :])
    gray_batch = rng.integers(0, 255, size=(2, 4, 6), dtype=np.uint8)
    np.testing.assert_array_equal(kp.mirror_image(gray_batch, channels_last=False), gray_batch[:, :, ::-1])
    out = kp.mirror_image(rgb)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(kp.mirror_image(out), rgb)


def test_mirror_torch():
    t = torch.tensor(canonical(right_hand()), requires_grad=True)
    out = kp.mirror_keypoints_3d(t)
    np.testing.assert_allclose(out.detach().numpy(), kp.mirror_keypoints_3d(t.detach().numpy()))
    out[:, 0].sum().backward()
    assert torch.all(t.grad[:, 0] == -1) and torch.all(t.grad[:, 1:] == 0)


# ----------------------------------------------------------------------------------------------------
# Helpers


def test_bone_lengths():
    pts = np.zeros((21, 3))
    for finger, idx in kp.FINGERS.items():
        for k, i in enumerate(idx):
            pts[i] = [k + 1.0, 10.0 * kp.FINGER_NAMES.index(finger), 0.0]
    lengths = kp.bone_lengths(pts)
    assert lengths.shape == (20,)
    # first bone of each finger goes from the wrist, the next three are unit steps along x
    for f in range(5):
        np.testing.assert_allclose(lengths[4 * f], np.hypot(1.0, 10.0 * f))
        np.testing.assert_allclose(lengths[4 * f + 1 : 4 * f + 4], 1.0)
    batch = np.stack([pts, 3 * pts])
    np.testing.assert_allclose(kp.bone_lengths(batch)[1], 3 * lengths)
    np.testing.assert_allclose(kp.bone_lengths(torch.tensor(pts)).numpy(), lengths)


def test_visible_bbox():
    pts = np.zeros((21, 3))
    pts[:, 0] = np.arange(21)
    pts[:, 1] = 100 - np.arange(21)
    pts[:, 2] = 0
    pts[[2, 5, 9], 2] = 1
    pts[0] = [-50, -50, 0]  # invisible, ignored
    assert kp.visible_bbox(pts) == (2.0, 91.0, 9.0, 98.0)
    assert kp.visible_bbox(pts[:, :2]) == (-50.0, -50.0, 20.0, 99.0)
    with pytest.raises(ValueError, match="no visible"):
        kp.visible_bbox(np.zeros((21, 3)))


def test_no_torch_import_at_module_level():
    code = "import sys, hand3d.keypoints, hand3d.camera; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
