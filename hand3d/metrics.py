"""Evaluation metrics for 2D/3D hand keypoints and hand meshes (numpy + scipy only, no torch).

Keypoints are the 21 of the OpenPose hand order (see :mod:`hand3d.keypoints`): 0 wrist; 1-4 thumb; 5-8 index
MCP, PIP, DIP, tip; 9-12 middle; 13-16 ring; 17-20 little.

Three protocols are implemented, each stated in full in its function's docstring:

* 2D PCK on MPII+NZSL (Boukhayma et al., CVPR 2019): absolute pixel thresholds 0-30 px in 1-px steps, AUC
  normalised by 30 (:func:`pck_2d`).
* 3D PCK on STB (Zimmermann & Brox, ICCV 2017, lmb-freiburg/hand3d): root-relative keypoints, prediction
  rescaled to the ground truth's middle-finger MCP-PIP bone, no rotation, thresholds in mm, AUC over 20-50 mm
  (:func:`stb_align`, :func:`pck_3d`).
* FreiHAND (Zimmermann et al., ICCV 2019, lmb-freiburg/freihand ``eval.py``): per-sample similarity (Procrustes)
  alignment, PA-MPJPE / PA-MPVPE, AUC over 0-50 mm and F-scores at 5 mm and 15 mm (:func:`procrustes_align`,
  :func:`f_score`, :func:`freihand_scores`).

PCK comparisons are inclusive (``error <= threshold``) as in both official evaluations; F-score matches are
strict (``distance < threshold``) as in the official FreiHAND code. Every AUC is a trapezoid integral
(``np.trapezoid``) divided by the length of the threshold range, so a perfect curve scores 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import orthogonal_procrustes
from scipy.spatial import cKDTree

__all__ = [
    "auc",
    "f_score",
    "freihand_scores",
    "keypoint_errors",
    "mpjpe",
    "pck_2d",
    "pck_3d",
    "pck_curve",
    "procrustes_align",
    "root_relative",
    "stb_align",
]

NUM_KEYPOINTS = 21
WRIST, MIDDLE_MCP, MIDDLE_PIP, RING_MCP = 0, 9, 10, 13
STB_PALM_FACTOR = 2.0  # the STB reader's default wrist-from-palm factor (config datasets.stb.palm_to_wrist)
FREIHAND_THRESHOLDS_M = np.linspace(0.0, 0.05, 100)
FREIHAND_F_THRESHOLDS_M = (0.005, 0.015)


# ----------------------------------------------------------------------------------------------- validation


def _float_array(x: Any) -> np.ndarray:
    """``x`` as a float64 array (a new array, inputs are never modified)."""
    return np.array(x, dtype=np.float64)


def _check_ndim(arr: np.ndarray, ndim: int, name: str, layout: str) -> None:
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {layout}, got shape {arr.shape}")


def _check_keypoints(arr: np.ndarray, name: str, dims: tuple[int, ...]) -> None:
    """``arr`` must be ``(N, 21, D)`` with D in ``dims``."""
    layout = f"(N, {NUM_KEYPOINTS}, {' or '.join(map(str, dims))})"
    if arr.ndim != 3 or arr.shape[1] != NUM_KEYPOINTS or arr.shape[2] not in dims:
        raise ValueError(f"{name} must be {layout}, got shape {arr.shape}")


def _mask(valid: Any, shape: tuple[int, ...], name: str = "valid") -> np.ndarray:
    """A boolean mask of ``shape``: all True for None; bool arrays or 0/1 arrays are accepted."""
    if valid is None:
        return np.ones(shape, dtype=bool)
    arr = np.asarray(valid)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if arr.dtype != bool and not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name} must be boolean (or 0/1), got values other than 0 and 1")
    return arr.astype(bool)


def _thresholds(thresholds: Any, name: str = "thresholds") -> np.ndarray:
    arr = _float_array(thresholds)
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a non-empty 1D array of finite values, got shape {arr.shape}")
    return arr


# ----------------------------------------------------------------------------------------------- generic


def keypoint_errors(pred: Any, gt: Any) -> np.ndarray:
    """Per-point Euclidean distances ``(N, K)`` (float64) between ``pred (N, K, D)`` and ``gt (N, K, D')``.

    Only the first ``D = pred.shape[-1]`` columns of ``gt`` are used (``D' >= D``), so 2D ground truth with a
    third visibility column can be compared with ``(N, K, 2)`` predictions. Distances are in the inputs' units;
    nothing is aligned.
    """
    pred, gt = _float_array(pred), _float_array(gt)
    _check_ndim(pred, 3, "pred", "(N, K, D)")
    _check_ndim(gt, 3, "gt", "(N, K, D')")
    if gt.shape[:2] != pred.shape[:2] or gt.shape[2] < pred.shape[2] or pred.shape[2] == 0:
        raise ValueError(f"gt {gt.shape} must match pred {pred.shape} in N and K and have at least D columns")
    return np.linalg.norm(pred - gt[..., : pred.shape[2]], axis=-1)


def mpjpe(pred: Any, gt: Any, valid: Any = None) -> float:
    """Mean Euclidean distance over the valid points, in the inputs' units; no alignment.

    ``pred (N, P, D)``, ``gt (N, P, D')`` as in :func:`keypoint_errors`; ``valid (N, P)`` bool or None (all
    valid). Every valid point weighs the same. NaN when no point is valid.
    """
    errors = keypoint_errors(pred, gt)
    mask = _mask(valid, errors.shape)
    return float(errors[mask].mean()) if mask.any() else float("nan")


def pck_curve(errors: Any, valid: Any, thresholds: Any) -> np.ndarray:
    """PCK curve ``(T,)`` float64: for each threshold t, the fraction of valid entries with ``error <= t``.

    The comparison is inclusive (an error exactly equal to t counts as correct). ``errors (N, K)``, ``valid
    (N, K)`` bool or None (all valid), ``thresholds (T,)`` in the errors' units. All valid entries are pooled,
    so each weighs the same. A NaN error at a valid entry raises ValueError; NaN at invalid entries is ignored.
    With no valid entry the curve is all NaN.
    """
    errors = _float_array(errors)
    _check_ndim(errors, 2, "errors", "(N, K)")
    values = errors[_mask(valid, errors.shape)]
    thresholds = _thresholds(thresholds)
    if np.isnan(values).any():
        raise ValueError(f"errors contain {int(np.isnan(values).sum())} NaN value(s) at valid entries")
    if values.size == 0:
        return np.full(thresholds.shape, np.nan)
    counts = np.searchsorted(np.sort(values), thresholds, side="right")
    return counts / values.size


def _threshold_index(thresholds: np.ndarray, value: float, name: str) -> int:
    """Index of ``value`` in ``thresholds`` (matched to a relative tolerance of 1e-9)."""
    tol = 1e-9 * max(1.0, float(np.abs(thresholds).max()))
    hits = np.flatnonzero(np.abs(thresholds - value) <= tol)
    if hits.size == 0:
        raise ValueError(f"{name}={value} is not one of the thresholds [{thresholds[0]} ... {thresholds[-1]}]")
    return int(hits[0])


def auc(thresholds: Any, curve: Any, lo: float | None = None, hi: float | None = None) -> float:
    """Normalised area under a PCK curve: trapezoid integral over ``[lo, hi]`` divided by ``hi - lo``.

    ``thresholds (T,)`` strictly increasing, ``curve (T,)``. ``lo`` and ``hi`` default to the first and last
    threshold and must be thresholds themselves (ValueError otherwise, and when ``lo >= hi``); only the points
    from ``lo`` to ``hi`` enter the ``np.trapezoid`` integral. A curve that is 1 everywhere gives 1.0.
    """
    thresholds, curve = _thresholds(thresholds), _float_array(curve)
    if curve.shape != thresholds.shape:
        raise ValueError(f"curve shape {curve.shape} must match thresholds shape {thresholds.shape}")
    if thresholds.size < 2 or np.any(np.diff(thresholds) <= 0):
        raise ValueError("thresholds must be strictly increasing with at least 2 values")
    i = _threshold_index(thresholds, thresholds[0] if lo is None else lo, "lo")
    j = _threshold_index(thresholds, thresholds[-1] if hi is None else hi, "hi")
    if j <= i:
        raise ValueError(f"lo ({thresholds[i]}) must be smaller than hi ({thresholds[j]})")
    area = np.trapezoid(curve[i : j + 1], thresholds[i : j + 1])
    return float(area / (thresholds[j] - thresholds[i]))


# ----------------------------------------------------------------------------------------------- 2D


def pck_2d(pred: Any, gt: Any, visible: Any, thresholds: Any = None) -> dict:
    """2D PCK of the MPII+NZSL protocol (Boukhayma et al., CVPR 2019), in absolute pixels.

    ``pred (N, 21, 2)``, ``gt (N, 21, 2 or 3)`` (a third visibility column is ignored), ``visible (N, 21)``
    bool. Errors are Euclidean distances in whatever pixel frame the caller passes (e.g. the original image);
    nothing is aligned. Only visible keypoints count. ``thresholds`` default to ``np.arange(0, 31)`` px (0-30
    in 1-px steps); PCK uses ``error <= t`` (inclusive); the AUC is the trapezoid integral over all thresholds
    divided by their range (30 px by default).

    Returns ``{"thresholds", "pck", "auc", "mean_error", "median_error", "count"}`` with lists of floats,
    errors in px and ``count`` the number of visible keypoints (NaN statistics when it is 0).
    """
    pred, gt = _float_array(pred), _float_array(gt)
    _check_keypoints(pred, "pred", (2,))
    _check_keypoints(gt, "gt", (2, 3))
    errors = keypoint_errors(pred, gt)
    mask = _mask(visible, errors.shape, "visible")
    thresholds = _thresholds(np.arange(0, 31) if thresholds is None else thresholds)
    curve = pck_curve(errors, mask, thresholds)
    values = errors[mask]
    return {
        "thresholds": thresholds.tolist(),
        "pck": curve.tolist(),
        "auc": auc(thresholds, curve),
        "mean_error": float(values.mean()) if values.size else float("nan"),
        "median_error": float(np.median(values)) if values.size else float("nan"),
        "count": int(values.size),
    }


# ----------------------------------------------------------------------------------------------- STB


def _root(points: np.ndarray, root: str, palm_factor: float) -> np.ndarray:
    """Root point ``(N, 1, 3)``: the wrist, or the palm centre ``ring_mcp + (wrist - ring_mcp) / palm_factor``."""
    wrist = points[:, WRIST]
    if root == "wrist":
        return wrist[:, None]
    if root == "palm":
        ring_mcp = points[:, RING_MCP]
        return (ring_mcp + (wrist - ring_mcp) / palm_factor)[:, None]
    raise ValueError(f"root must be 'wrist' or 'palm', got {root!r}")


def root_relative(points: Any, root: str = "wrist", palm_factor: float = STB_PALM_FACTOR) -> np.ndarray:
    """Keypoints ``(N, 21, 3)`` minus their root, with the root itself (zero) as keypoint 0.

    ``"wrist"``: keypoint 0 is the root. ``"palm"`` (STB): the root is the palm centre, as in :func:`stb_align`,
    and it takes keypoint 0's place: STB annotates the palm centre, not the wrist (its reader estimates that), and
    Zimmermann & Brox's evaluation centres on and scores the palm (the paper's STB curves start at 1/21 at 0 mm).
    Scoring the estimated wrist instead would count the ring MCP's error twice.
    """
    points = _float_array(points)
    _check_keypoints(points, "points", (3,))
    relative = points - _root(points, root, palm_factor)
    relative[:, WRIST] = 0.0
    return relative


def _middle_bone(points: np.ndarray) -> np.ndarray:
    """Length ``(N,)`` of the middle finger's MCP-PIP bone (keypoints 9 and 10)."""
    return np.linalg.norm(points[:, MIDDLE_PIP] - points[:, MIDDLE_MCP], axis=-1)


def stb_align(
    pred: Any, gt: Any, root: str = "wrist", palm_factor: float = STB_PALM_FACTOR
) -> tuple[np.ndarray, np.ndarray]:
    """STB protocol alignment (Zimmermann & Brox, ICCV 2017, lmb-freiburg/hand3d evaluation).

    Both ``pred`` and ``gt`` ``(N, 21, 3)`` are made root-relative, then each predicted hand is rescaled so that
    its middle-finger MCP-PIP bone (keypoints 9 and 10) has the ground truth's length, per sample. There is no
    rotation alignment. ``root="wrist"`` subtracts keypoint 0; ``root="palm"`` subtracts the palm centre
    recovered from the wrist and the ring MCP (13) as ``ring_mcp + (wrist - ring_mcp) / palm_factor`` (the
    inverse of the STB reader's ``wrist = ring_mcp + palm_factor * (palm - ring_mcp)``), for both, and puts the
    palm in keypoint 0's place (see :func:`root_relative`).

    Returns ``(pred_aligned, gt_rel)`` float64 ``(N, 21, 3)`` in the inputs' units. A predicted bone of length
    0 (or NaN) raises ValueError.
    """
    pred, gt = _float_array(pred), _float_array(gt)
    _check_keypoints(pred, "pred", (3,))
    _check_keypoints(gt, "gt", (3,))
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must have the same shape")
    pred_rel, gt_rel = root_relative(pred, root, palm_factor), root_relative(gt, root, palm_factor)
    pred_bone = _middle_bone(pred_rel)
    bad = ~(pred_bone > 0)
    if bad.any():
        raise ValueError(f"predicted middle MCP-PIP bone has zero or NaN length in samples {np.flatnonzero(bad)}")
    scale = _middle_bone(gt_rel) / pred_bone
    return pred_rel * scale[:, None, None], gt_rel


def pck_3d(
    pred: Any,
    gt: Any,
    valid: Any = None,
    thresholds_mm: Any = None,
    auc_range_mm: tuple[float, float] = (20.0, 50.0),
    root: str = "wrist",
    palm_factor: float = STB_PALM_FACTOR,
) -> dict:
    """3D PCK of the STB protocol: :func:`stb_align`, then errors in millimetres.

    ``pred``, ``gt`` ``(N, 21, 3)`` in METRES; ``valid (N, 21)`` bool or None (all valid). After the alignment
    (root-relative, bone-length rescale, no rotation) the per-keypoint Euclidean errors are converted to mm.
    ``thresholds_mm`` default to ``np.arange(0, 51)`` (0-50 mm in 1-mm steps, like the paper's released curves);
    PCK uses ``error <= t`` (inclusive) over the valid keypoints; the AUC is the trapezoid integral over the
    thresholds from ``auc_range_mm[0]`` to ``auc_range_mm[1]`` (both must be thresholds) divided by the range's
    length (30 mm by default).

    Returns ``{"thresholds_mm", "pck", "auc", "auc_range_mm", "mpjpe_mm", "count"}``: ``mpjpe_mm`` is the mean
    aligned error over the valid keypoints, ``count`` their number.
    """
    pred_aligned, gt_rel = stb_align(pred, gt, root=root, palm_factor=palm_factor)
    errors_mm = keypoint_errors(pred_aligned, gt_rel) * 1000.0
    mask = _mask(valid, errors_mm.shape)
    thresholds = _thresholds(np.arange(0, 51) if thresholds_mm is None else thresholds_mm, "thresholds_mm")
    curve = pck_curve(errors_mm, mask, thresholds)
    lo, hi = (float(v) for v in auc_range_mm)
    return {
        "thresholds_mm": thresholds.tolist(),
        "pck": curve.tolist(),
        "auc": auc(thresholds, curve, lo, hi),
        "auc_range_mm": [lo, hi],
        "mpjpe_mm": mpjpe(pred_aligned * 1000.0, gt_rel * 1000.0, mask),
        "count": int(mask.sum()),
    }


# ----------------------------------------------------------------------------------------------- FreiHAND


def _procrustes_one(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Similarity-align one ``(P, D)`` prediction to its ground truth (see :func:`procrustes_align`)."""
    pred_mean, gt_mean = pred.mean(axis=0), gt.mean(axis=0)
    pred_c, gt_c = pred - pred_mean, gt - gt_mean
    pred_norm, gt_norm = np.linalg.norm(pred_c), np.linalg.norm(gt_c)
    pred_c = pred_c / (pred_norm if pred_norm > 0 else 1.0)
    gt_c = gt_c / (gt_norm if gt_norm > 0 else 1.0)
    rotation, scale = orthogonal_procrustes(pred_c, gt_c)
    return (pred_c @ rotation) * scale * gt_norm + gt_mean


def procrustes_align(pred: Any, gt: Any) -> np.ndarray:
    """Per-sample similarity alignment of ``pred`` to ``gt``, as FreiHAND's official ``align_w_scale``.

    ``pred`` and ``gt`` are ``(N, P, 3)`` (or ``(P, 3)`` for one sample, returning ``(P, 3)``). Per sample both
    are centred on their means and divided by their Frobenius norms; the rotation R minimising
    ``||pred_n R - gt_n||`` comes from ``scipy.linalg.orthogonal_procrustes``, which, like the official code,
    does NOT exclude reflections (R may have determinant -1); the scale is the sum of the singular values (its
    second return). The result ``pred_n R * scale * ||gt_c|| + mean(gt)`` lies in the ground truth's frame and
    units. (The official code adds 1e-8 to both norms; here a zero norm is replaced by 1 instead, so a
    prediction collapsed to a point maps onto the ground-truth mean.)
    """
    pred, gt = _float_array(pred), _float_array(gt)
    if pred.shape != gt.shape or pred.ndim not in (2, 3) or pred.shape[-1] != 3:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be (N, P, 3) or (P, 3)")
    if pred.ndim == 2:
        return _procrustes_one(pred, gt)
    return np.stack([_procrustes_one(p, g) for p, g in zip(pred, gt, strict=True)]) if len(pred) else pred


def f_score(pred_points: Any, gt_points: Any, threshold: float) -> float:
    """F-score of one sample's point sets ``pred_points (P1, 3)`` and ``gt_points (P2, 3)`` (FreiHAND protocol).

    Precision is the fraction of predicted points whose nearest ground-truth point is at distance ``<
    threshold`` (strict, as the official code's open3d distances with ``<``); recall is the fraction of
    ground-truth points whose nearest predicted point is ``< threshold``; ``F = 2PR / (P + R)``, 0 when ``P + R
    == 0`` or a set is empty. Nearest neighbours come from ``scipy.spatial.cKDTree``; distances and
    ``threshold`` share the inputs' units. Nothing is aligned here.
    """
    pred, gt = _float_array(pred_points), _float_array(gt_points)
    _check_ndim(pred, 2, "pred_points", "(P1, 3)")
    _check_ndim(gt, 2, "gt_points", "(P2, 3)")
    if pred.shape[1] != 3 or gt.shape[1] != 3:
        raise ValueError(f"pred_points {pred.shape} and gt_points {gt.shape} must both have 3 columns")
    if len(pred) == 0 or len(gt) == 0:
        return 0.0
    precision = float(np.mean(cKDTree(gt).query(pred)[0] < threshold))
    recall = float(np.mean(cKDTree(pred).query(gt)[0] < threshold))
    total = precision + recall
    return 2.0 * precision * recall / total if total > 0 else 0.0


def _check_samples(pred: np.ndarray, gt: np.ndarray, name: str) -> None:
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 3 or len(pred) == 0:
        raise ValueError(f"pred_{name} {pred.shape} and gt_{name} {gt.shape} must both be (N, P, 3) with N > 0")


def _freihand_auc(errors_m: np.ndarray) -> tuple[float, np.ndarray]:
    """AUC over 0-50 mm (100 thresholds, metres, ``<=``) and the PCK curve of ``errors_m (N, P)``."""
    curve = pck_curve(errors_m, None, FREIHAND_THRESHOLDS_M)
    return auc(FREIHAND_THRESHOLDS_M, curve), curve


def _mesh_scores(pred_verts: Any, gt_verts: Any, n: int) -> dict:
    pred, gt = _float_array(pred_verts), _float_array(gt_verts)
    _check_samples(pred, gt, "verts")
    if len(pred) != n:
        raise ValueError(f"got {len(pred)} vertex samples for {n} keypoint samples")
    aligned = procrustes_align(pred, gt)
    errors = keypoint_errors(aligned, gt)
    scores = {
        "pa_mpvpe_mm": float(errors.mean() * 1000.0),
        "mpvpe_mm": mpjpe(pred, gt) * 1000.0,
        "auc_mesh_0_50mm": _freihand_auc(errors)[0],
    }
    for t in FREIHAND_F_THRESHOLDS_M:
        key = f"f_at_{round(t * 1000)}mm"
        scores[key] = float(np.mean([f_score(p, g, t) for p, g in zip(aligned, gt, strict=True)]))
    return scores


def freihand_scores(pred_xyz: Any, gt_xyz: Any, pred_verts: Any = None, gt_verts: Any = None) -> dict:
    """FreiHAND scores following the official evaluation (lmb-freiburg/freihand ``eval.py``).

    Inputs in METRES: ``pred_xyz``, ``gt_xyz`` ``(N, 21, 3)``; optional ``pred_verts``, ``gt_verts`` ``(N, V,
    3)`` (both or neither). Per sample, predicted keypoints are :func:`procrustes_align`-ed to the ground-truth
    keypoints and, separately, predicted vertices to ground-truth vertices. Returned (distances in mm):

    * ``pa_mpjpe_mm`` / ``pa_mpvpe_mm``: mean over samples of the mean per-point distance after alignment
      (all points are valid, so this is also the pooled mean); ``mpjpe_mm`` / ``mpvpe_mm``: the same unaligned.
    * ``auc_joint_0_50mm`` / ``auc_mesh_0_50mm``: on the aligned points, PCK with ``error <= t`` over the
      thresholds ``np.linspace(0, 0.05, 100)`` m (the official EvalUtil averages per-keypoint PCK over
      keypoints, equal to pooling here since every keypoint has N samples), trapezoid integral divided by 0.05.
    * ``pck_joint``: ``{"thresholds_mm", "pck"}``, that aligned keypoint curve (thresholds reported in mm).
    * ``f_at_5mm`` / ``f_at_15mm``: :func:`f_score` (strict ``<``) of the aligned vertices at 0.005 m and
      0.015 m, averaged over samples.
    * ``count``: N.

    Without vertices the mesh keys are absent.
    """
    pred, gt = _float_array(pred_xyz), _float_array(gt_xyz)
    _check_samples(pred, gt, "xyz")
    _check_keypoints(pred, "pred_xyz", (3,))
    if (pred_verts is None) != (gt_verts is None):
        raise ValueError("pred_verts and gt_verts must be given together")
    errors = keypoint_errors(procrustes_align(pred, gt), gt)
    joint_auc, curve = _freihand_auc(errors)
    scores = {
        "pa_mpjpe_mm": float(errors.mean() * 1000.0),
        "mpjpe_mm": mpjpe(pred, gt) * 1000.0,
        "auc_joint_0_50mm": joint_auc,
        "pck_joint": {"thresholds_mm": (FREIHAND_THRESHOLDS_M * 1000.0).tolist(), "pck": curve.tolist()},
    }
    if pred_verts is not None:
        scores.update(_mesh_scores(pred_verts, gt_verts, len(pred)))
    scores["count"] = int(len(pred))
    return scores
