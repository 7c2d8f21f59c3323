"""Losses (DESIGN section 6): the pretraining parameter loss and the training losses on real data.

Units: 2D keypoints and projected vertices in crop pixels of the 320 crop (:data:`hand3d.h5io.CROP_SIZE`); 3D
keypoints in metres; parameters in the layout of :class:`hand3d.model.ParamLayout`. Every "mean over samples" is
over the samples that have the supervision (a missing one contributes nothing, not even NaN to a gradient: ground
truth is masked before any arithmetic) and is zero, still attached to the graph where possible, when no sample has
it. Defaults are the reference implementation's weights.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import torch
import torch.nn.functional as F

from hand3d.h5io import CROP_SIZE
from hand3d.model import ParamLayout, Prediction

__all__ = [
    "THREE_D_FORMS",
    "PretrainWeights",
    "TrainWeights",
    "keypoint_2d_loss",
    "keypoint_3d_loss",
    "mask_loss",
    "pretrain_loss",
    "regularisation",
    "training_loss",
]

ThreeDForm = Literal["weak_perspective", "normalized", "normalized_nodetach"]
THREE_D_FORMS: tuple[str, ...] = ("weak_perspective", "normalized", "normalized_nodetach")
ROOT = 0  # the wrist, keypoint 0 of the OpenPose order
_EPS = 1e-8


# ---------------------------------------------------------------- pretraining


@dataclass(frozen=True)
class PretrainWeights:
    """Weights of the parameter groups in the pretraining loss (reference values)."""

    pose: float = 1e3
    betas: float = 1e5
    rotation: float = 5e3
    translation: float = 0.2
    scale: float = 0.1


def pretrain_loss(
    pred_params: torch.Tensor,
    gt_params: torch.Tensor,
    layout: ParamLayout,
    weights: PretrainWeights | None = None,
) -> dict[str, torch.Tensor]:
    """Weighted L2 on the parameter vector (B, P): per group ``weight * mean_b sum_group (pred - gt)**2``.

    Returns one term per group (pose, betas, rotation, translation, scale; already weighted) and their "total".
    """
    weights = weights or PretrainWeights()
    error = (pred_params - gt_params).square()
    terms = {
        f.name: getattr(weights, f.name) * error[:, getattr(layout, f.name)].sum(dim=1).mean() for f in fields(weights)
    }
    terms["total"] = sum(terms.values())
    return terms


# ---------------------------------------------------------------- training weights


@dataclass(frozen=True)
class TrainWeights:
    """Weights of the training terms (reference values).

    The mask weight is ``mask`` until ``mask_decay_start`` (a fraction of the training steps), then ``mask_late``:
    the reference implementation found that the mask loss at 100 throughout shrinks the hands (the mask pulls every
    vertex inside the often loose GrabCut silhouette), so it is lowered late in training.
    """

    keypoints_2d: float = 4.0
    keypoints_3d: float = 100.0
    mask: float = 100.0
    mask_late: float = 10.0
    mask_decay_start: float = 0.8
    regularisation: float = 10.0

    def mask_weight(self, step: int, total_steps: int) -> float:
        """``mask`` before ``mask_decay_start * total_steps``, ``mask_late`` from then on."""
        return self.mask if step < self.mask_decay_start * total_steps else self.mask_late

    def mask_weights(self) -> tuple[float, float]:
        """Every value :meth:`mask_weight` takes."""
        return self.mask, self.mask_late


# ---------------------------------------------------------------- terms


def _masked_mean(per_sample: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_sample`` (B,) over ``valid`` (B,) samples; 0 when none (``per_sample`` must be finite)."""
    valid = valid.to(per_sample.dtype)
    return (per_sample * valid).sum() / valid.sum().clamp(min=1.0)


def keypoint_2d_loss(pred_2d: torch.Tensor, gt_2d: torch.Tensor, crop_size: int = CROP_SIZE) -> torch.Tensor:
    """Per sample, the sum over visible keypoints of the squared distance in normalised crop coordinates (the crop
    spans [-1, 1], so a distance of ``crop_size / 2`` pixels counts 1); mean over the samples with a visible keypoint.

    This is the scale at which the reference weights (2D 4, mask 100) balance: measured here, a mean over keypoints
    in units of the whole crop made the 2D term about 160 times smaller than the mask term, and training then shrank
    the projected hands into the masks (the camera scale fell from about 950 to 180 px/m in 600 steps).

    ``pred_2d`` (B, 21, 2) pixels; ``gt_2d`` (B, 21, 3) = x, y, visibility. Invisible keypoints (whatever their
    coordinates, NaN included) count for nothing; 0 when no keypoint is visible.
    """
    visible = gt_2d[..., 2] > 0
    target = torch.where(visible[..., None], gt_2d[..., :2], pred_2d.detach())
    dist = ((pred_2d - target) / (crop_size / 2)).square().sum(dim=-1)
    per_sample = (dist * visible.to(dist.dtype)).sum(dim=1)
    return _masked_mean(per_sample, visible.any(dim=1))


def _standardise(points: torch.Tensor, detach: bool) -> torch.Tensor:
    """Centre (B, 21, 3) points and divide by their std over the keypoints (one number per sample)."""
    centre = points.mean(dim=1, keepdim=True)
    std = (points - centre).square().mean(dim=(1, 2), keepdim=True).sqrt().clamp(min=_EPS)
    if detach:
        centre, std = centre.detach(), std.detach()
    return (points - centre) / std


def keypoint_3d_loss(
    pred_3d: torch.Tensor,
    gt_3d: torch.Tensor,
    has_3d: torch.Tensor,
    form: ThreeDForm = "weak_perspective",
    camera: torch.Tensor | None = None,
    crop_size: int = CROP_SIZE,
) -> torch.Tensor:
    """3D keypoint loss: mean over samples with 3D of the mean over keypoints of the squared 3D distance.

    ``pred_3d``, ``gt_3d`` (B, 21, 3) metres, both made root-relative (wrist). Forms (the reference implementation's):

    - ``"weak_perspective"``: both multiplied by the predicted scale ``s`` (``camera`` (B, 3), detached) and divided
      by ``crop_size``: compared in the crop's (normalised) pixel frame.
    - ``"normalized"``: each set centred and divided by its std over the 21 keypoints, the statistics detached:
      invariant to the prediction's scale and translation.
    - ``"normalized_nodetach"``: the same, gradients also through the statistics.

    A sample counts where ``has_3d`` is true and its ground truth is finite; 0 when none does.
    """
    if form not in THREE_D_FORMS:
        raise ValueError(f"unknown 3D loss form {form!r}; choose one of {THREE_D_FORMS}")
    valid = has_3d.bool() & torch.isfinite(gt_3d).all(dim=(1, 2))
    gt = torch.where(valid[:, None, None], gt_3d, pred_3d.detach())  # masked before any arithmetic
    pred = pred_3d - pred_3d[:, ROOT : ROOT + 1]
    gt = gt - gt[:, ROOT : ROOT + 1]
    if form == "weak_perspective":
        if camera is None:
            raise ValueError("the weak_perspective 3D loss needs the predicted camera (B, 3)")
        factor = camera[:, 0, None, None].detach() / crop_size
        pred, gt = pred * factor, gt * factor
    else:
        detach = form == "normalized"
        pred, gt = _standardise(pred, detach), _standardise(gt, detach)
    per_sample = (pred - gt).square().sum(dim=-1).mean(dim=1)
    return _masked_mean(per_sample, valid)


def mask_loss(vertices_2d: torch.Tensor, masks: torch.Tensor, has_mask: torch.Tensor) -> torch.Tensor:
    """Mean over projected vertices of (1 - mask at the vertex), over samples with a mask; 0 when none.

    ``vertices_2d`` (B, V, 2) crop pixels (pixel centres at integers); ``masks`` (B, H, W) with values 0/1, uint8 or
    float; sampled bilinearly with ``grid_sample`` (``align_corners=False``: ``x_n = (u + 0.5) / W * 2 - 1``), zero
    outside the crop, so the loss is differentiable with respect to the vertices (within a pixel of a mask edge).
    """
    height, width = masks.shape[-2:]
    dtype = vertices_2d.dtype if vertices_2d.is_floating_point() else torch.float32
    centres = vertices_2d.to(dtype) + 0.5
    grid = torch.stack([centres[..., 0] / width, centres[..., 1] / height], dim=-1) * 2 - 1
    sampled = F.grid_sample(
        masks[:, None].to(dtype), grid[:, None], mode="bilinear", padding_mode="zeros", align_corners=False
    )  # (B, 1, 1, V)
    per_sample = (1 - sampled[:, 0, 0]).mean(dim=1)
    return _masked_mean(per_sample, has_mask.bool())


def regularisation(pose: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """Mean squared PCA pose coefficient plus mean squared shape coefficient."""
    return pose.square().mean() + betas.square().mean()


def training_loss(
    prediction: Prediction,
    batch: dict[str, torch.Tensor],
    weights: TrainWeights | None = None,
    form: ThreeDForm = "weak_perspective",
    step: int = 0,
    total_steps: int = 1,
    mask_weight: float | torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The weighted training terms and their "total".

    ``batch``: ``keypoints_2d`` (B, 21, 3), ``keypoints_3d`` (B, 21, 3), ``has_3d`` (B,), ``masks`` (B, 320, 320),
    ``has_mask`` (B,), as packed. The camera is supervised only through the reprojection (2D and mask terms).
    Returns keypoints_2d, keypoints_3d, mask, regularisation (each already weighted) and total. ``mask_weight``
    (e.g. a tensor, so a compiled step does not recompile when it changes) replaces the schedule's
    ``weights.mask_weight(step, total_steps)``.
    """
    weights = weights or TrainWeights()
    if mask_weight is None:
        mask_weight = weights.mask_weight(step, total_steps)
    parts = prediction.layout.split(prediction.params)
    terms = {
        "keypoints_2d": weights.keypoints_2d * keypoint_2d_loss(prediction.keypoints_2d, batch["keypoints_2d"]),
        "keypoints_3d": weights.keypoints_3d
        * keypoint_3d_loss(
            prediction.keypoints_3d, batch["keypoints_3d"], batch["has_3d"], form, camera=parts["camera"]
        ),
        "mask": mask_weight * mask_loss(prediction.vertices_2d, batch["masks"], batch["has_mask"]),
        "regularisation": weights.regularisation * regularisation(parts["pose"], parts["betas"]),
    }
    terms["total"] = sum(terms.values())
    return terms
