"""Which hand a MANO-format model is: a user who gives ``MANO_LEFT.pkl`` for ``MANO_RIGHT.pkl`` gets told.

The file does not say which hand it holds, and a left model is a mirror image of a right one, so only geometry can.
A hand's mean pose (``hands_mean``, MANO's relaxed hand: 0.4-0.8 rad of flexion at the finger joints, cf. the
published right-hand mean) curls the fingers towards the palm. Posed so, the four fingers' distal joints move to the
palm side; :func:`skin_colors.dorsal_direction`, the right-hand formula for the back of the hand from the wrist and
the index and little MCP joints, then points away from that move on a right hand and along it on a mirrored one.
"""

from __future__ import annotations

import numpy as np

from hand3d.camera import rodrigues
from hand3d.skin_colors import dorsal_direction, model_joints

DISTAL_JOINTS = (3, 6, 9, 12)  # MANO's order: index, middle, little, ring distal joints (the thumb left out)
MIN_CURL_M = 1e-3  # a mean pose moving the distal joints less than this says nothing about the palm side


def _posed_joints(joints: np.ndarray, parents: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """(J, 3) joints after rotating each joint j >= 1 by ``pose[j - 1]`` (axis-angle) in its parent's frame."""
    local = rodrigues(pose.reshape(-1, 3))
    rotations, posed = [np.eye(3)], [joints[0]]
    for j in range(1, len(joints)):
        parent = int(parents[j])
        posed.append(posed[parent] + rotations[parent] @ (joints[j] - joints[parent]))
        rotations.append(rotations[parent] @ local[j - 1])
    return np.array(posed)


def curl_side(arrays: dict) -> float | None:
    """Cosine between the right-hand dorsal direction and the mean pose's move of the distal joints.

    Near -1 for a right hand (the fingers curl away from its back), near +1 for a left one; None when the mean pose
    curls the fingers too little (a flat mean) to tell.
    """
    joints = model_joints(arrays)
    parents = np.asarray(arrays["kintree_table"][0]).astype(np.int64)
    posed = _posed_joints(joints, parents, np.asarray(arrays["hands_mean"], dtype=np.float64))
    move = (posed[list(DISTAL_JOINTS)] - joints[list(DISTAL_JOINTS)]).mean(axis=0)
    if np.linalg.norm(move) < MIN_CURL_M:
        return None
    return float(dorsal_direction(joints) @ move / np.linalg.norm(move))


def check_right_hand(path: str, arrays: dict) -> None:
    """Raise, naming ``path``, if the model is a left hand."""
    side = curl_side(arrays)
    if side is not None and side > 0:
        raise ValueError(
            f"{path}: this is a left-hand model (its mean pose curls the fingers towards the side a right hand's "
            f"back faces, cosine {side:+.2f}); hand3d needs MANO's right hand, MANO_RIGHT.pkl (left hands in images "
            "are mirrored to right ones)"
        )
