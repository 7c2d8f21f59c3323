"""A procedural right hand in MANO's format, for machines without the licensed MANO file.

`build_procedural_hand()` returns the arrays smplx's MANO layer reads (`v_template`, `f`, `weights`, `J_regressor`,
`kintree_table`, `shapedirs`, `posedirs`, `hands_components`, `hands_mean`) plus `J` and `tip_vertex_ids`.
`posedirs` is all zeros: the procedural hand has no pose-corrective blend shapes (plain linear blend skinning).
Everything is computed, nothing is random: the same code gives the same arrays.
"""

from __future__ import annotations

import numpy as np

from hand3d import hand_pose_basis, hand_rig, hand_skeleton, hand_surface

GRID_SPACING_M = 0.003
NUM_POSE_BLEND = 135  # MANO: 15 joints x 9 rotation-matrix entries


def kintree_table() -> np.ndarray:
    """(2, 16) MANO's kinematic tree: parents (root as 2**32 - 1, as in the MANO file) and joint ids."""
    parents = hand_skeleton.PARENTS.astype(np.int64)
    parents[0] = 2**32 - 1
    return np.stack([parents, np.arange(hand_skeleton.NUM_JOINTS)])


def build_procedural_hand(grid_spacing: float = GRID_SPACING_M) -> dict[str, np.ndarray]:
    vertices, faces = hand_surface.build_surface(grid_spacing)
    labels = hand_rig.part_labels(vertices)
    weights = hand_rig.skinning_weights(vertices, faces, labels)
    joints = hand_skeleton.joints()
    return {
        "v_template": vertices,
        "f": faces.astype(np.uint32),
        "weights": weights,
        "J_regressor": hand_rig.joint_regressor(vertices, joints),
        "J": joints,
        "kintree_table": kintree_table(),
        "shapedirs": hand_rig.shape_directions(vertices, weights),
        "posedirs": np.zeros((len(vertices), 3, NUM_POSE_BLEND)),
        "hands_components": hand_pose_basis.pose_basis(),
        "hands_mean": hand_pose_basis.relaxed_mean(),
        "tip_vertex_ids": hand_rig.tip_vertex_ids(vertices, labels),
        "part_labels": labels.astype(np.uint8),
        "bs_style": np.array("lbs"),
        "bs_type": np.array("lrotmin"),
    }
