"""The procedural hand's skin: a signed distance field of palm and digits, meshed by marching cubes.

The palm is a rounded slab over a convex outline through the knuckles; each digit is a chain of round cones
(tapered capsules, slightly wider than thick) along the skeleton of `hand_skeleton`; digits meet the palm through
a smooth minimum, which forms the webs and the thenar eminence. `skimage.measure.marching_cubes` turns the field into
a closed triangle mesh, lightly Taubin-smoothed.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from skimage import measure

from hand3d import hand_skeleton as sk

PART_NAMES = ("palm", "index", "middle", "little", "ring", "thumb")

# Palm outline, counter-clockwise in the x-y plane; the skin lies PALM_ROUNDING outside it.
PALM_OUTLINE = np.array(
    [
        [-0.003, -0.022],
        [0.040, -0.032],
        [0.071, -0.030],
        [0.082, -0.010],
        [0.086, 0.010],
        [0.083, 0.030],
        [0.050, 0.032],
        [0.004, 0.024],
        [-0.009, 0.001],
    ]
)
PALM_HALF_THICKNESS = 0.004
PALM_ROUNDING = 0.0115
FINGER_WIDTH_RATIO = 1.08  # digits are a little wider (along the palm) than thick
PALM_DIGIT_BLEND = 0.009
THUMB_BLEND = 0.014
JOINT_BLEND = 0.003


def smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum: min(a, b) rounded over a band of width k."""
    h = np.clip(k - np.abs(a - b), 0.0, None) / k
    return np.minimum(a, b) - h * h * k / 4.0


def polygon_sdf(xy: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """Signed distance from points (N, 2) to a convex polygon, negative inside."""
    nearest = np.full(len(xy), np.inf)
    inside = np.ones(len(xy), dtype=bool)
    for a, b in zip(outline, np.roll(outline, -1, axis=0), strict=True):
        edge = b - a
        t = np.clip(((xy - a) @ edge) / (edge @ edge), 0.0, 1.0)
        nearest = np.minimum(nearest, np.linalg.norm(xy - a - t[:, None] * edge, axis=1))
        inside &= (edge[0] * (xy[:, 1] - a[1]) - edge[1] * (xy[:, 0] - a[0])) >= 0
    return np.where(inside, -nearest, nearest)


def palm_sdf(p: np.ndarray) -> np.ndarray:
    d2 = polygon_sdf(p[:, :2], PALM_OUTLINE)
    dz = np.abs(p[:, 2]) - PALM_HALF_THICKNESS
    outside = np.hypot(np.clip(d2, 0, None), np.clip(dz, 0, None))
    return outside + np.minimum(np.maximum(d2, dz), 0.0) - PALM_ROUNDING


def round_cone_sdf(p: np.ndarray, a: np.ndarray, b: np.ndarray, ra: float, rb: float, width_axis: np.ndarray):
    """Distance to a tapered capsule from a to b (radius ra to rb), widened along width_axis."""
    axis = b - a
    length = np.linalg.norm(axis)
    u = axis / length
    t = np.clip((p - a) @ u / length, 0.0, 1.0)
    q = p - (a + t[:, None] * axis)
    along_width = q @ width_axis
    q = q + (1.0 / FINGER_WIDTH_RATIO - 1.0) * along_width[:, None] * width_axis
    return np.linalg.norm(q, axis=1) - (ra + t * (rb - ra))


def digit_sdf(p: np.ndarray, name: str) -> np.ndarray:
    points = sk.digit_points(name)
    radii = sk.DIGIT_SPECS[name].radii
    width_axis = sk.flexion_axis(name)
    d = np.full(len(p), np.inf)
    for i in range(3):
        seg = round_cone_sdf(p, points[i], points[i + 1], radii[i], radii[i + 1], width_axis)
        d = smooth_min(d, seg, JOINT_BLEND) if np.isfinite(d).all() else seg
    return d


def part_distances(p: np.ndarray) -> np.ndarray:
    """(N, 6) distance of each point to palm, index, middle, little, ring and thumb."""
    return np.stack([palm_sdf(p)] + [digit_sdf(p, name) for name in PART_NAMES[1:]], axis=1)


def hand_sdf(p: np.ndarray) -> np.ndarray:
    parts = part_distances(p)
    fingers = parts[:, 1:5].min(axis=1)
    hand = smooth_min(parts[:, 0], fingers, PALM_DIGIT_BLEND)
    return smooth_min(hand, parts[:, 5], THUMB_BLEND)


def _grid(spacing: float) -> tuple[np.ndarray, tuple[int, int, int], np.ndarray]:
    lo = np.array([-0.035, -0.06, -0.07])
    hi = np.array([0.215, 0.10, 0.035])
    axes = [np.arange(lo[i], hi[i] + spacing, spacing) for i in range(3)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    return mesh.reshape(-1, 3), mesh.shape[:3], lo


def edges_of(faces: np.ndarray) -> np.ndarray:
    """(3F, 2) directed edges of a triangle list."""
    return np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])


def adjacency(faces: np.ndarray, num_vertices: int) -> sp.csr_matrix:
    """Symmetric 0/1 vertex adjacency matrix."""
    e = edges_of(faces)
    a = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(num_vertices, num_vertices)).tocsr()
    a = ((a + a.T) > 0).astype(float)
    return a


def taubin_smooth(
    verts: np.ndarray, faces: np.ndarray, iterations: int = 10, lam: float = 0.5, mu: float = -0.53
) -> np.ndarray:
    """Taubin's lambda|mu smoothing (SIGGRAPH 1995): removes the marching-cubes ripple without shrinking."""
    a = adjacency(faces, len(verts))
    mean_of_neighbours = sp.diags(1.0 / np.asarray(a.sum(axis=1)).ravel()) @ a
    v = verts.copy()
    for _ in range(iterations):
        for step in (lam, mu):
            v = v + step * (mean_of_neighbours @ v - v)
    return v


def build_surface(spacing: float = 0.0026) -> tuple[np.ndarray, np.ndarray]:
    """Mesh the hand's zero level set: vertices (V, 3) in metres and outward-facing triangles (F, 3)."""
    points, shape, origin = _grid(spacing)
    field = hand_sdf(points).reshape(shape)
    # "descent": the field decreases into the hand, so faces wind counter-clockwise seen from outside.
    verts, faces, _, _ = measure.marching_cubes(field, level=0.0, spacing=(spacing,) * 3, gradient_direction="descent")
    verts = verts + origin
    return taubin_smooth(verts, faces), faces.astype(np.int64)
