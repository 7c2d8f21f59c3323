"""MANO's array layout, checked: the keys smplx's MANO layer needs, with mutually consistent shapes.

Used on a converted MANO pickle and on every hand model npz this project writes or reads.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

MANO_KEYS: tuple[str, ...] = (
    "v_template",
    "f",
    "J_regressor",
    "kintree_table",
    "weights",
    "posedirs",
    "shapedirs",
    "hands_components",
    "hands_mean",
)


def _expect(path: str, key: str, arr: np.ndarray | str, shape: tuple[int | None, ...]) -> None:
    """Raise if ``arr`` is not a numeric array of ``shape`` (``None`` = any size on that axis)."""
    ok = isinstance(arr, np.ndarray) and arr.ndim == len(shape) and arr.dtype.kind in "biuf"
    ok = ok and all(want is None or have == want for have, want in zip(arr.shape, shape, strict=False))
    if not ok:
        got = arr.shape if isinstance(arr, np.ndarray) else type(arr).__name__
        want = tuple("*" if n is None else n for n in shape)
        kind = f" dtype {arr.dtype}" if isinstance(arr, np.ndarray) else ""
        raise ValueError(f"{path}: key {key!r} has shape {got}{kind}, expected a numeric array of shape {want}")
    finite = np.isfinite(arr) if arr.dtype.kind == "f" else None
    if finite is not None and not finite.all():
        raise ValueError(f"{path}: key {key!r} holds {finite.size - finite.sum()} non-finite value(s) (NaN or inf)")


def check_mano_layout(path: str, model: Mapping[str, np.ndarray | str]) -> None:
    """Required keys present, shapes mutually consistent (V vertices, J joints, 9*(J-1) pose blendshapes), float
    arrays finite, each joint's parent an earlier joint."""
    missing = [k for k in MANO_KEYS if k not in model]
    if missing:
        raise ValueError(f"{path}: missing required key(s) {missing}; found {sorted(model)}")
    _expect(path, "v_template", model["v_template"], (None, 3))
    n_verts = model["v_template"].shape[0]
    _expect(path, "weights", model["weights"], (n_verts, None))
    n_joints = model["weights"].shape[1]
    n_pose = 3 * (n_joints - 1)
    _expect(path, "shapedirs", model["shapedirs"], (n_verts, 3, None))
    _expect(path, "posedirs", model["posedirs"], (n_verts, 3, 3 * n_pose))
    _expect(path, "J_regressor", model["J_regressor"], (n_joints, n_verts))
    _expect(path, "kintree_table", model["kintree_table"], (2, n_joints))
    _check_parents(path, model["kintree_table"][0])
    _expect(path, "hands_components", model["hands_components"], (n_pose, n_pose))
    _expect(path, "hands_mean", model["hands_mean"], (n_pose,))
    _expect(path, "f", model["f"], (None, 3))
    _check_faces(path, model["f"], n_verts)
    if "J" in model:
        _expect(path, "J", model["J"], (n_joints, 3))
    if "hands_coeffs" in model:
        _expect(path, "hands_coeffs", model["hands_coeffs"], (None, n_pose))


def _check_parents(path: str, parents: np.ndarray) -> None:
    """Each joint after the root hangs off an earlier one (the order smplx poses them in); the root's is ignored."""
    for joint, parent in enumerate(parents[1:], start=1):
        if parent != int(parent) or not 0 <= parent < joint:
            raise ValueError(
                f"{path}: key 'kintree_table' gives joint {joint} the parent {parent}; it must be an earlier joint, "
                f"0 to {joint - 1}"
            )


def _check_faces(path: str, faces: np.ndarray, n_verts: int) -> None:
    if faces.dtype.kind not in "iu":
        raise ValueError(f"{path}: key 'f' must hold integer vertex indices, got dtype {faces.dtype}")
    if faces.size and (faces.min() < 0 or faces.max() >= n_verts):
        raise ValueError(f"{path}: key 'f' indexes vertices outside [0, {n_verts}) (v_template has {n_verts})")
