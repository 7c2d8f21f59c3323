"""hand3d.metrics against values computed by hand on small cases (exactly representable numbers at the edges)."""

from __future__ import annotations

import numpy as np
import pytest

from hand3d.metrics import (
    auc,
    f_score,
    freihand_scores,
    keypoint_errors,
    mpjpe,
    pck_2d,
    pck_3d,
    pck_curve,
    procrustes_align,
    root_relative,
    stb_align,
)


def _rotation(rng: np.random.Generator, det: float = 1.0) -> np.ndarray:
    """A random 3x3 orthogonal matrix with the given determinant (+1 rotation, -1 reflection)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) * det < 0:
        q[:, 0] = -q[:, 0]
    return q


def _line_hand(n: int = 1) -> np.ndarray:
    """(n, 21, 3) hand with keypoint k at (0, k/64, 0) metres: dyadic, so all arithmetic below is exact."""
    hand = np.zeros((n, 21, 3))
    hand[:, :, 1] = np.arange(21) / 64.0
    return hand


# ----------------------------------------------------------------------------------------------- generic


def test_keypoint_errors_345_and_extra_gt_column():
    pred = np.zeros((1, 2, 2))
    gt = np.array([[[3.0, 4.0, 0.0], [0.0, -2.0, 1.0]]])  # third column (visibility) is ignored
    np.testing.assert_array_equal(keypoint_errors(pred, gt), [[5.0, 2.0]])
    assert keypoint_errors(pred, gt).dtype == np.float64


@pytest.mark.parametrize(
    ("pred_shape", "gt_shape"),
    [((1, 2, 3), (1, 2, 2)), ((1, 2, 2), (1, 3, 2)), ((2, 2, 2), (1, 2, 2)), ((2, 2), (2, 2))],
)
def test_keypoint_errors_shape_mismatch(pred_shape, gt_shape):
    with pytest.raises(ValueError, match="must"):
        keypoint_errors(np.zeros(pred_shape), np.zeros(gt_shape))


def test_mpjpe_valid_mask():
    pred = np.zeros((1, 3, 3))
    gt = np.array([[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0], [1e6, 0.0, 0.0]]])
    assert mpjpe(pred, gt, np.array([[True, True, False]])) == 3.0
    assert mpjpe(pred, gt) == pytest.approx((5.0 + 1.0 + 1e6) / 3)
    assert np.isnan(mpjpe(pred, gt, np.zeros((1, 3), dtype=bool)))
    with pytest.raises(ValueError, match="valid"):
        mpjpe(pred, gt, np.ones((1, 2), dtype=bool))


def test_pck_curve_inclusive_at_threshold():
    errors = np.array([[1.0, 2.0, 3.0], [4.0, np.nan, 0.0]])
    valid = np.array([[True, True, True], [True, False, False]])  # NaN at an invalid entry is fine
    curve = pck_curve(errors, valid, [0.5, 1.0, 2.0, 2.5, 3.0, 4.0])
    np.testing.assert_array_equal(curve, [0.0, 0.25, 0.5, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(pck_curve([[1.0, 2.0]], None, [1.0, 2.0]), [0.5, 1.0])


def test_pck_curve_nan_and_empty():
    with pytest.raises(ValueError, match="NaN"):
        pck_curve(np.array([[1.0, np.nan]]), None, [1.0])
    assert np.isnan(pck_curve(np.ones((2, 3)), np.zeros((2, 3), dtype=bool), [0.0, 1.0])).all()
    with pytest.raises(ValueError, match="valid"):
        pck_curve(np.ones((2, 3)), np.ones((3, 2), dtype=bool), [1.0])


def test_auc_linear_and_step_curves():
    t = np.arange(0, 31, dtype=float)
    assert auc(t, t / 30.0) == pytest.approx(0.5, abs=1e-15)
    assert auc(t, np.ones(31)) == 1.0
    step = (t >= 15).astype(float)  # trapezoid: [14, 15] gives 0.5, [15, 20] gives 5
    assert auc(t, step, lo=10, hi=20) == pytest.approx(5.5 / 10, abs=1e-15)
    assert auc(t, t / 30.0, lo=10.0, hi=20.0) == pytest.approx(0.5, abs=1e-15)


def test_auc_rejects_bad_ranges():
    t = np.arange(0, 31, dtype=float)
    with pytest.raises(ValueError, match="lo"):
        auc(t, t, lo=0.5)
    with pytest.raises(ValueError, match="hi"):
        auc(t, t, hi=31.0)
    with pytest.raises(ValueError, match="smaller"):
        auc(t, t, lo=20.0, hi=10.0)
    with pytest.raises(ValueError, match="increasing"):
        auc(t[::-1], t)
    with pytest.raises(ValueError, match="shape"):
        auc(t, t[:-1])


# ----------------------------------------------------------------------------------------------- 2D


def test_pck_2d_ignores_invisible_keypoints():
    gt = np.zeros((1, 21, 3))
    gt[..., 2] = 1.0
    pred = np.zeros((1, 21, 2))
    pred[0, 1] = [3.0, 4.0]  # error 5
    pred[0, 2] = [10.0, 0.0]  # error 10
    pred[0, 20] = [1e6, 0.0]  # invisible
    visible = np.ones((1, 21), dtype=bool)
    visible[0, 20] = False
    out = pck_2d(pred, gt, visible)
    assert set(out) == {"thresholds", "pck", "auc", "mean_error", "median_error", "count"}
    assert out["thresholds"] == list(range(31))
    assert out["count"] == 20
    assert out["mean_error"] == 15.0 / 20
    assert out["median_error"] == 0.0
    expected = [0.9] * 5 + [0.95] * 5 + [1.0] * 21  # inclusive: t=5 and t=10 count their own errors
    np.testing.assert_allclose(out["pck"], expected, rtol=0, atol=1e-15)
    # trapezoid: 4*0.9 + (0.9+0.95)/2 + 4*0.95 + (0.95+1)/2 + 20*1 = 29.3, normalised by 30
    assert out["auc"] == pytest.approx(29.3 / 30, abs=1e-12)


def test_pck_2d_custom_thresholds_and_shapes():
    pred = np.zeros((2, 21, 2))
    gt = np.zeros((2, 21, 2))
    gt[0, :, 0] = 2.0
    out = pck_2d(pred, gt, np.ones((2, 21), dtype=bool), thresholds=[0.0, 2.0, 4.0])
    assert out["pck"] == [0.5, 1.0, 1.0]
    assert out["auc"] == pytest.approx((0.75 * 2 + 1.0 * 2) / 4)
    with pytest.raises(ValueError, match=r"\(N, 21, 2\)"):
        pck_2d(np.zeros((2, 20, 2)), np.zeros((2, 20, 2)), np.ones((2, 20), dtype=bool))
    with pytest.raises(ValueError, match="visible"):
        pck_2d(pred, gt, np.ones((2, 20), dtype=bool))


# ----------------------------------------------------------------------------------------------- STB


def test_stb_align_bone_length_and_similarity_copy():
    rng = np.random.default_rng(0)
    gt = rng.normal(scale=0.05, size=(3, 21, 3))
    pred = 1.7 * gt + np.array([0.1, -0.2, 0.6])
    pred[1] = 0.4 * pred[1]  # a different scale per sample
    for root in ("wrist", "palm"):
        aligned, gt_rel = stb_align(pred, gt, root=root)
        np.testing.assert_allclose(aligned, gt_rel, atol=1e-12)
        bone = np.linalg.norm(aligned[:, 10] - aligned[:, 9], axis=-1)
        np.testing.assert_allclose(bone, np.linalg.norm(gt[:, 10] - gt[:, 9], axis=-1), rtol=1e-12)
    aligned, gt_rel = stb_align(pred, gt)
    np.testing.assert_allclose(gt_rel, gt - gt[:, :1])
    # no rotation alignment: a rotated copy keeps a non-zero error
    rotated = gt @ _rotation(rng).T
    assert mpjpe(*stb_align(rotated, gt)) > 1e-3


def test_stb_align_palm_root_by_hand():
    gt = _line_hand()
    gt[0, 0] = [0.0, 0.0, 0.0]
    gt[0, 13] = [2.0, 0.0, 0.0]  # palm = ring + (wrist - ring) / 2 = (1, 0, 0)
    _, gt_rel = stb_align(gt, gt, root="palm")
    np.testing.assert_array_equal(gt_rel[0, 0], [0.0, 0.0, 0.0])  # keypoint 0 is now the palm: the root itself
    np.testing.assert_array_equal(gt_rel[0, 13], [1.0, 0.0, 0.0])
    _, gt_rel4 = stb_align(gt, gt, root="palm", palm_factor=4.0)  # palm = (1.5, 0, 0)
    np.testing.assert_array_equal(gt_rel4[0, 13], [0.5, 0.0, 0.0])


def test_pck_3d_palm_root_scores_the_palm_not_the_estimated_wrist():
    """STB's keypoint 0 is its palm (error 0 after centring), as in the paper's curves (1/21 at 0 mm)."""
    gt = _line_hand()
    pred = gt.copy()
    pred[0, 13, 0] += 1 / 64  # the ring MCP off by 15.625 mm moves the predicted palm by half that
    out = pck_3d(pred, gt, root="palm")
    assert out["pck"][:9] == [1 / 21] * 8 + [1.0]  # every keypoint but the palm is off by 7.8125 mm
    assert out["mpjpe_mm"] == pytest.approx(7.8125 * 20 / 21)
    rel = root_relative(gt, "palm")
    np.testing.assert_array_equal(rel[0, 0], 0.0)
    np.testing.assert_array_equal(rel[0, 5], gt[0, 5] - gt[0, 13] - (gt[0, 0] - gt[0, 13]) / 2)


def test_stb_align_errors():
    gt = _line_hand()
    with pytest.raises(ValueError, match="root"):
        stb_align(gt, gt, root="centre")
    with pytest.raises(ValueError, match=r"\(N, 21, 3\)"):
        stb_align(gt[..., :2], gt[..., :2])
    with pytest.raises(ValueError, match="same shape"):
        stb_align(np.concatenate([gt, gt]), gt)
    collapsed = gt.copy()
    collapsed[0, 10] = collapsed[0, 9]
    with pytest.raises(ValueError, match="bone"):
        stb_align(collapsed, gt)


def test_pck_3d_all_errors_25mm():
    gt = _line_hand(2)
    offset = np.zeros((21, 3))
    offset[:, 0] = 0.025  # 25 mm along x, except on the root and the MCP-PIP bone (error 0, marked invalid)
    offset[[0, 9, 10]] = 0.0
    pred = 2.0 * (gt + offset) + np.array([0.0, 0.5, -1.0])  # power-of-2 scale, dyadic shift: exact
    valid = np.ones((2, 21), dtype=bool)
    valid[:, [0, 9, 10]] = False
    out = pck_3d(pred, gt, valid)
    assert set(out) == {"thresholds_mm", "pck", "auc", "auc_range_mm", "mpjpe_mm", "count"}
    assert out["count"] == 36
    assert out["mpjpe_mm"] == 25.0
    assert out["thresholds_mm"] == list(range(51))
    assert out["pck"] == [0.0] * 25 + [1.0] * 26
    assert out["auc_range_mm"] == [20.0, 50.0]
    # trapezoid over 20..50: segment [24, 25] gives 0.5, [25, 50] gives 25; normalised by 30
    assert out["auc"] == pytest.approx(25.5 / 30, abs=1e-15)
    full = pck_3d(pred, gt, valid, auc_range_mm=(0, 50))
    assert full["auc"] == pytest.approx(25.5 / 50, abs=1e-15)
    everything = pck_3d(pred, gt)  # the 6 zero-error keypoints now count
    assert everything["count"] == 42
    assert everything["pck"][0] == 6 / 42
    assert everything["mpjpe_mm"] == pytest.approx(25.0 * 36 / 42)


# ----------------------------------------------------------------------------------------------- FreiHAND


def test_procrustes_recovers_similarity_copy():
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(4, 30, 3))
    pred = np.stack([1.7 * g @ _rotation(rng) + rng.normal(size=3) for g in gt])
    aligned = procrustes_align(pred, gt)
    assert aligned.shape == gt.shape
    np.testing.assert_allclose(aligned, gt, atol=1e-9)
    np.testing.assert_allclose(procrustes_align(pred[0], gt[0]), gt[0], atol=1e-9)
    # reflections are not excluded (as the official code): a mirrored copy also aligns exactly
    mirrored = gt[0] @ _rotation(rng, det=-1.0) * 0.3
    np.testing.assert_allclose(procrustes_align(mirrored, gt[0]), gt[0], atol=1e-9)


def _cross(scale: float, stretch: float = 1.0) -> np.ndarray:
    """Four points (+-stretch, 0, 0), (0, +-1, 0), times scale."""
    return scale * np.array([[stretch, 0.0, 0.0], [-stretch, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])


def test_procrustes_scale_by_hand():
    # pred stretches x by 2; by symmetry R = I and s minimises 2(2s-1)^2 + 2(s-1)^2, so s = 0.6
    aligned = procrustes_align(_cross(1.0, stretch=2.0), _cross(1.0))
    np.testing.assert_allclose(aligned, _cross(1.0) * [[1.2, 0.6, 0.0]], atol=1e-12)


def test_procrustes_is_least_squares_not_identity():
    rng = np.random.default_rng(2)
    gt = rng.normal(size=(20, 3))
    pred = gt + rng.normal(scale=0.3, size=(20, 3))
    aligned = procrustes_align(pred, gt)
    # the optimal similarity cannot be worse than the identity, and the noise keeps the error non-zero
    assert 0 < np.linalg.norm(aligned - gt) < np.linalg.norm(pred - gt)
    np.testing.assert_allclose(aligned.mean(axis=0), gt.mean(axis=0), atol=1e-12)
    with pytest.raises(ValueError, match="must both be"):
        procrustes_align(pred[:, :2], gt[:, :2])
    with pytest.raises(ValueError, match="must both be"):
        procrustes_align(pred, gt[:-1])


def test_f_score_threshold_edge_is_strict():
    pred = np.array([[0.0, 0.0, 0.0]])
    gt = np.array([[0.005, 0.0, 0.0]])
    assert f_score(pred, gt, 0.005) == 0.0
    assert f_score(pred, gt, 0.0050001) == 1.0


def test_f_score_edge_strict_in_both_directions():
    # pred b and gt c are exactly 0.005 apart and each other's nearest; a matches exactly: P = R = 1/2
    pred = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    gt = np.array([[0.0, 0.0, 0.0], [0.005, 0.0, 1.0]])
    assert f_score(pred, gt, 0.005) == 0.5
    assert f_score(pred, gt, 0.0050001) == 1.0


def test_f_score_partial_by_hand():
    pred = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    gt = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 20.0], [0.0, 0.0, 30.0]])
    # precision 1/2 (pred 1 is 10 away), recall 1/3: F = 2 * (1/6) / (5/6) = 0.4
    assert f_score(pred, gt, 1.0) == pytest.approx(0.4, abs=1e-15)
    two = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    assert f_score(pred, two, 1.0) == pytest.approx(0.5, abs=1e-15)
    assert f_score(pred, gt + 100.0, 1.0) == 0.0
    with pytest.raises(ValueError, match="3 columns"):
        f_score(pred[:, :2], gt[:, :2], 1.0)


def test_freihand_scores_on_similarity_copy():
    rng = np.random.default_rng(3)
    gt_xyz = rng.normal(scale=0.04, size=(3, 21, 3))
    gt_verts = rng.normal(scale=0.04, size=(3, 50, 3))
    rotations = [_rotation(rng) for _ in range(3)]
    pred_xyz = np.stack([1.7 * g @ r + 0.1 for g, r in zip(gt_xyz, rotations, strict=True)])
    pred_verts = np.stack([0.8 * g @ r - 0.2 for g, r in zip(gt_verts, rotations, strict=True)])
    out = freihand_scores(pred_xyz, gt_xyz, pred_verts, gt_verts)
    assert out["count"] == 3
    assert out["pa_mpjpe_mm"] < 1e-9
    assert out["pa_mpvpe_mm"] < 1e-9
    assert out["mpjpe_mm"] > 10.0 and out["mpvpe_mm"] > 10.0
    assert out["f_at_5mm"] == 1.0 and out["f_at_15mm"] == 1.0
    pck = out["pck_joint"]
    assert len(pck["thresholds_mm"]) == 100
    assert pck["thresholds_mm"][0] == 0.0 and pck["thresholds_mm"][-1] == pytest.approx(50.0)
    assert pck["pck"][1:] == [1.0] * 99
    # the curve is 1 from the second threshold on; at 0 it depends on round-off (errors ~1e-17 m)
    assert 1.0 - 0.5 / 99 - 1e-12 <= out["auc_joint_0_50mm"] <= 1.0
    assert 1.0 - 0.5 / 99 - 1e-12 <= out["auc_mesh_0_50mm"] <= 1.0


def test_freihand_scores_errors_by_hand_and_without_mesh():
    gt = np.zeros((2, 21, 3))
    gt[:, :, 0] = np.arange(21) / 64.0
    gt[:, :, 1] = (np.arange(21) % 3) / 64.0
    pred = gt.copy()
    pred[0, 5, 2] = 0.02  # 20 mm, unaligned
    out = freihand_scores(pred, gt)
    assert set(out) == {"pa_mpjpe_mm", "mpjpe_mm", "auc_joint_0_50mm", "pck_joint", "count"}
    assert out["mpjpe_mm"] == pytest.approx(20.0 / 42)
    # Procrustes minimises squared error, so the mean distance may grow; check it against the aligned points in mm
    aligned_errors = np.linalg.norm(procrustes_align(pred, gt) - gt, axis=-1)
    assert aligned_errors[0].max() > 1e-4 and aligned_errors[1].max() < 1e-12
    assert out["pa_mpjpe_mm"] == pytest.approx(aligned_errors.mean() * 1000.0, rel=1e-12)
    # mesh: a stretched cross (see test_procrustes_scale_by_hand) in units of 0.02 m: aligned errors 4 mm on
    # x and 8 mm on y; unaligned 20 mm on x, 0 on y; at 5 mm only the x pairs match (P = R = 1/2)
    verts = np.stack([_cross(0.02)] * 2)
    mesh = freihand_scores(pred, gt, np.stack([_cross(0.02, stretch=2.0)] * 2), verts)
    assert mesh["pa_mpvpe_mm"] == pytest.approx(6.0, rel=1e-9)
    assert mesh["mpvpe_mm"] == pytest.approx(10.0, rel=1e-12)
    assert mesh["f_at_5mm"] == pytest.approx(0.5, abs=1e-15)
    assert mesh["f_at_15mm"] == 1.0
    # PCK is 0 below 4 mm, 1/2 up to 8 mm, then 1: about (0.5 * 4 + 42) / 50, up to the 0.505-mm grid
    assert mesh["auc_mesh_0_50mm"] == pytest.approx(0.88, abs=0.006)
    with pytest.raises(ValueError, match="together"):
        freihand_scores(pred, gt, pred_verts=np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match="vertex samples"):
        freihand_scores(pred, gt, np.zeros((1, 5, 3)), np.zeros((1, 5, 3)))
    with pytest.raises(ValueError, match="pred_xyz"):
        freihand_scores(pred[:, :20], gt[:, :20])
