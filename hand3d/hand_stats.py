"""Numbers that say whether a hand model is a sound hand: mesh topology, size, rig consistency."""

from __future__ import annotations

import numpy as np

from hand3d.keypoints import MANO_TO_OPENPOSE

THUMB_JOINTS = (13, 14, 15)


def edge_face_counts(faces: np.ndarray) -> np.ndarray:
    """How many faces share each undirected edge."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return counts


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Enclosed volume; positive when faces wind counter-clockwise seen from outside."""
    tri = vertices[faces]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def rest_keypoints(arrays: dict) -> np.ndarray:
    """(21, 3) keypoints of the flat template in OpenPose order."""
    vertices = arrays["v_template"]
    joints = arrays["J_regressor"] @ vertices
    return np.concatenate([joints, vertices[arrays["tip_vertex_ids"]]])[MANO_TO_OPENPOSE]


def palm_width(arrays: dict, band: float = 0.005) -> float:
    """Skin-to-skin width of the palm across the knuckles (index MCP to little MCP), thumb excluded."""
    kp = rest_keypoints(arrays)
    across = kp[5] - kp[17]
    across /= np.linalg.norm(across)
    along = kp[9] - kp[0]
    along /= np.linalg.norm(along)
    vertices = arrays["v_template"]
    not_thumb = ~np.isin(arrays["weights"].argmax(axis=1), THUMB_JOINTS)
    knuckle_line = (kp[[5, 9, 13, 17]] @ along).mean()
    near = not_thumb & (np.abs(vertices @ along - knuckle_line) < band)
    spread = vertices[near] @ across
    return float(spread.max() - spread.min())


def mesh_statistics(arrays: dict) -> dict[str, float | int | bool]:
    """Summary of a hand model's arrays (see `hand3d inspect`)."""
    vertices = arrays["v_template"]
    faces = np.asarray(arrays["f"], dtype=np.int64)
    counts = edge_face_counts(faces)
    kp = rest_keypoints(arrays)
    num_edges = len(counts)
    return {
        "vertices": len(vertices),
        "faces": len(faces),
        "closed": bool(np.all(counts == 2)),
        "euler_characteristic": int(len(vertices) - num_edges + len(faces)),
        "volume_cm3": round(signed_volume(vertices, faces) * 1e6, 1),
        "hand_length_m": round(float(np.linalg.norm(kp[12] - kp[0])), 4),
        "palm_width_m": round(palm_width(arrays), 4),
        "joint_regressor_row_sum_error": float(np.abs(arrays["J_regressor"].sum(axis=1) - 1).max()),
        "weights_row_sum_error": float(np.abs(arrays["weights"].sum(axis=1) - 1).max()),
        "pose_basis_orthonormality_error": float(
            np.abs(arrays["hands_components"] @ arrays["hands_components"].T - np.eye(45)).max()
        ),
    }
