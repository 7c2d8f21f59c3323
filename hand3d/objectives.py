"""What a training step minimises, as modules: the network, its decoding and the loss terms in one forward.

Wrapping the whole step in one module lets DDP synchronise its gradients and ``torch.compile`` fuse it. The forward
takes an augmented batch (:func:`hand3d.augment.augment_batch`) on the device and returns the terms stacked in
``columns`` order (``total`` first, the one to backpropagate), as a float32 vector: no host sync, no Python floats.
The encoder runs under bf16 autocast on CUDA (``bf16=True``) in channels_last; the hand layer and losses in float32.
"""

from __future__ import annotations

import torch
from torch import nn

from hand3d.losses import PretrainWeights, ThreeDForm, TrainWeights, pretrain_loss, training_loss
from hand3d.model import HandRegressor

__all__ = ["PretrainObjective", "TrainObjective"]


class _Objective(nn.Module):
    columns: tuple[str, ...] = ()

    def __init__(self, model: HandRegressor, bf16: bool = False, channels_last: bool = False):
        super().__init__()
        self.model = model
        self.bf16 = bf16
        self.channels_last = channels_last

    def _params(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        images = batch["images"]
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.model.regress(images, batch.get("heatmaps"))


class PretrainObjective(_Objective):
    """Weighted L2 on the parameter vector (synthetic ground truth ``params``); no decoding needed."""

    columns = ("total", "pose", "betas", "rotation", "translation", "scale")

    def __init__(self, model: HandRegressor, weights: PretrainWeights, bf16: bool = False, channels_last=False):
        super().__init__(model, bf16, channels_last)
        self.weights = weights

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        terms = pretrain_loss(self._params(batch), batch["params"], self.model.layout, self.weights)
        return torch.stack([terms[name] for name in self.columns]).float()


class TrainObjective(_Objective):
    """2D, 3D, mask and regularisation terms (:func:`hand3d.losses.training_loss`), plus the mean 2D error in
    crop pixels over visible keypoints (``error_2d_px``, a readable figure; not backpropagated)."""

    columns = ("total", "keypoints_2d", "keypoints_3d", "mask", "regularisation", "error_2d_px")

    def __init__(
        self,
        model: HandRegressor,
        weights: TrainWeights,
        form: ThreeDForm,
        bf16: bool = False,
        channels_last: bool = False,
    ):
        super().__init__(model, bf16, channels_last)
        self.weights = weights
        self.form = form

    def forward(self, batch: dict[str, torch.Tensor], mask_weight: torch.Tensor) -> torch.Tensor:
        prediction = self.model.decode(self._params(batch))
        terms = training_loss(prediction, batch, self.weights, self.form, mask_weight=mask_weight)
        with torch.no_grad():
            gt = batch["keypoints_2d"]
            visible = (gt[..., 2] > 0).float()
            target = torch.where(visible[..., None] > 0, gt[..., :2], prediction.keypoints_2d)
            distance = (prediction.keypoints_2d - target).norm(dim=-1)
            terms["error_2d_px"] = (distance * visible).sum() / visible.sum().clamp(min=1)
        return torch.stack([terms[name] for name in self.columns]).float()
