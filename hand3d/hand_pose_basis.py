"""The procedural hand's pose space: a 45x45 orthonormal basis led by natural synergies, and a relaxed mean pose.

MANO's pose is 15 axis-angle rotations (45 numbers, joints 1-15 in MANO's order), each about axes fixed in the
template frame and composed down the kinematic chain; MANO's `hands_components` are PCA directions of that space
learned from scans. Without scans we write the leading directions as the grasp synergies reported for human hands
(Santello, Flanders & Soechting, *Postural hand synergies for tool use*, J. Neurosci. 18(23), 1998: the first
components are whole-hand flexion, then finger spread and thumb opposition, then finger individuation), make them
orthonormal in that order, and complete the basis with the remaining directions of the space. With unit rows, a
coefficient of +-2 (the paper's sampling range) is an extreme pose for a synergy that moves few joints.
"""

from __future__ import annotations

import numpy as np

from hand3d import hand_skeleton as sk

FINGERS = ("index", "middle", "ring", "little")

SYNERGIES = (
    "grasp",
    "spread",
    "thumb opposition",
    "precision pinch",
    "point",
    "hook",
    "tabletop",
    "ulnar flexion",
    "thumb flexion",
    "scissor",
)


def _pose() -> np.ndarray:
    return np.zeros((sk.NUM_JOINTS, 3))


def _flex(pose: np.ndarray, digit: str, angles) -> None:
    """Add flexion (radians, + curls towards the palm) at the digit's three joints."""
    axis = sk.flexion_axis(digit)
    for joint, angle in zip(sk.CHAIN[digit], angles, strict=True):
        pose[joint] += angle * axis


def _abduct(pose: np.ndarray, digit: str, angle: float) -> None:
    """Swing a digit at its base joint about the palm normal (+ towards the thumb side)."""
    pose[sk.CHAIN[digit][0]] += angle * sk.ABDUCTION_AXIS


def _twist(pose: np.ndarray, digit: str, angle: float) -> None:
    """Rotate a digit's base joint about the digit's own long axis."""
    pose[sk.CHAIN[digit][0]] += angle * sk.unit(sk.DIGIT_SPECS[digit].direction)


def synergy(name: str) -> np.ndarray:
    """One synergy as a 45-vector (joints 1-15), before orthonormalisation."""
    pose = _pose()
    if name == "grasp":
        for d in FINGERS:
            _flex(pose, d, (0.8, 1.0, 0.7))
        _flex(pose, "thumb", (0.3, 0.5, 0.6))
    elif name == "spread":  # opening the hand: fingers fan out and extend, the thumb abducts
        for d, angle in zip(FINGERS, (0.45, 0.1, -0.3, -0.5), strict=True):
            _abduct(pose, d, angle)
            _flex(pose, d, (-0.45, -0.25, -0.2))
        _abduct(pose, "thumb", 0.45)
    elif name == "thumb opposition":  # the thumb crosses the palm towards the little finger, which meets it
        _flex(pose, "thumb", (0.6, 0.1, 0.1))
        _twist(pose, "thumb", 0.3)
        for d, scale in zip(FINGERS, (0.1, 0.2, 0.35, 0.5), strict=True):
            _flex(pose, d, (0.6 * scale, 0.5 * scale, 0.3 * scale))
        _abduct(pose, "little", 0.15)
    elif name == "precision pinch":
        _flex(pose, "index", (0.7, 0.8, 0.4))
        _flex(pose, "thumb", (0.7, 0.3, 0.5))
    elif name == "point":
        _flex(pose, "index", (-0.4, -0.5, -0.3))
        for d in ("middle", "ring", "little"):
            _flex(pose, d, (0.8, 1.0, 0.7))
    elif name == "hook":
        for d in FINGERS:
            _flex(pose, d, (-0.4, 1.0, 0.8))
    elif name == "tabletop":
        for d in FINGERS:
            _flex(pose, d, (1.0, -0.3, -0.2))
    elif name == "ulnar flexion":
        for d, sign in zip(FINGERS, (-1.0, -0.5, 0.7, 1.0), strict=True):
            _flex(pose, d, (sign * 0.8, sign * 0.8, sign * 0.5))
    elif name == "thumb flexion":
        _flex(pose, "thumb", (0.0, 1.0, 1.0))
    elif name == "scissor":
        _abduct(pose, "index", -1.0)
        _abduct(pose, "middle", 1.0)
    else:
        raise ValueError(f"unknown synergy {name!r}")
    return pose[1:].ravel()


def pose_basis() -> np.ndarray:
    """(45, 45) orthonormal rows: the synergies (Gram-Schmidt in their order of importance), then the rest.

    Gram-Schmidt keeps the first synergy, whole-hand grasp, exactly as designed; each later one keeps what is
    new in it (e.g. thumb opposition minus its share of grasp).
    """
    leading = np.stack([synergy(name) for name in SYNERGIES], axis=1)
    q, r = np.linalg.qr(np.hstack([leading, np.eye(45)]), mode="complete")
    q[:, : len(SYNERGIES)] *= np.sign(np.diag(r)[: len(SYNERGIES)])  # QR may flip a synergy's sign
    return np.ascontiguousarray(q.T)


def relaxed_mean() -> np.ndarray:
    """(45,) the relaxed hand: fingers gently curled, the little finger most; the thumb slightly flexed."""
    pose = _pose()
    for d, scale in zip(FINGERS, (0.8, 1.0, 1.15, 1.3), strict=True):
        _flex(pose, d, (0.22 * scale, 0.35 * scale, 0.2 * scale))
    _abduct(pose, "index", -0.05)
    _abduct(pose, "little", 0.08)
    _flex(pose, "thumb", (0.15, 0.2, 0.15))
    return pose[1:].ravel()
