"""Losses: zero for a perfect prediction, positive otherwise, the documented weights, masking of missing ground
truth (no NaN anywhere), the 3D forms' invariances and the mask loss's values and gradient."""

from __future__ import annotations

import pytest
import torch

from hand3d.camera import project_weak_perspective
from hand3d.h5io import CROP_SIZE
from hand3d.losses import (
    THREE_D_FORMS,
    PretrainWeights,
    TrainWeights,
    keypoint_2d_loss,
    keypoint_3d_loss,
    mask_loss,
    pretrain_loss,
    regularisation,
    training_loss,
)
from hand3d.model import ParamLayout, Prediction

LAYOUT = ParamLayout(6)
GROUPS = ("pose", "betas", "rotation", "translation", "scale")


def _params(batch: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    params = torch.randn(batch, LAYOUT.size, generator=g)
    params[:, 0] = 700 + 50 * torch.rand(batch, generator=g)
    params[:, 1:3] = 160 + 10 * torch.randn(batch, 2, generator=g)
    return params


def _keypoints_3d(batch: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.05 * torch.randn(batch, 21, 3, generator=g) + torch.tensor([0.0, 0.0, 0.5])


def _keypoints_2d(batch: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = 20 + 280 * torch.rand(batch, 21, 2, generator=g)
    return torch.cat([xy, torch.ones(batch, 21, 1)], dim=-1)


# ---------------------------------------------------------------- pretraining


def test_pretrain_loss_zero_for_perfect_and_positive_for_perturbed():
    gt = _params()
    terms = pretrain_loss(gt.clone(), gt, LAYOUT)
    assert set(terms) == {*GROUPS, "total"} and all(v == 0 for v in terms.values())
    terms = pretrain_loss(gt + 0.01, gt, LAYOUT)
    assert all(v > 0 for v in terms.values())
    torch.testing.assert_close(terms["total"], sum(terms[g] for g in GROUPS))


@pytest.mark.parametrize("group", GROUPS)
def test_pretrain_weights_scale_each_group(group):
    gt = _params()
    pred = gt.clone()
    delta = torch.zeros(LAYOUT.size)
    delta[getattr(LAYOUT, group)] = 0.1  # every slot of the group, every sample
    pred = pred + delta
    width = getattr(LAYOUT, group).stop - getattr(LAYOUT, group).start
    expected = getattr(PretrainWeights(), group) * width * 0.1**2  # mean over the batch of the summed squares
    terms = pretrain_loss(pred, gt, LAYOUT)
    torch.testing.assert_close(terms[group], torch.tensor(expected), rtol=1e-3, atol=0)  # float32 near 700
    assert all(terms[other] == 0 for other in GROUPS if other != group)
    doubled = PretrainWeights(**{group: 2 * getattr(PretrainWeights(), group)})
    torch.testing.assert_close(pretrain_loss(pred, gt, LAYOUT, doubled)["total"], 2 * terms["total"])


def test_pretrain_reference_weights():
    assert PretrainWeights() == PretrainWeights(pose=1e3, betas=1e5, rotation=5e3, translation=0.2, scale=0.1)


# ---------------------------------------------------------------- 2D keypoints


def test_keypoint_2d_loss_value_and_visibility():
    gt = _keypoints_2d()
    pred = gt[..., :2].clone().requires_grad_()
    assert keypoint_2d_loss(pred, gt) == 0
    moved = pred.detach().clone()
    moved[0, 3, 0] += 32  # 32 px = 0.2 of the half crop
    torch.testing.assert_close(keypoint_2d_loss(moved, gt), torch.tensor(0.2**2 / 3))  # summed, mean of 3 samples
    both = moved.clone()
    both[1, :, 1] += 16  # every keypoint of the second sample: 21 x 0.1**2 more
    torch.testing.assert_close(keypoint_2d_loss(both, gt), torch.tensor((0.2**2 + 21 * 0.1**2) / 3))
    gt[0, 3, 2] = 0  # that keypoint is now invisible: ignored, whatever its coordinates
    assert keypoint_2d_loss(moved, gt) == 0
    gt[0, 3, :2] = float("nan")
    assert keypoint_2d_loss(moved, gt) == 0


def test_keypoint_2d_loss_is_a_mean_over_the_samples_with_a_visible_keypoint():
    """Samples with nothing visible (3D-only data, say) neither add to the loss nor dilute it."""
    gt = _keypoints_2d()
    moved = gt[..., :2].clone()
    moved[0, 3, 0] += 32
    gt[1:, :, 2] = 0
    torch.testing.assert_close(keypoint_2d_loss(moved, gt), torch.tensor(0.2**2))


def test_keypoint_2d_loss_with_nothing_visible_is_zero_with_finite_gradients():
    gt = _keypoints_2d()
    gt[..., 2] = 0
    gt[1, :, :2] = float("nan")
    pred = (gt[..., :2].nan_to_num() + 5).requires_grad_()
    loss = keypoint_2d_loss(pred, gt)
    loss.backward()
    assert loss == 0 and torch.isfinite(pred.grad).all()


# ---------------------------------------------------------------- 3D keypoints


@pytest.mark.parametrize("form", THREE_D_FORMS)
def test_keypoint_3d_loss_zero_for_perfect_positive_for_perturbed(form):
    gt = _keypoints_3d()
    has = torch.ones(3, dtype=torch.bool)
    camera = _params()[:, :3]
    assert keypoint_3d_loss(gt.clone(), gt, has, form, camera) < 1e-10
    perturbed = gt + 0.01 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(5))
    assert keypoint_3d_loss(perturbed, gt, has, form, camera) > 1e-4


def test_keypoint_3d_normalized_forms_ignore_scale_and_translation():
    gt = _keypoints_3d()
    has = torch.ones(3, dtype=torch.bool)
    camera = _params()[:, :3]
    pred = 2.5 * gt + torch.tensor([0.1, -0.2, 0.3])
    for form in ("normalized", "normalized_nodetach"):
        assert keypoint_3d_loss(pred, gt, has, form, camera) < 1e-10
    assert keypoint_3d_loss(pred, gt, has, "weak_perspective", camera) > 1e-3
    # Translation alone: root-relative, so the weak-perspective form ignores it too.
    assert keypoint_3d_loss(gt + 0.3, gt, has, "weak_perspective", camera) < 1e-10


def test_keypoint_3d_normalized_forms_differ_in_their_gradients():
    """``normalized_nodetach`` differentiates through the statistics, so its loss is scale-invariant in the gradient
    too: moving the prediction along itself (a scaling) changes nothing to first order. ``normalized`` detaches them,
    so its gradient has a part along that scaling."""
    gt = _keypoints_3d()
    has = torch.ones(3, dtype=torch.bool)
    base = 1.3 * gt + 0.01 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(2))
    along_scale = {}
    for form in ("normalized", "normalized_nodetach"):
        pred = base.clone().requires_grad_()
        keypoint_3d_loss(pred, gt, has, form).backward()
        assert pred.grad.sum(dim=1).abs().max() < 1e-5  # root-relative: a translation changes nothing
        spread = base - base.mean(dim=1, keepdim=True)  # a scaling moves each point along its own offset
        along_scale[form] = (pred.grad * spread).sum().abs() / (pred.grad.norm() * spread.norm())  # a cosine
    assert along_scale["normalized_nodetach"] < 1e-5  # measured: 7e-9
    assert along_scale["normalized"] > 0.01  # measured: 0.073 (the residual left after standardising is small)


def test_keypoint_3d_weak_perspective_value_and_detached_camera():
    gt = _keypoints_3d(batch=1)
    pred = gt.clone()
    pred[0, 5, 0] += 0.01  # 1 cm
    camera = torch.tensor([[640.0, 160.0, 160.0]], requires_grad=True)
    loss = keypoint_3d_loss(pred, gt, torch.tensor([True]), "weak_perspective", camera)
    torch.testing.assert_close(loss, torch.tensor((0.01 * 640 / CROP_SIZE) ** 2 / 21))
    assert not loss.requires_grad  # the camera is detached: no gradient reaches it through the 3D loss
    with pytest.raises(ValueError, match="camera"):
        keypoint_3d_loss(pred, gt, torch.tensor([True]), "weak_perspective")
    with pytest.raises(ValueError, match="unknown 3D loss form"):
        keypoint_3d_loss(pred, gt, torch.tensor([True]), "procrustes")


@pytest.mark.parametrize("form", THREE_D_FORMS)
def test_keypoint_3d_nan_ground_truth_without_3d_is_ignored(form):
    gt = _keypoints_3d()
    gt[1] = float("nan")
    has = torch.tensor([True, False, True])
    pred = (_keypoints_3d(seed=7)).requires_grad_()
    camera = _params()[:, :3].requires_grad_()
    loss = keypoint_3d_loss(pred, gt, has, form, camera)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0 and torch.isfinite(pred.grad).all()
    assert torch.all(pred.grad[1] == 0)
    alone = keypoint_3d_loss(pred[[0, 2]], gt[[0, 2]], has[[0, 2]], form, camera[[0, 2]])
    torch.testing.assert_close(loss, alone)
    # flagged as having 3D but not finite (a bad label): ignored as well, not NaN in the loss
    flagged = keypoint_3d_loss(pred, gt, torch.ones(3, dtype=torch.bool), form, camera)
    torch.testing.assert_close(flagged, alone)
    pred.grad = None
    none = keypoint_3d_loss(pred, gt, torch.zeros(3, dtype=torch.bool), form, camera)
    none.backward()
    assert none == 0 and torch.isfinite(pred.grad).all()


# ---------------------------------------------------------------- mask


def test_mask_loss_values():
    g = torch.Generator().manual_seed(0)
    vertices = 10 + 300 * torch.rand(2, 500, 2, generator=g)
    has = torch.ones(2, dtype=torch.bool)
    ones = torch.ones(2, CROP_SIZE, CROP_SIZE, dtype=torch.uint8)
    assert mask_loss(vertices, ones, has) < 1e-6  # float rounding of the sampling coordinates
    torch.testing.assert_close(mask_loss(vertices, ones.float(), has), mask_loss(vertices, ones, has))
    torch.testing.assert_close(mask_loss(vertices, torch.zeros_like(ones), has), torch.tensor(1.0))
    mixed = torch.stack([ones[0], torch.zeros_like(ones[0])])
    torch.testing.assert_close(mask_loss(vertices, mixed, has), torch.tensor(0.5))
    assert mask_loss(vertices, mixed, torch.tensor([True, False])) < 1e-6  # sample 1 has no mask
    assert mask_loss(vertices, mixed, torch.zeros(2, dtype=torch.bool)) == 0
    assert mask_loss(vertices + 400, ones, has) == 1  # outside the crop counts as background


def test_mask_loss_samples_pixel_centres():
    mask = torch.zeros(1, CROP_SIZE, CROP_SIZE)
    mask[0, 40, 30] = 1  # row 40, column 30
    at = torch.tensor([[[30.0, 40.0]]])
    assert mask_loss(at, mask, torch.tensor([True])) < 1e-5
    torch.testing.assert_close(mask_loss(at + torch.tensor([0.5, 0.0]), mask, torch.tensor([True])), torch.tensor(0.5))


def test_mask_loss_gradient_moves_vertices_into_the_mask():
    mask = torch.zeros(1, CROP_SIZE, CROP_SIZE, dtype=torch.uint8)
    mask[0, :, :160] = 1  # the left half is hand
    g = torch.Generator().manual_seed(0)
    u = 159.1 + 0.8 * torch.rand(1, 200, 1, generator=g)  # on the edge, between columns 159 (1) and 160 (0)
    v = 20 + 280 * torch.rand(1, 200, 1, generator=g)
    vertices = torch.cat([u, v], dim=-1).requires_grad_()
    loss = mask_loss(vertices, mask, torch.tensor([True]))
    loss.backward()
    assert 0 < loss < 1 and torch.all(vertices.grad[..., 0] > 0)  # descending moves them left, into the hand
    stepped = vertices.detach() - 0.3 * vertices.shape[1] * vertices.grad  # 0.3 px to the left
    assert mask_loss(stepped, mask, torch.tensor([True])) < loss - 0.2


# ---------------------------------------------------------------- regulariser, weights, total


def test_regularisation():
    assert regularisation(torch.zeros(2, 6), torch.zeros(2, 10)) == 0
    torch.testing.assert_close(regularisation(torch.full((2, 6), 2.0), torch.full((2, 10), 0.5)), torch.tensor(4.25))


def test_mask_weight_decays_late_in_training():
    assert TrainWeights() == TrainWeights(
        keypoints_2d=4, keypoints_3d=100, mask=100, mask_late=10, mask_decay_start=0.8, regularisation=10
    )
    mask_weight = TrainWeights().mask_weight
    assert mask_weight(0, 1000) == 100 and mask_weight(799, 1000) == 100
    assert mask_weight(800, 1000) == 10 and mask_weight(999, 1000) == 10
    assert TrainWeights(mask_decay_start=0.5, mask_late=1).mask_weight(500, 1000) == 1


def _prediction(hand_layer, params: torch.Tensor) -> Prediction:
    parts = LAYOUT.split(params)
    out = hand_layer(parts["rotation"], parts["pose"], parts["betas"])
    return Prediction(
        params=params,
        vertices=out.vertices,
        keypoints_3d=out.keypoints,
        keypoints_2d=project_weak_perspective(out.keypoints, parts["camera"]),
        vertices_2d=project_weak_perspective(out.vertices, parts["camera"]),
    )


@pytest.mark.parametrize("form", THREE_D_FORMS)
def test_training_loss_combines_the_terms(hand_layer, form):
    params = torch.zeros(2, LAYOUT.size)
    params[:, :3] = torch.tensor([600.0, 160.0, 160.0])
    params[:, 3:6] = torch.tensor([0.0, 0.0, -1.57])
    with torch.no_grad():
        truth = _prediction(hand_layer, params)
    batch = {
        "keypoints_2d": torch.cat([truth.keypoints_2d, torch.ones(2, 21, 1)], dim=-1),
        "keypoints_3d": torch.stack([truth.keypoints_3d[0], torch.full((21, 3), float("nan"))]),
        "has_3d": torch.tensor([True, False]),
        "masks": torch.ones(2, CROP_SIZE, CROP_SIZE, dtype=torch.uint8),
        "has_mask": torch.tensor([True, True]),
    }
    perfect = training_loss(_prediction(hand_layer, params.clone()), batch, form=form)
    assert set(perfect) == {"keypoints_2d", "keypoints_3d", "mask", "regularisation", "total"}
    assert all(v < 1e-6 for v in perfect.values())  # float rounding in grid_sample's coordinates

    perturbed = params.clone()
    perturbed[:, 6:] += 0.3
    perturbed[:, 1] += 5
    perturbed.requires_grad_()
    batch["masks"][:, :, 170:] = 0
    early = training_loss(_prediction(hand_layer, perturbed), batch, form=form, step=0, total_steps=10)
    assert all(v > 0 for v in early.values())
    torch.testing.assert_close(early["total"], sum(v for k, v in early.items() if k != "total"))
    early["total"].backward()
    assert torch.isfinite(perturbed.grad).all() and perturbed.grad.abs().sum() > 0
    late = training_loss(_prediction(hand_layer, perturbed), batch, form=form, step=9, total_steps=10)
    torch.testing.assert_close(late["mask"], early["mask"] / 10)
