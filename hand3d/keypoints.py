"""The canonical 21-keypoint hand order, gathers from each dataset's order, mirroring and small helpers.

Canonical order (OpenPose / CMU Panoptic hand; Simon et al., *Hand Keypoint Detection in Single Images using
Multiview Bootstrapping*, CVPR 2017): 0 wrist; 1-4 thumb CMC, MCP, IP, tip; 5-8 index MCP, PIP, DIP, tip;
9-12 middle; 13-16 ring; 17-20 little (same joints as the index).

Gather convention: ``openpose[i] = src[idx[i]]`` along the keypoint axis (axis -2 of a ``(..., 21, C)``
array).

Coordinates (DESIGN.md section 2): 2D x = column, y = row in pixels (OpenCV); 3D in metres, camera frame with
OpenCV axes (x right, y down, z away from the camera). Left hands are mirrored to right hands: 2D
``x' = W - 1 - x``, 3D ``X' = -X``, image flipped left-right.

Only numpy is imported here; functions that also accept torch tensors detect them by duck typing and import
torch lazily.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "BONES",
    "FINGERS",
    "FINGER_NAMES",
    "GATHER",
    "IDENTITY",
    "KEYPOINT_NAMES",
    "MANO_TO_OPENPOSE",
    "NUM_KEYPOINTS",
    "PARENTS",
    "RHD_TO_OPENPOSE",
    "SOURCE_NAMES",
    "STB_TO_OPENPOSE",
    "bone_lengths",
    "mirror_image",
    "mirror_keypoints_2d",
    "mirror_keypoints_3d",
    "stb_palm_to_wrist",
    "to_openpose",
    "visible_bbox",
]

NUM_KEYPOINTS = 21

FINGER_NAMES: tuple[str, ...] = ("thumb", "index", "middle", "ring", "little")
_THUMB_JOINTS = ("cmc", "mcp", "ip", "tip")
_FINGER_JOINTS = ("mcp", "pip", "dip", "tip")


def _finger_joint_names(finger: str) -> tuple[str, ...]:
    """Names of a finger's 4 keypoints, base to tip, e.g. ``("index_mcp", ..., "index_tip")``."""
    joints = _THUMB_JOINTS if finger == "thumb" else _FINGER_JOINTS
    return tuple(f"{finger}_{joint}" for joint in joints)


KEYPOINT_NAMES: tuple[str, ...] = ("wrist",) + tuple(
    name for finger in FINGER_NAMES for name in _finger_joint_names(finger)
)

#: Finger name -> its 4 keypoint indices in the canonical order, base to tip.
FINGERS: dict[str, tuple[int, ...]] = {
    finger: tuple(range(1 + 4 * k, 5 + 4 * k)) for k, finger in enumerate(FINGER_NAMES)
}

#: Parent of each keypoint (-1 for the wrist): every finger is a chain wrist -> base -> ... -> tip.
PARENTS: tuple[int, ...] = (-1,) + tuple(0 if i % 4 == 1 else i - 1 for i in range(1, NUM_KEYPOINTS))

#: The 20 bones as (parent, child) pairs: (0,1), (1,2), (2,3), (3,4), (0,5), ..., (19,20).
BONES: tuple[tuple[int, int], ...] = tuple((PARENTS[i], i) for i in range(1, NUM_KEYPOINTS))


def _index_array(values: list[int] | range) -> np.ndarray:
    """A read-only int64 index array."""
    arr = np.asarray(values, dtype=np.int64)
    arr.flags.writeable = False
    return arr


# Source orders as written by each dataset's authors, with POSITION-BASED joint names. Naming pitfall: STB and
# RHD call the first thumb joint "thumb_mcp" (and the next ones pip/dip), but by position that joint is
# OpenPose index 1, the thumb CMC. Our tables name joints by position, so the same name always means the same
# place.

# STB (Zhang et al., "3D Hand Pose Tracking and Estimation Using Stereo Matching", arXiv 1610.07214, 2016):
# 0 palm centre (NOT the wrist); 1-4 little MCP, PIP, DIP, tip; 5-8 ring; 9-12 middle; 13-16 index; 17-20
# thumb.
_STB_NAMES: tuple[str, ...] = ("palm",) + tuple(
    name for finger in ("little", "ring", "middle", "index", "thumb") for name in _finger_joint_names(finger)
)

# RHD (Zimmermann & Brox, "Learning to Estimate 3D Hand Pose from Single RGB Images", ICCV 2017), per hand:
# 0 wrist; 1-4 thumb tip -> base; 5-8 index tip -> MCP; 9-12 middle; 13-16 ring; 17-20 little.
_RHD_NAMES: tuple[str, ...] = ("wrist",) + tuple(
    name for finger in FINGER_NAMES for name in reversed(_finger_joint_names(finger))
)

# MANO (Romero, Tzionas & Black, "Embodied Hands", SIGGRAPH Asia 2017): 16 joints, 0 wrist; 1-3 index MCP,
# PIP, DIP; 4-6 middle; 7-9 little; 10-12 ring; 13-15 thumb CMC, MCP, IP; then the 5 fingertip vertices
# appended in the order thumb, index, middle, ring, little (16-20).
_MANO_NAMES: tuple[str, ...] = (
    ("wrist",)
    + tuple(
        name for finger in ("index", "middle", "little", "ring", "thumb") for name in _finger_joint_names(finger)[:3]
    )
    + tuple(f"{finger}_tip" for finger in FINGER_NAMES)
)

#: Keypoint names in each source's own order (position-based names; STB's index 0 is "palm").
SOURCE_NAMES: dict[str, tuple[str, ...]] = {
    "openpose": KEYPOINT_NAMES,
    "cmu": KEYPOINT_NAMES,
    "freihand": KEYPOINT_NAMES,
    "stb": _STB_NAMES,
    "rhd": _RHD_NAMES,
    "mano": _MANO_NAMES,
}

# Gather arrays, openpose[i] = src[idx[i]] (DESIGN.md section 2; verified by name and geometry in the tests).
#: MANO 16 joints + 5 tip vertices (thumb, index, middle, ring, little) -> OpenPose.
MANO_TO_OPENPOSE = _index_array([0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20])
#: STB -> OpenPose; index 0 stays STB's palm centre (see :func:`stb_palm_to_wrist`). Its own inverse.
STB_TO_OPENPOSE = _index_array([0, 17, 18, 19, 20, 13, 14, 15, 16, 9, 10, 11, 12, 5, 6, 7, 8, 1, 2, 3, 4])
#: RHD -> OpenPose, per hand (RHD stores 42 keypoints: 0-20 left hand, 21-41 right; add 21 for the right
#: hand).
RHD_TO_OPENPOSE = _index_array([0, 4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17])
#: CMU hand_labels / hand143_panopticdb and FreiHAND are already in the OpenPose order.
IDENTITY = _index_array(range(NUM_KEYPOINTS))

GATHER: dict[str, np.ndarray] = {
    "openpose": IDENTITY,
    "cmu": IDENTITY,
    "freihand": IDENTITY,
    "stb": STB_TO_OPENPOSE,
    "rhd": RHD_TO_OPENPOSE,
    "mano": MANO_TO_OPENPOSE,
}


def _is_torch(x: Any) -> bool:
    """True for a torch tensor (duck typing on the type's module, no torch import)."""
    return type(x).__module__.split(".", 1)[0] == "torch"


def _as_array(x: Any) -> Any:
    """A torch tensor unchanged, anything else as a numpy array."""
    return x if _is_torch(x) else np.asarray(x)


def _copy(x: Any) -> Any:
    """A copy of a numpy array / array-like or a torch tensor (autograd-tracked clone)."""
    return x.clone() if _is_torch(x) else np.array(x, copy=True)


def to_openpose(points: Any, source: str) -> Any:
    """Gather keypoints from ``source``'s order into the OpenPose order along axis -2.

    ``points`` is ``(21, C)`` or ``(..., 21, C)``: a numpy array (or array-like) or a torch tensor (the result
    is then a tensor on the same device, differentiable). ``source`` is a key of :data:`GATHER`. For STB the
    result's index 0 is still the palm centre; see :func:`stb_palm_to_wrist`. For RHD pass one hand's 21
    keypoints.
    """
    if source not in GATHER:
        raise ValueError(f"unknown keypoint source {source!r}; expected one of {sorted(GATHER)}")
    points = _as_array(points)
    shape = tuple(points.shape)
    if len(shape) < 2 or shape[-2] != NUM_KEYPOINTS:
        raise ValueError(
            f"to_openpose({source!r}) expects an array of shape (..., {NUM_KEYPOINTS}, C), got shape {shape}"
        )
    idx = GATHER[source]
    if _is_torch(points):
        import torch

        return points[..., torch.tensor(idx.tolist(), device=points.device), :]
    return points[..., idx, :]


def stb_palm_to_wrist(keypoints_openpose: Any, factor: float = 2.0) -> Any:
    """Replace STB's palm centre (index 0 after :func:`to_openpose`) by an estimated wrist.

    ``wrist = ringMCP + factor * (palm - ringMCP)`` with ringMCP = OpenPose keypoint 13, the rule of
    Zimmermann & Brox (ICCV 2017) and Ge et al. (CVPR 2019) with ``factor = 2.0``. Works for any number of
    coordinate columns (2D or 3D) and leading batch dimensions; returns a new array (numpy or torch, like the
    input).
    """
    src = _as_array(keypoints_openpose)
    ring_mcp = src[..., 13, :]
    wrist = ring_mcp + factor * (src[..., 0, :] - ring_mcp)
    out = _copy(src)
    out[..., 0, :] = wrist
    return out


def mirror_keypoints_2d(kp: Any, width: float) -> Any:
    """Mirror 2D keypoints left-right in an image of ``width`` pixels: ``x' = width - 1 - x``.

    ``kp`` is ``(..., 21, 2)`` or ``(..., 21, 3)`` (x, y[, visibility]); y and any extra columns are kept. All
    keypoints are mirrored, visible or not. Applying it twice gives back the input. Returns a new array.
    """
    kp = _as_array(kp)
    out = _copy(kp)
    out[..., 0] = (width - 1) - kp[..., 0]
    return out


def mirror_keypoints_3d(kp: Any) -> Any:
    """Mirror 3D keypoints (camera frame) left-right: ``X' = -X``; Y, Z, extra columns kept. An involution."""
    kp = _as_array(kp)
    out = _copy(kp)
    out[..., 0] = -kp[..., 0]
    return out


def mirror_image(img: np.ndarray, channels_last: bool | None = None) -> np.ndarray:
    """A horizontally flipped (left-right) contiguous copy of an image or a batch of images.

    Layouts: ``(H, W)``, ``(H, W, C)`` or ``(..., H, W, C)`` (the default for 3+ dimensions: the width axis is
    -2). For a batch of single-channel images ``(N, H, W)`` pass ``channels_last=False`` (the width axis is
    -1).
    """
    img = np.asarray(img)
    if img.ndim < 2:
        raise ValueError(f"mirror_image expects an image with at least 2 dimensions, got shape {img.shape}")
    if channels_last is None:
        channels_last = img.ndim >= 3
    axis = -2 if channels_last else -1
    return np.ascontiguousarray(np.flip(img, axis=axis))


_PARENT_IDX = np.array([p for p, _ in BONES])
_CHILD_IDX = np.array([c for _, c in BONES])


def bone_lengths(kp3d: Any) -> Any:
    """Lengths of the 20 :data:`BONES`, in order: ``(..., 21, C)`` -> ``(..., 20)`` (numpy or torch)."""
    if _is_torch(kp3d):
        import torch

        parent = torch.as_tensor(_PARENT_IDX, device=kp3d.device)
        child = torch.as_tensor(_CHILD_IDX, device=kp3d.device)
        return torch.linalg.vector_norm(kp3d[..., child, :] - kp3d[..., parent, :], dim=-1)
    kp3d = np.asarray(kp3d)
    return np.linalg.norm(kp3d[..., _CHILD_IDX, :] - kp3d[..., _PARENT_IDX, :], axis=-1)


def visible_bbox(kp2d: np.ndarray) -> tuple[float, float, float, float]:
    """Tightest box ``(x0, y0, x1, y1)`` around the visible keypoints of one hand.

    ``kp2d`` is ``(K, 3)`` (x, y, visibility): a keypoint counts when its visibility is > 0 and its x, y are
    finite.
    A ``(K, 2)`` array counts every finite keypoint as visible. Raises ValueError when none is visible.
    """
    kp2d = np.asarray(kp2d, dtype=np.float64)
    if kp2d.ndim != 2 or kp2d.shape[1] not in (2, 3):
        raise ValueError(f"visible_bbox expects one hand's keypoints of shape (K, 2) or (K, 3), got {kp2d.shape}")
    visible = np.all(np.isfinite(kp2d[:, :2]), axis=1)
    if kp2d.shape[1] == 3:
        visible &= kp2d[:, 2] > 0
    if not visible.any():
        raise ValueError("visible_bbox: no visible keypoint")
    xy = kp2d[visible, :2]
    x0, y0 = xy.min(axis=0)
    x1, y1 = xy.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)
