"""Tests for hand3d.camera: weak perspective (projection, fit, mirroring, gradients), pinhole, Rodrigues."""

import cv2
import numpy as np
import pytest
import torch

from hand3d import camera as cam
from hand3d import keypoints as kp

# STB's SK depth -> colour rotation (datasets guide, section 2) and its published matrix.
STB_RVEC = np.array([0.00531, -0.01196, 0.00301])
STB_R = np.array(
    [
        [0.99992395, -0.00304166, -0.01195165],
        [0.00297816, 0.99998137, -0.00532784],
        [0.01196763, 0.00529184, 0.99991438],
    ]
)


def random_points(rng: np.random.Generator, n: int = 21) -> np.ndarray:
    return rng.normal(scale=0.05, size=(n, 3)) + np.array([0.0, 0.0, 0.6])


# ----------------------------------------------------------------------------------------------------
# Weak perspective


def test_project_weak_perspective_by_hand():
    points = np.array([[1.0, 2.0, 5.0], [-1.0, 0.0, 3.0], [0.5, -0.25, 100.0]])
    out = cam.project_weak_perspective(points, np.array([2.0, 10.0, 20.0]))
    np.testing.assert_allclose(out, [[12.0, 24.0], [8.0, 20.0], [11.0, 19.5]])  # z is ignored


def test_project_weak_perspective_broadcasts_batches():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(4, 21, 3))
    cams = rng.normal(size=(4, 3))
    out = cam.project_weak_perspective(points, cams)
    assert out.shape == (4, 21, 2)
    for b in range(4):
        np.testing.assert_allclose(out[b], cam.project_weak_perspective(points[b], cams[b]))
    shared = cam.project_weak_perspective(points, cams[0])  # one camera for the whole batch
    np.testing.assert_allclose(shared[2], cam.project_weak_perspective(points[2], cams[0]))


def test_fit_recovers_known_camera():
    rng = np.random.default_rng(1)
    points = random_points(rng)
    true = np.array([850.0, 160.0, 140.0])
    fitted = cam.fit_weak_perspective(points, cam.project_weak_perspective(points, true))
    np.testing.assert_allclose(fitted, true, rtol=1e-10)


def test_fit_with_weights_ignores_outliers():
    rng = np.random.default_rng(2)
    points = random_points(rng)
    true = np.array([-600.0, 12.0, 300.0])
    uv = cam.project_weak_perspective(points, true)
    uv[[3, 7, 11]] += np.array([[80.0, -40.0], [-60.0, 90.0], [30.0, 30.0]])
    points[15] = np.nan  # e.g. a missing 3D keypoint, weighted 0
    weights = np.ones(21)
    weights[[3, 7, 11, 15]] = 0.0
    np.testing.assert_allclose(cam.fit_weak_perspective(points, uv, weights), true, rtol=1e-10)
    ok = np.isfinite(points).all(axis=1)
    unweighted = cam.fit_weak_perspective(points[ok], uv[ok])
    assert not np.allclose(unweighted, true, rtol=1e-3)  # the outliers matter without the weights


def test_fit_non_uniform_weights_matches_lstsq():
    rng = np.random.default_rng(3)
    points = random_points(rng)
    uv = rng.normal(scale=50.0, size=(21, 2))
    w = rng.uniform(0.1, 2.0, size=21)
    # generic weighted least squares on the unknowns (s, tx, ty)
    a = np.zeros((42, 3))
    a[:21, 0], a[:21, 1] = points[:, 0], 1.0
    a[21:, 0], a[21:, 2] = points[:, 1], 1.0
    b = np.concatenate([uv[:, 0], uv[:, 1]])
    sw = np.sqrt(np.concatenate([w, w]))
    expected = np.linalg.lstsq(a * sw[:, None], b * sw, rcond=None)[0]
    np.testing.assert_allclose(cam.fit_weak_perspective(points, uv, w), expected, rtol=1e-9)


def test_fit_batched_and_visibility_column_ignored():
    rng = np.random.default_rng(4)
    points = rng.normal(size=(3, 21, 3))
    cams = rng.uniform(1.0, 5.0, size=(3, 3))
    uv = cam.project_weak_perspective(points, cams)
    uvv = np.concatenate([uv, np.ones((3, 21, 1))], axis=-1)
    np.testing.assert_allclose(cam.fit_weak_perspective(points, uvv), cams, rtol=1e-10)


def test_fit_errors():
    points = np.zeros((21, 3))
    points[:, 0] = np.arange(21)
    uv = points[:, :2]
    w = np.zeros(21)
    w[4] = 1.0
    with pytest.raises(ValueError, match="at least 2"):
        cam.fit_weak_perspective(points, uv, w)
    with pytest.raises(ValueError, match="at least 2"):
        cam.fit_weak_perspective(points[:1], uv[:1])
    with pytest.raises(ValueError, match="coincide"):
        cam.fit_weak_perspective(np.ones((5, 3)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="non-negative"):
        cam.fit_weak_perspective(points, uv, -np.ones(21))


def test_torch_projection_gradients():
    rng = np.random.default_rng(5)
    points_np = rng.normal(size=(2, 21, 3))
    cams_np = np.array([[2.0, 1.0, -1.0], [0.5, 3.0, 4.0]])
    points = torch.tensor(points_np, requires_grad=True)
    cams = torch.tensor(cams_np, requires_grad=True)
    out = cam.project_weak_perspective(points, cams)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.detach().numpy(), cam.project_weak_perspective(points_np, cams_np))
    out.sum().backward()
    # d/ds sum(u + v) = sum(X + Y); d/dtx = d/dty = N; d/dX = d/dY = s; d/dZ = 0
    np.testing.assert_allclose(cams.grad[:, 0].numpy(), points_np[..., :2].sum(axis=(1, 2)))
    np.testing.assert_allclose(cams.grad[:, 1:].numpy(), 21.0)
    np.testing.assert_allclose(points.grad[..., 0].numpy(), np.repeat(cams_np[:, :1], 21, axis=1))
    np.testing.assert_allclose(points.grad[..., 2].numpy(), 0.0)


def test_torch_projection_with_numpy_camera():
    points = torch.ones(21, 3, dtype=torch.float32)
    out = cam.project_weak_perspective(points, np.array([2.0, 1.0, 0.0]))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert torch.allclose(out, torch.tensor([3.0, 2.0]).expand(21, 2))


def test_mirror_camera_consistency():
    rng = np.random.default_rng(6)
    width = 320
    points = rng.normal(scale=0.05, size=(3, 21, 3))
    cams = np.column_stack([rng.uniform(500, 1500, 3), rng.uniform(0, width, 3), rng.uniform(0, width, 3)])
    mirrored_cams = cam.mirror_camera(cams, width)
    np.testing.assert_array_equal(mirrored_cams[:, [0, 2]], cams[:, [0, 2]])
    lhs = cam.project_weak_perspective(kp.mirror_keypoints_3d(points), mirrored_cams)
    rhs = kp.mirror_keypoints_2d(cam.project_weak_perspective(points, cams), width)
    np.testing.assert_allclose(lhs, rhs, atol=1e-9)
    np.testing.assert_allclose(cam.mirror_camera(mirrored_cams, width), cams)
    # a fit on mirrored data gives the mirrored camera
    fitted = cam.fit_weak_perspective(kp.mirror_keypoints_3d(points), rhs)
    np.testing.assert_allclose(fitted, mirrored_cams, rtol=1e-9)


def test_mirror_camera_torch():
    c = torch.tensor([[2.0, 10.0, 20.0]], requires_grad=True)
    out = cam.mirror_camera(c, 320)
    assert torch.equal(out.detach(), torch.tensor([[2.0, 309.0, 20.0]]))
    out.sum().backward()
    assert torch.equal(c.grad, torch.tensor([[1.0, -1.0, 1.0]]))


# ----------------------------------------------------------------------------------------------------
# Pinhole, Rodrigues


def test_project_perspective():
    K = np.array([[822.79041, 0.0, 318.47345], [0.0, 822.79041, 250.31296], [0.0, 0.0, 1.0]])
    points = np.array([[0.0, 0.0, 500.0], [100.0, -50.0, 400.0]])
    expected = np.array([[318.47345, 250.31296], [318.47345 + 822.79041 / 4, 250.31296 - 822.79041 / 8]])
    np.testing.assert_allclose(cam.project_perspective(points, K), expected)
    rng = np.random.default_rng(7)
    pts = random_points(rng)
    cv, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), K, None)
    np.testing.assert_allclose(cam.project_perspective(pts, K), cv[:, 0], rtol=1e-9)
    batch = cam.project_perspective(np.stack([pts, pts]), np.stack([K, 2 * K]))
    np.testing.assert_allclose(batch[1], cam.project_perspective(pts, 2 * K))


def test_rodrigues_matches_opencv():
    np.testing.assert_allclose(cam.rodrigues(STB_RVEC), cv2.Rodrigues(STB_RVEC)[0], atol=1e-12)
    np.testing.assert_allclose(cam.rodrigues(STB_RVEC), STB_R, atol=1e-8)
    np.testing.assert_array_equal(cam.rodrigues(np.zeros(3)), np.eye(3))
    np.testing.assert_allclose(cam.rodrigues(np.zeros(3)), cv2.Rodrigues(np.zeros(3))[0])
    rng = np.random.default_rng(8)
    rvecs = rng.normal(size=(10, 3)) * rng.uniform(0.0, 3.0, size=(10, 1))
    rvecs[0] = [1e-9, -2e-9, 0.5e-9]
    rvecs[1] = [np.pi, 0.0, 0.0]
    batch = cam.rodrigues(rvecs)
    assert batch.shape == (10, 3, 3)
    for rvec, rot in zip(rvecs, batch, strict=True):
        np.testing.assert_allclose(rot, cv2.Rodrigues(rvec)[0], atol=1e-12)
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(rot), 1.0)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3\), got \(4,\)"):
        cam.rodrigues(np.zeros(4))
