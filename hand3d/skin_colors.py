"""Per-vertex skin colourings of the hand mesh for the synthetic pretraining set (DESIGN section 4).

A colouring set is a (K, V, 3) float32 array of sRGB values in [0, 1], one row per vertex of the hand model's
`v_template`, K colourings. Two sources:

- **Scans** (the paper's, for users who own MANO's scans): each registered mesh `NN_01r.obj` (the MANO topology
  fitted to a scan, V vertices) takes, vertex by vertex, the colour of the nearest point of the raw coloured scan of
  the same file name. This is what the authors' `create_colored_meshes.py` does (boukhayma/3dhand): it pairs
  `data/meshes_registered/%02d_01r.obj` with `data/meshes_unregistered/%02d_01r.obj` (identical names) and copies
  the colour of the nearest scan vertex; their scans are Meshlab OBJ exports with `v x y z r g b` lines in [0, 1].
- **Procedural** (no download): base tones interpolated along the Monk Skin Tone scale, low-frequency spatial
  variation, a lighter and pinker palm, lighter nails on the dorsal side of the fingertips and darker creases at
  the finger joints. Geometry comes from the model itself (joints = `J_regressor @ v_template`, `tip_vertex_ids`,
  faces), so it works for the real MANO mesh and the procedural hand alike. Right hands only (MANO_RIGHT).

Units: model coordinates in metres; distances below are in metres unless named `_mm`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# The Monk Skin Tone scale (Ellis Monk, 2019; published by Google as the MST scale, skintone.google), sRGB hex,
# from MST-1 (lightest) to MST-10 (darkest). Base tones are drawn between neighbouring swatches.
MONK_SKIN_TONES_HEX = (
    "f6ede4",
    "f3e7db",
    "f7ead0",
    "eadaba",
    "d7bd96",
    "a07e56",
    "825c43",
    "604134",
    "3a312a",
    "292420",
)
MONK_SKIN_TONES = np.array([[int(h[i : i + 2], 16) / 255.0 for i in (0, 2, 4)] for h in MONK_SKIN_TONES_HEX])
LUMA = np.array([0.2126, 0.7152, 0.0722])  # Rec. 709 luma weights

# MANO joint order: 0 wrist, 1-3 index, 4-6 middle, 7-9 little, 10-12 ring, 13-15 thumb.
# Per finger: its three joints (proximal to distal) and its row in `tip_vertex_ids` (thumb, index, middle, ring,
# little).
FINGERS = {
    "thumb": ((13, 14, 15), 0),
    "index": ((1, 2, 3), 1),
    "middle": ((4, 5, 6), 2),
    "ring": ((10, 11, 12), 3),
    "little": ((7, 8, 9), 4),
}
WRIST, INDEX_MCP, LITTLE_MCP = 0, 1, 7
# Joints with a skin crease across the finger: MCP, PIP, DIP of the four fingers; MCP and IP of the thumb (joint 13,
# the thumb's CMC, sits inside the thenar eminence and gets none).
CREASE_JOINTS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15)

WAVELENGTH_RANGE = (0.03, 0.10)  # metres, spatial variation
BRIGHTNESS_RANGE = (0.05, 0.08)  # +- fraction, spatial variation
HUE_VARIATION = 0.02  # +- red/blue balance, spatial variation
NAIL_RADIUS = 0.010  # metres from the tip vertex
CREASE_HALF_WIDTH = 0.002  # metres along the bone axis (widened to the mesh resolution, see `_crease_weights`)
CREASE_DEPTH_RANGE = (0.06, 0.14)  # fraction darker at the crease centre
PALM_STRENGTH_RANGE = (0.15, 0.30)
NAIL_STRENGTH_RANGE = (0.45, 0.65)
PALM_TINT = (1.04, 0.97, 0.95)  # pinker: more red, less green and blue
NAIL_TINT = (1.03, 0.98, 0.98)


# ----------------------------------------------------------------------------------------------- geometry


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def dorsal_direction(joints: np.ndarray) -> np.ndarray:
    """Unit vector out of the back of a RIGHT hand: normalize(cross(little_mcp - wrist, index_mcp - wrist)).

    `joints` is (>= 8, 3) in MANO's order. For a mirrored (left) hand the same formula points out of the palm.
    """
    return _unit(np.cross(joints[LITTLE_MCP] - joints[WRIST], joints[INDEX_MCP] - joints[WRIST]))


def model_joints(arrays: dict) -> np.ndarray:
    """(16, 3) rest joints `J_regressor @ v_template`."""
    return np.asarray(arrays["J_regressor"] @ arrays["v_template"], dtype=np.float64)


def _segments(joints: np.ndarray, tips: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Bone segments, 4 per finger (wrist->j0, j0->j1, j1->j2, j2->tip vertex): starts (S,3), ends (S,3) and each
    segment's (start joint, end joint) ids, a tip end written as -1 - its row in `tip_vertex_ids`.
    """
    starts, ends, ids = [], [], []
    for chain, row in FINGERS.values():
        points = [joints[WRIST], *joints[list(chain)], tips[row]]
        labels = [WRIST, *chain, -1 - row]
        for k in range(4):
            starts.append(points[k])
            ends.append(points[k + 1])
            ids.append((labels[k], labels[k + 1]))
    return np.array(starts), np.array(ends), ids


def _nearest_segment(vertices: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(V,) index of the segment closest to each vertex."""
    axis = ends - starts  # (S,3)
    rel = vertices[:, None, :] - starts[None]  # (V,S,3)
    t = np.clip(np.einsum("vsk,sk->vs", rel, axis) / np.maximum((axis**2).sum(-1), 1e-12), 0.0, 1.0)
    dist = np.linalg.norm(rel - t[..., None] * axis[None], axis=-1)
    return dist.argmin(axis=1)


def _median_edge(vertices: np.ndarray, faces: np.ndarray) -> float:
    tri = vertices[faces]
    return float(np.median(np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=-1)))


# ----------------------------------------------------------------------------------------------- masks


def _nail_weights(vertices: np.ndarray, joints: np.ndarray, tips: np.ndarray, dorsal: np.ndarray) -> np.ndarray:
    """(V,) in [0, 1]: 1 on the nails. A vertex is on a nail when it lies within NAIL_RADIUS of a tip vertex along
    the finger's distal axis (DIP -> tip; within 1.6 NAIL_RADIUS in space) and its offset from that axis points
    dorsally (within ~55 degrees); the weight fades over the nail's proximal quarter and its angular edge.

    The four fingers' nails face `dorsal`; the thumb's, rotated about its own axis in the rest pose, faces halfway
    between dorsal and radial (the thumb side, little MCP -> index MCP).
    """
    radial = _unit(joints[INDEX_MCP] - joints[LITTLE_MCP])
    weights = np.zeros(len(vertices))
    for name, (chain, row) in FINGERS.items():
        axis = _unit(tips[row] - joints[chain[2]])
        facing = _unit(dorsal + radial) if name == "thumb" else dorsal
        facing = _unit(facing - (facing @ axis) * axis)
        rel = vertices - joints[chain[2]]
        offset = rel - np.outer(rel @ axis, axis)
        cos = (_unit(offset) @ facing) * (np.linalg.norm(offset, axis=1) > 1e-9)
        behind_tip = (tips[row] - vertices) @ axis
        near = np.linalg.norm(vertices - tips[row], axis=1) < 1.6 * NAIL_RADIUS
        along = np.clip((NAIL_RADIUS - behind_tip) / (0.25 * NAIL_RADIUS), 0, 1) * near
        weights = np.maximum(weights, along * np.clip((cos - 0.35) / 0.25, 0, 1))
    return weights


def _crease_weights(vertices: np.ndarray, faces: np.ndarray, joints: np.ndarray, tips: np.ndarray) -> np.ndarray:
    """(V,) in [0, 1]: 1 at the centre of a crease band across a finger at each joint of CREASE_JOINTS.

    A vertex is in joint j's band when its nearest bone segment touches j, it lies within ~1.6 finger radii of the
    joint's axis line and its distance along the axis (the mean of the two bones' directions) is below the half
    width: CREASE_HALF_WIDTH, widened to 0.6 median edge length on coarse meshes so that every band holds vertices.
    Full weight over the inner half of the band, falling linearly to 0 at its edge.
    """
    starts, ends, ids = _segments(joints, tips)
    nearest = _nearest_segment(vertices, starts, ends)
    half = max(CREASE_HALF_WIDTH, 0.6 * _median_edge(vertices, faces))
    weights = np.zeros(len(vertices))
    for joint in CREASE_JOINTS:
        inbound = next(s for s, (_, end) in enumerate(ids) if end == joint)
        outbound = next(s for s, (start, _) in enumerate(ids) if start == joint)
        axis = _unit(_unit(ends[inbound] - starts[inbound]) + _unit(ends[outbound] - starts[outbound]))
        rel = vertices - joints[joint]
        along = rel @ axis
        radial = np.linalg.norm(rel - np.outer(along, axis), axis=1)
        on_finger = nearest == outbound
        finger_radius = np.median(radial[on_finger]) if on_finger.any() else half
        mask = np.isin(nearest, (inbound, outbound)) & (radial < 1.6 * finger_radius)
        band = np.clip((half - np.abs(along)) / (0.5 * half), 0, 1)
        weights = np.maximum(weights, band * mask)
    return weights


def _palm_weights(vertices: np.ndarray, faces: np.ndarray, dorsal: np.ndarray) -> np.ndarray:
    """(V,) in [0, 1]: 1 where the surface faces the palm side (normal against `dorsal`), 0 on the back."""
    from hand3d.render import vertex_normals

    facing = -(vertex_normals(vertices, faces.astype(np.int64)) @ dorsal)
    return np.clip((facing - 0.1) / 0.5, 0, 1)


# ----------------------------------------------------------------------------------------------- colour


def base_tones(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 3) sRGB tones along the Monk scale, stratified so that any count spans light to dark.

    Positions are one uniform draw per stratum of [0, 9] (then shuffled), each a linear blend of its two
    neighbouring swatches, with a slight random red/blue balance (-3 % .. +5 % redder).
    """
    last = len(MONK_SKIN_TONES) - 1
    positions = (rng.permutation(count) + rng.uniform(size=count)) / count * last
    low = np.minimum(np.floor(positions).astype(int), last - 1)
    frac = (positions - low)[:, None]
    tones = (1 - frac) * MONK_SKIN_TONES[low] + frac * MONK_SKIN_TONES[low + 1]
    red = rng.uniform(-0.03, 0.05, size=count)
    return np.clip(tones * np.stack([1 + red, np.ones(count), 1 - red], axis=1), 0, 1)


def _smooth_field(rng: np.random.Generator, points: np.ndarray, waves: int = 4) -> np.ndarray:
    """(V,) in [-1, 1]: a weighted sum of `waves` 3D sinusoids with random directions, phases and wavelengths."""
    directions = _unit(rng.normal(size=(waves, 3)))
    wavenumbers = 2 * np.pi / rng.uniform(*WAVELENGTH_RANGE, size=waves)
    phases = rng.uniform(0, 2 * np.pi, size=waves)
    weights = rng.uniform(0.2, 1.0, size=waves)
    weights /= weights.sum()
    return np.sin(points @ (directions * wavenumbers[:, None]).T + phases) @ weights


def _lighter(skin: np.ndarray, amount: float, tint: tuple[float, float, float]) -> np.ndarray:
    """(V, 3): `skin` tinted (per-channel factors, e.g. pinker) with its luminance (Rec. 709 weights on the sRGB
    values) moved a fraction `amount` of the way to 1, so that light and dark tones alike come out lighter."""
    luma = skin @ LUMA
    tinted = skin * np.array(tint)
    target = luma + amount * (1 - luma)
    return np.clip(tinted * (target / np.maximum(tinted @ LUMA, 1e-6))[:, None], 0, 1)


def _one_coloring(rng: np.random.Generator, tone: np.ndarray, points: np.ndarray, masks: dict) -> np.ndarray:
    """(V, 3) in [0, 1]: base tone -> palm -> spatial variation (clipped) -> nails -> creases (a true 6-14 %)."""
    skin = np.broadcast_to(tone, points.shape).copy()
    palm = rng.uniform(*PALM_STRENGTH_RANGE) * masks["palm"][:, None]
    skin += palm * (_lighter(skin, 0.5, PALM_TINT) - skin)
    brightness = 1 + rng.uniform(*BRIGHTNESS_RANGE) * _smooth_field(rng, points)
    hue = HUE_VARIATION * _smooth_field(rng, points)
    skin = np.clip(skin * brightness[:, None] * np.stack([1 + hue, np.ones_like(hue), 1 - hue], axis=1), 0, 1)
    nail = rng.uniform(*NAIL_STRENGTH_RANGE) * masks["nail"][:, None]
    skin += nail * (_lighter(skin, 0.6, NAIL_TINT) - skin)
    return skin * (1 - rng.uniform(*CREASE_DEPTH_RANGE) * masks["crease"][:, None])


def coloring_masks(arrays: dict) -> dict[str, np.ndarray]:
    """Per-vertex weights in [0, 1] of the procedural colouring's regions: `palm`, `nail`, `crease`."""
    vertices = np.asarray(arrays["v_template"], dtype=np.float64)
    faces = np.asarray(arrays["f"], dtype=np.int64)
    joints = model_joints(arrays)
    tips = vertices[np.asarray(arrays["tip_vertex_ids"], dtype=np.int64)]
    dorsal = dorsal_direction(joints)
    return {
        "palm": _palm_weights(vertices, faces, dorsal),
        "nail": _nail_weights(vertices, joints, tips, dorsal),
        "crease": _crease_weights(vertices, faces, joints, tips),
    }


def procedural_skin_colors(arrays: dict, count: int, seed: int) -> np.ndarray:
    """(count, V, 3) float32 sRGB in [0, 1]: procedural skin colourings of a right-hand MANO-layout model.

    Deterministic from `seed` (np.random.default_rng(seed)). Each colouring: a base tone along the Monk scale
    (`base_tones`), a lighter/pinker palm (15-30 % of the way to a pink-tinted lighter tone), +-5-8 % brightness and
    +-2 % red/blue balance varying smoothly over the hand (sums of 3D sinusoids, wavelengths 3-10 cm), lighter
    nails on the dorsal side of each fingertip, and crease bands 6-14 % darker across the finger joints.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    rng = np.random.default_rng(seed)
    vertices = np.asarray(arrays["v_template"], dtype=np.float64)
    points = vertices - vertices.mean(axis=0)
    masks = coloring_masks(arrays)
    tones = base_tones(rng, count)
    return np.stack([_one_coloring(rng, tone, points, masks) for tone in tones]).astype(np.float32)


# ----------------------------------------------------------------------------------------------- scans


def _obj_vertex_lines(path: str | os.PathLike) -> list[tuple[int, list[str]]]:
    """(1-based line number, fields after 'v') for every vertex line of an OBJ file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a text OBJ file ({error})") from None
    lines = [(n, line.split()[1:]) for n, line in enumerate(text.splitlines(), 1) if line.startswith("v ")]
    if not lines:
        raise ValueError(f"{path}: no vertex ('v x y z') lines")
    return lines


def _floats(path: str | os.PathLike, number: int, fields: list[str]) -> list[float]:
    try:
        return [float(x) for x in fields]
    except ValueError:
        raise ValueError(f"{path}:{number}: vertex line has a non-numeric field: {' '.join(fields)}") from None


def read_obj_vertices(path: str | os.PathLike) -> np.ndarray:
    """(V, 3) float64 positions of the `v x y z [...]` lines of an OBJ file, in file order (faces ignored)."""
    rows = []
    for number, fields in _obj_vertex_lines(path):
        if len(fields) < 3:
            raise ValueError(f"{path}:{number}: vertex line has fewer than 3 coordinates")
        rows.append(_floats(path, number, fields[:3]))
    return np.array(rows)


def read_colored_obj(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(points (M, 3), colours (M, 3) in [0, 1]) from an OBJ whose vertex lines are `v x y z r g b`.

    Colours may be stored in [0, 1] (Meshlab, the authors' scans) or 0-255: a file whose largest colour value
    exceeds 1 is read as 0-255 and divided by 255. A vertex line without colour is an error naming file and line.
    """
    rows = []
    for number, fields in _obj_vertex_lines(path):
        if len(fields) < 6:
            raise ValueError(f"{path}:{number}: vertex line has no colour (expected 'v x y z r g b')")
        rows.append(_floats(path, number, fields[:6]))
    data = np.array(rows)
    colors = data[:, 3:]
    if colors.min() < 0 or colors.max() > 255:
        raise ValueError(f"{path}: vertex colours outside [0, 1] and [0, 255]")
    if colors.max() > 1.0:
        colors = colors / 255.0
    return data[:, :3], colors


def transfer_colors(registered_vertices: np.ndarray, scan_points: np.ndarray, scan_colors: np.ndarray) -> np.ndarray:
    """(V, 3): each registered vertex takes the colour of its nearest scan point (same frame and units)."""
    from scipy.spatial import cKDTree

    _, nearest = cKDTree(scan_points).query(registered_vertices, k=1)
    return np.asarray(scan_colors)[nearest]


def _registered_meshes(registered_dir: Path, scans_dir: Path) -> list[Path]:
    for folder, what in ((registered_dir, "registered meshes"), (scans_dir, "scans")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: folder of {what} not found")
    meshes = sorted(p for p in registered_dir.iterdir() if p.is_file() and p.suffix.lower() == ".obj")
    if not meshes:
        raise FileNotFoundError(f"{registered_dir}: no registered meshes (*.obj, e.g. 01_01r.obj)")
    return meshes


def _pair_colors(mesh: Path, scan: Path, num_vertices: int) -> np.ndarray:
    if not scan.is_file():
        raise FileNotFoundError(f"{scan}: no scan of the same name as {mesh}")
    vertices = read_obj_vertices(mesh)
    if len(vertices) != num_vertices:
        raise ValueError(f"{mesh}: {len(vertices)} vertices, the hand model has {num_vertices}")
    points, colors = read_colored_obj(scan)
    return transfer_colors(vertices, points, colors)


def scan_colors(
    registered_dir: str | os.PathLike, scans_dir: str | os.PathLike, num_vertices: int
) -> tuple[np.ndarray, int]:
    """(colours (K, V, 3) float32 in [0, 1], skipped count) from MANO's registered meshes and their scans.

    Every `*.obj` in `registered_dir` (MANO's `NN_01r.obj`) is paired with the file of the identical name in
    `scans_dir`, as the authors' script does. A pair with a missing or unreadable file, or whose registered mesh
    does not have `num_vertices` vertices, is skipped with a warning and counted; no usable pair is an error.
    """
    registered_dir, scans_dir = Path(registered_dir), Path(scans_dir)
    colorings, skipped = [], 0
    for mesh in _registered_meshes(registered_dir, scans_dir):
        try:
            colorings.append(_pair_colors(mesh, scans_dir / mesh.name, num_vertices))
        except (OSError, ValueError) as error:
            log.warning("skipping %s: %s", mesh.name, error)
            skipped += 1
    if not colorings:
        raise ValueError(
            f"{registered_dir}: no usable registered mesh / scan pair (with scans in {scans_dir}); "
            f"{skipped} skipped, see the warnings"
        )
    log.info("coloured %d registered meshes from scans (%d skipped)", len(colorings), skipped)
    return np.stack(colorings).astype(np.float32), skipped


# ----------------------------------------------------------------------------------------------- entry point


def build_colors(
    out_npz: str | os.PathLike,
    hand_model_npz: str | os.PathLike,
    count: int,
    seed: int,
    registered_dir: str | os.PathLike | None = None,
    scans_dir: str | os.PathLike | None = None,
) -> dict:
    """Rule `colored_meshes`: write `colors` (K, V, 3) float32, `source` and `skipped` to `out_npz` atomically.

    With both `registered_dir` and `scans_dir`: every usable scan pair (K = their number; `count` is not used),
    `source = "scans"`. With neither: `count` procedural colourings from `seed`, `source = "procedural"`.
    """
    from hand3d.atomic import atomic_write
    from hand3d.hand_model import load_hand_model_arrays

    if (registered_dir is None) != (scans_dir is None):
        raise ValueError("give both registered_dir and scans_dir (scan colours) or neither (procedural colours)")
    arrays = load_hand_model_arrays(hand_model_npz)
    if registered_dir is not None:
        colors, skipped = scan_colors(registered_dir, scans_dir, len(arrays["v_template"]))
        source = "scans"
    else:
        colors, skipped, source = procedural_skin_colors(arrays, count, seed), 0, "procedural"
    result = {"colors": colors, "source": np.array(source), "skipped": np.array(skipped, dtype=np.int64)}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as stream:
            np.savez_compressed(stream, **result)

    atomic_write(out_npz, write)
    log.info("wrote %d %s skin colourings of %d vertices to %s", len(colors), source, colors.shape[1], out_npz)
    return result
