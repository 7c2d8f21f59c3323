"""The procedural right hand's skeleton: joint positions, bone radii and rotation axes, in MANO's joint order.

Frame of the template (metres): origin at the wrist joint, +x from the wrist towards the middle fingertip,
+y towards the thumb (radial side), +z out of the back of the hand (dorsal). The palm faces -z. With fingers
along +x and the palm facing -z, a thumb on the +y side makes this a right hand.

Proportions follow adult averages (wrist to middle fingertip about 0.185 m, palm width about 0.085 m); phalanx
length ratios after Buryanov & Kotiuk, *Proportions of hand segments*, Int. J. Morphol. 28(3), 2010.

MANO joint order (Romero et al., SIGGRAPH Asia 2017): 0 wrist; 1-3 index MCP, PIP, DIP; 4-6 middle; 7-9 little;
10-12 ring; 13-15 thumb CMC, MCP, IP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_JOINTS = 16
PARENTS = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14])
DIGITS = ("index", "middle", "little", "ring", "thumb")  # MANO's order of the joint chains
CHAIN = {name: [1 + 3 * i, 2 + 3 * i, 3 + 3 * i] for i, name in enumerate(DIGITS)}
TIP_ORDER = ("thumb", "index", "middle", "ring", "little")  # order of the tip vertices appended to 16 joints

PALM_NORMAL = np.array([0.0, 0.0, -1.0])  # out of the palm


@dataclass(frozen=True)
class Digit:
    """One finger: its base joint, direction in the template, phalanx lengths and surface radii."""

    base: tuple[float, float, float]  # MCP (fingers) or CMC (thumb) position
    direction: tuple[float, float, float]
    lengths: tuple[float, float, float]  # base->2nd joint, 2nd->3rd, 3rd->tip centre
    radii: tuple[float, float, float, float]  # at the base, 2nd joint, 3rd joint and tip


def _planar(angle_deg: float, dip: float = 0.0) -> tuple[float, float, float]:
    a = np.deg2rad(angle_deg)
    return (float(np.cos(a)), float(np.sin(a)), dip)


DIGIT_SPECS = {
    "index": Digit((0.086, 0.031, 0.000), _planar(7.0), (0.041, 0.024, 0.019), (0.0098, 0.0088, 0.0080, 0.0070)),
    "middle": Digit((0.089, 0.010, 0.001), _planar(1.0), (0.045, 0.028, 0.020), (0.0100, 0.0090, 0.0082, 0.0072)),
    "ring": Digit((0.084, -0.011, 0.000), _planar(-6.0), (0.042, 0.027, 0.020), (0.0094, 0.0085, 0.0078, 0.0068)),
    "little": Digit((0.075, -0.030, -0.002), _planar(-13.0), (0.033, 0.020, 0.018), (0.0084, 0.0076, 0.0069, 0.0061)),
    "thumb": Digit(
        (0.018, 0.022, -0.010), (0.78, 0.56, -0.28), (0.045, 0.032, 0.024), (0.0135, 0.0110, 0.0098, 0.0085)
    ),
}


def unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=float) / np.linalg.norm(v)


def digit_points(name: str) -> np.ndarray:
    """(4, 3): the digit's three joints and the centre of its tip sphere."""
    spec = DIGIT_SPECS[name]
    d = unit(spec.direction)
    steps = np.concatenate([[0.0], np.cumsum(spec.lengths)])
    return np.asarray(spec.base) + steps[:, None] * d


def joints() -> np.ndarray:
    """(16, 3) rest joint positions in MANO's order."""
    out = np.zeros((NUM_JOINTS, 3))
    for name, ids in CHAIN.items():
        out[ids] = digit_points(name)[:3]
    return out


def tip_centres() -> np.ndarray:
    """(5, 3) centres of the fingertip spheres, thumb to little."""
    return np.stack([digit_points(name)[3] for name in TIP_ORDER])


def flexion_axis(name: str) -> np.ndarray:
    """Axis about which a positive angle curls the digit towards the palm (right-hand rule)."""
    d = unit(DIGIT_SPECS[name].direction)
    palmward = THUMB_PALMWARD if name == "thumb" else PALM_NORMAL
    palmward = unit(palmward - d * (palmward @ d))
    return unit(np.cross(d, palmward))


# The thumb curls across the palm towards the little finger: mostly ulnar, a little distal and palmar.
THUMB_PALMWARD = np.array([0.5, -0.8, -0.1])
# Abduction: a positive angle about +z swings a digit towards the thumb side (+y).
ABDUCTION_AXIS = np.array([0.0, 0.0, 1.0])
