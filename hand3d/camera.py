"""Camera models: weak perspective (the network's camera), pinhole projection and Rodrigues rotations.

Conventions (DESIGN.md section 2): 3D points in metres in a camera frame with OpenCV axes (x right, y down, z
away from the camera); 2D points x = column, y = row, in pixels. The weak-perspective camera is
``[s, tx, ty]``: ``u = s * X + tx``, ``v = s * Y + ty`` in crop pixels (depth is ignored).

Only numpy is imported at module level; :func:`project_weak_perspective` and :func:`mirror_camera` also accept
torch tensors (detected by duck typing, torch imported lazily) and are then differentiable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "fit_weak_perspective",
    "lift_weak_perspective",
    "mirror_camera",
    "project_perspective",
    "project_weak_perspective",
    "rodrigues",
]


def _is_torch(x: Any) -> bool:
    """True for a torch tensor (duck typing on the type's module, no torch import)."""
    return type(x).__module__.split(".", 1)[0] == "torch"


def project_weak_perspective(points3d: Any, camera: Any) -> Any:
    """Weak-perspective projection ``u = s*X + tx``, ``v = s*Y + ty``.

    ``points3d`` is ``(..., N, 3)`` (only X and Y are used), ``camera`` is ``(..., 3) = [s, tx, ty]``; leading
    batch dimensions broadcast. Returns ``(..., N, 2)`` pixels: numpy for numpy (or array-like) inputs; a
    torch tensor, differentiable with respect to both, when either is a tensor (the other is converted to its
    dtype and device).
    """
    if _is_torch(points3d) or _is_torch(camera):
        import torch

        ref = points3d if _is_torch(points3d) else camera
        points3d = torch.as_tensor(points3d, dtype=ref.dtype, device=ref.device)
        camera = torch.as_tensor(camera, dtype=ref.dtype, device=ref.device)
    else:
        points3d = np.asarray(points3d)
        camera = np.asarray(camera)
    if points3d.shape[-1] < 2 or camera.shape[-1] != 3:
        raise ValueError(
            f"project_weak_perspective expects points (..., N, 3) and camera (..., 3), "
            f"got {tuple(points3d.shape)} and {tuple(camera.shape)}"
        )
    scale = camera[..., None, 0:1]  # (..., 1, 1)
    shift = camera[..., None, 1:3]  # (..., 1, 2)
    return scale * points3d[..., :2] + shift


def fit_weak_perspective(points3d: Any, points2d: Any, weights: Any = None) -> np.ndarray:
    """Closed-form weighted least-squares weak-perspective camera ``[s, tx, ty]`` mapping points3d to
    points2d.

    Minimises ``sum_i w_i * ((s*X_i + tx - u_i)**2 + (s*Y_i + ty - v_i)**2)``. With weighted means ``Xm, Ym,
    um, vm`` and centred values (``Xc = X - Xm`` etc.): ``s = sum w (Xc*uc + Yc*vc) / sum w (Xc**2 + Yc**2)``,
    ``tx = um - s*Xm``, ``ty = vm - s*Ym``.

    ``points3d`` ``(..., N, 3)``, ``points2d`` ``(..., N, 2)`` (extra columns such as visibility are ignored;
    pass them as ``weights`` if wanted), ``weights`` ``(..., N)`` non-negative, default all ones. Points with
    weight 0 are ignored entirely, even if NaN. Returns ``(..., 3)`` float64. Raises ValueError when a fit has
    fewer than 2 weighted points or its weighted points coincide in (X, Y).
    """
    xy = np.asarray(points3d, dtype=np.float64)[..., :2]
    uv = np.asarray(points2d, dtype=np.float64)[..., :2]
    w = np.ones(xy.shape[:-1]) if weights is None else np.asarray(weights, dtype=np.float64)
    xy, uv = np.broadcast_arrays(xy, uv)
    w = np.broadcast_to(w, xy.shape[:-1])
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("fit_weak_perspective: weights must be finite and non-negative")
    if np.any(np.count_nonzero(w > 0, axis=-1) < 2):
        raise ValueError("fit_weak_perspective needs at least 2 points with a positive weight")
    used = (w > 0)[..., None]
    xy = np.where(used, xy, 0.0)
    uv = np.where(used, uv, 0.0)
    wsum = w.sum(axis=-1)[..., None]  # (..., 1)
    xy_mean = (w[..., None] * xy).sum(axis=-2) / wsum  # (..., 2)
    uv_mean = (w[..., None] * uv).sum(axis=-2) / wsum
    xy_c = xy - xy_mean[..., None, :]
    uv_c = uv - uv_mean[..., None, :]
    num = (w[..., None] * xy_c * uv_c).sum(axis=(-2, -1))
    den = (w[..., None] * xy_c * xy_c).sum(axis=(-2, -1))
    if np.any(den <= 0):
        raise ValueError("fit_weak_perspective: the weighted 3D points coincide in (X, Y); the scale is undefined")
    scale = num / den
    shift = uv_mean - scale[..., None] * xy_mean
    return np.concatenate([scale[..., None], shift], axis=-1)


def project_perspective(points3d: Any, K: Any) -> np.ndarray:
    """Pinhole projection ``uv = (K @ X)[:2] / z`` of ``(..., N, 3)`` points with intrinsics ``(..., 3, 3)``.

    Returns ``(..., N, 2)`` pixels (numpy, float64). Points at z = 0 give inf/NaN (not checked).
    """
    points3d = np.asarray(points3d, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    uvw = np.matmul(points3d, np.swapaxes(K, -1, -2))
    return uvw[..., :2] / uvw[..., 2:3]


def rodrigues(rvec: Any) -> np.ndarray:
    """Rotation matrix of an axis-angle vector (like ``cv2.Rodrigues``): ``(..., 3)`` -> ``(..., 3, 3)``.

    ``R = cos(t) I + (1 - cos(t)) k k^T + sin(t) [k]_x`` with ``t = |rvec|``, ``k = rvec / t``, computed as
    ``I + sin(t)/t [r]_x + (1 - cos(t))/t^2 [r]_x^2`` with the limits 1 and 1/2 at t = 0 (identity for a zero
    vector). Applies to column vectors: ``X' = R @ X``.
    """
    r = np.asarray(rvec, dtype=np.float64)
    if r.shape[-1:] != (3,):
        raise ValueError(f"rodrigues expects rotation vectors of shape (..., 3), got {r.shape}")
    theta = np.linalg.norm(r, axis=-1)[..., None, None]
    zero = np.zeros(r.shape[:-1])
    rx, ry, rz = r[..., 0], r[..., 1], r[..., 2]
    cross = np.stack(
        [
            np.stack([zero, -rz, ry], axis=-1),
            np.stack([rz, zero, -rx], axis=-1),
            np.stack([-ry, rx, zero], axis=-1),
        ],
        axis=-2,
    )  # [rvec]_x
    small = theta < 1e-12
    safe = np.where(small, 1.0, theta)
    # Equals the formula above since [r]_x^2 = r r^T - t^2 I; 1 - cos(t) = 2 sin(t/2)^2 avoids cancellation.
    a = np.where(small, 1.0, np.sin(safe) / safe)
    b = np.where(small, 0.5, 2.0 * np.sin(safe / 2) ** 2 / safe**2)
    return np.eye(3) + a * cross + b * np.matmul(cross, cross)


def mirror_camera(camera: Any, width: float) -> Any:
    """The weak-perspective camera of a left-right mirrored hand and image.

    Mirroring maps 3D ``X' = -X`` (Y, Z kept) and 2D ``u' = width - 1 - u`` (v kept). Then
    ``u' = width - 1 - (s*X + tx) = s*(-X) + (width - 1 - tx) = s*X' + tx'`` and ``v' = v = s*Y' + ty``, so
    ``s' = s``, ``tx' = width - 1 - tx``, ``ty' = ty``: projecting the mirrored points with the mirrored
    camera gives the mirrored 2D points. An involution. ``camera`` is ``(..., 3)``, numpy or torch
    (differentiable).
    """
    if _is_torch(camera):
        import torch

        return torch.stack([camera[..., 0], (width - 1) - camera[..., 1], camera[..., 2]], dim=-1)
    camera = np.asarray(camera)
    return np.stack([camera[..., 0], (width - 1) - camera[..., 1], camera[..., 2]], axis=-1)


def lift_weak_perspective(points3d: np.ndarray, camera: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Place root-relative points (N, 3) in metres into a pinhole camera's frame, given their weak-perspective
    camera ``[s, tx, ty]`` in that image's pixels and its intrinsics ``K`` (3, 3).

    Weak perspective is a pinhole view at one depth: ``s = f / Z0`` with ``f`` the mean focal length, so the
    origin of the points goes to depth ``Z0 = f / s`` and to ``X0 = (tx - cx) / s``, ``Y0 = (ty - cy) / s``, which
    projects it onto ``(tx, ty)`` as the weak-perspective camera does.
    """
    K = np.asarray(K, dtype=np.float64)
    s, tx, ty = (float(c) for c in camera)
    if not s > 0:
        raise ValueError(f"lift_weak_perspective needs a positive scale, got camera {camera}")
    focal = (K[0, 0] + K[1, 1]) / 2
    origin = np.array([(tx - K[0, 2]) / s, (ty - K[1, 2]) / s, focal / s])
    return np.asarray(points3d, dtype=np.float64) + origin
