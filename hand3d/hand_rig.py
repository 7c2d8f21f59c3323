"""Rigging of the procedural hand: skinning weights, joint regressor, fingertip vertices and shape directions.

Each vertex belongs to the part (palm or a digit) whose distance field is smallest there. Its skinning weights
blend the bones of that part and the palm, falling off with the distance to each bone beyond the nearest one, then
diffused over the mesh so they vary smoothly. Shape directions are edits of the skeleton (lengths, widths, girth)
carried to the skin by the same weights, so every direction is coherent across joints.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import nnls
from scipy.spatial import cKDTree

from hand3d import hand_skeleton as sk
from hand3d.hand_surface import PART_NAMES, adjacency, part_distances

WEIGHT_FALLOFF = 0.0035  # metres beyond the nearest bone at which a bone's weight drops to 1/e
WEIGHT_DIFFUSION_STEPS = 4
REGRESSOR_NEIGHBOURS = 40


def part_labels(vertices: np.ndarray) -> np.ndarray:
    """Index into PART_NAMES of the part each vertex belongs to."""
    return part_distances(vertices).argmin(axis=1)


def bone_segments() -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """For each joint, the segments of the bone it drives: the palm (wrist to every digit base) for the root."""
    points = {name: sk.digit_points(name) for name in sk.DIGITS}
    segments: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(sk.NUM_JOINTS)]
    segments[0] = [(np.zeros(3), points[name][0]) for name in sk.DIGITS]
    for name, ids in sk.CHAIN.items():
        for i, joint in enumerate(ids):
            segments[joint] = [(points[name][i], points[name][i + 1])]
    return segments


def segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip((p - a) @ ab / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - a - t[:, None] * ab, axis=1)


def _allowed_joints(labels: np.ndarray) -> np.ndarray:
    """(V, 16) mask: a digit's vertices use its chain and the root; palm vertices the root and first bones."""
    allowed = np.zeros((len(labels), sk.NUM_JOINTS), dtype=bool)
    allowed[:, 0] = True
    for part, name in enumerate(PART_NAMES):
        rows = labels == part
        if name == "palm":
            allowed[np.ix_(rows, [ids[0] for ids in sk.CHAIN.values()])] = True
        else:
            allowed[np.ix_(rows, sk.CHAIN[name])] = True
    return allowed


def skinning_weights(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(V, 16) linear-blend-skinning weights, rows summing to 1."""
    dist = np.stack(
        [np.min([segment_distance(vertices, a, b) for a, b in segs], axis=0) for segs in bone_segments()], axis=1
    )
    dist = np.where(_allowed_joints(labels), dist, np.inf)
    weights = np.exp(-(((dist - dist.min(axis=1, keepdims=True)) / WEIGHT_FALLOFF) ** 2))
    a = adjacency(faces, len(vertices)) + sp.eye(len(vertices))
    average = sp.diags(1.0 / np.asarray(a.sum(axis=1)).ravel()) @ a
    for _ in range(WEIGHT_DIFFUSION_STEPS):
        weights = average @ weights
    weights[weights < 1e-4] = 0.0
    return weights / weights.sum(axis=1, keepdims=True)


def joint_regressor(vertices: np.ndarray, joints: np.ndarray, tolerance: float = 1e-5) -> np.ndarray:
    """(16, V) non-negative rows summing to 1 that reproduce each joint from the skin around it.

    Each row is a non-negative least-squares fit over the joint's nearest vertices, with the sum-to-one constraint
    as a heavily weighted extra equation and a small pull towards the uniform average (so the row stays spread).
    The neighbourhood doubles until the joint lies within `tolerance` metres of its regressed position (a joint
    deep in the palm needs skin from both faces of the palm around it).
    """
    tree = cKDTree(vertices)
    regressor = np.zeros((len(joints), len(vertices)))
    for j, joint in enumerate(joints):
        k = REGRESSOR_NEIGHBOURS
        while True:
            _, idx = tree.query(joint, k=min(k, len(vertices)))
            w = _convex_weights(vertices[idx], joint)
            if np.abs(w @ vertices[idx] - joint).max() < tolerance or k >= len(vertices):
                break
            k *= 2
        regressor[j, idx] = w
    return regressor


def _convex_weights(points: np.ndarray, target: np.ndarray) -> np.ndarray:
    k = len(points)
    a = np.vstack([points.T, 1e2 * np.ones((1, k)), 1e-3 * np.eye(k)])
    b = np.concatenate([target, [1e2], np.full(k, 1e-3 / k)])
    w, _ = nnls(a, b)
    return w / w.sum()


def tip_vertex_ids(vertices: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For thumb, index, middle, ring, little: the vertex of that digit furthest along its last bone."""
    ids = []
    for name in sk.TIP_ORDER:
        points = sk.digit_points(name)
        direction = sk.unit(points[3] - points[2])
        candidates = np.flatnonzero(labels == PART_NAMES.index(name))
        ids.append(candidates[np.argmax(vertices[candidates] @ direction)])
    return np.asarray(ids, dtype=np.int64)


# --- shape directions -------------------------------------------------------------------------------------------

SHAPE_DIRECTIONS = (
    "size",
    "palm width",
    "finger length",
    "finger girth",
    "palm length",
    "thumb length",
    "index to ring ratio",
    "little finger length",
    "finger taper",
    "palm thickness",
)


def _skeleton_edit(name: str) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A shape direction as (palm scale xyz, per-digit phalanx length scales, per-digit radial scales)."""
    palm = np.ones(3)
    lengths = {d: np.ones(3) for d in sk.DIGITS}
    radial = {d: np.ones(3) for d in sk.DIGITS}
    fingers = ("index", "middle", "ring", "little")
    if name == "size":
        palm[:] = 1.07
        for d in sk.DIGITS:
            lengths[d][:] = radial[d][:] = 1.07
    elif name == "palm width":
        palm[1] = 1.08
    elif name == "finger length":
        for d in fingers:
            lengths[d][:] = 1.08
    elif name == "finger girth":
        for d in fingers:
            radial[d][:] = 1.10
    elif name == "palm length":
        palm[0] = 1.07
    elif name == "thumb length":
        lengths["thumb"][:] = 1.10
    elif name == "index to ring ratio":
        lengths["index"][:] = 1.05
        lengths["ring"][:] = 0.95
    elif name == "little finger length":
        lengths["little"][:] = 1.10
    elif name == "finger taper":
        for d in sk.DIGITS:
            radial[d][:] = (1.04, 0.97, 0.90)
    elif name == "palm thickness":
        palm[2] = 1.15
    else:
        raise ValueError(f"unknown shape direction {name!r}")
    return palm, lengths, radial


def _minimal_rotation(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotation matrix taking unit vector u onto unit vector v by the shortest arc."""
    axis = np.cross(u, v)
    s, c = np.linalg.norm(axis), float(u @ v)
    if s < 1e-12:
        return np.eye(3)
    k = axis / s
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * kx + (1 - c) * kx @ kx


def _edited_bones(palm: np.ndarray, lengths: dict, radial: dict):
    """For every joint, (old a, old b, new a, new b, radial scale) of the bone it drives; None for the root."""
    bones: list = [None] * sk.NUM_JOINTS
    for name, ids in sk.CHAIN.items():
        old = sk.digit_points(name)
        steps = np.diff(old, axis=0) * lengths[name][:, None]
        new = np.vstack([old[0] * palm, old[0] * palm + np.cumsum(steps, axis=0)])
        for i, joint in enumerate(ids):
            bones[joint] = (old[i], old[i + 1], new[i], new[i + 1], radial[name][i])
    return bones


def shape_direction(vertices: np.ndarray, weights: np.ndarray, name: str) -> np.ndarray:
    """(V, 3) displacement of every vertex for one unit of the named shape direction."""
    palm, lengths, radial = _skeleton_edit(name)
    moved = np.zeros((sk.NUM_JOINTS, *vertices.shape))
    moved[0] = vertices * palm
    for joint, bone in enumerate(_edited_bones(palm, lengths, radial)):
        if bone is None:
            continue
        a, b, a2, b2, r = bone
        u, length = sk.unit(b - a), np.linalg.norm(b - a)
        t = (vertices - a) @ u / length
        offset = vertices - a - (t * length)[:, None] * u
        rot = _minimal_rotation(u, sk.unit(b2 - a2))
        moved[joint] = a2 + t[:, None] * (b2 - a2) + r * offset @ rot.T
    return np.einsum("vj,jvc->vc", weights, moved) - vertices


def shape_directions(vertices: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(V, 3, 10) shape blend shapes in MANO's layout, one per SHAPE_DIRECTIONS entry."""
    return np.stack([shape_direction(vertices, weights, name) for name in SHAPE_DIRECTIONS], axis=-1)
