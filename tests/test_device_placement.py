"""The GPU step's device placement, checked without a GPU.

torch's fake tensors carry a device and run no kernel, so here the augmentation, the objectives and inference run on
a fake ``cuda:0``. A tensor left on the CPU then fails as it would on a GPU: one that ``module.to`` does not move (a
plain attribute) or that meets CUDA tensors raises, and a CPU scalar tensor (which a GPU accepts, but which keeps
Inductor from making a CUDA graph of the compiled step) is recorded. Not run: the backward (the autograd engine needs
a real CUDA context) and bf16 autocast (torch turns it off without CUDA).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from hand3d.augment import augment_batch
from hand3d.data import PRETRAIN_FIELDS, TRAIN_FIELDS, PackedBatches, Source
from hand3d.losses import PretrainWeights, TrainWeights
from hand3d.model import HandRegressor
from hand3d.objectives import PretrainObjective, TrainObjective

CUDA = torch.device("cuda", 0)


class CpuOperands(TorchDispatchMode):
    """Records each operation that is given a CPU tensor."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        leaves = tree_leaves((args, kwargs or {}))
        if any(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in leaves):
            self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def _on_fake_cuda(module: nn.Module, mode: FakeTensorMode) -> nn.Module:
    """``module`` with its parameters and buffers as fake CUDA tensors (what ``module.to("cuda")`` moves)."""
    for owner in module.modules():
        for name, param in owner._parameters.items():
            if param is not None:
                owner._parameters[name] = nn.Parameter(_to_fake_cuda(mode, param.detach()), param.requires_grad)
        for name, buffer in owner._buffers.items():
            if buffer is not None:
                owner._buffers[name] = _to_fake_cuda(mode, buffer)
    return module


def _to_fake_cuda(mode: FakeTensorMode, tensor: torch.Tensor) -> torch.Tensor:
    fake = mode.from_tensor(tensor)
    with mode:
        return fake.to(CUDA)


def _fake_batch(mode: FakeTensorMode, packed, fields) -> dict[str, torch.Tensor]:
    loaded = PackedBatches([Source(str(packed))], 4, fields, seed=0).batch(0)
    return {name: _to_fake_cuda(mode, value) for name, value in loaded.items()}


def _model(hand_model_path, inputs: str) -> HandRegressor:
    model = HandRegressor(hand_model_path, backbone="resnet18", inputs=inputs, input_size=64)
    return model.to(memory_format=torch.channels_last)  # as training on CUDA does


@pytest.mark.filterwarnings("ignore:.*CUDA is not available.*Disabling autocast")
@pytest.mark.parametrize(
    ("stage", "inputs", "form"),
    [("pretrain", "rgb", None), ("train", "rgb", "normalized"), ("train", "rgb+2d", "weak_perspective")],
)
def test_the_training_step_keeps_every_tensor_on_the_gpu(hand_model_path, synthetic_packed, stage, inputs, form):
    mode = FakeTensorMode()
    model = _on_fake_cuda(_model(hand_model_path, inputs), mode)
    batch = _fake_batch(mode, synthetic_packed, PRETRAIN_FIELDS if stage == "pretrain" else TRAIN_FIELDS)
    with mode:  # as the loop makes them before the first step
        mask_weight = torch.tensor(100.0, device=CUDA)
    with mode, CpuOperands() as cpu:
        noise = torch.randn((4, 3, 64, 64), device=CUDA)
        augmented = augment_batch(batch, 64, "render" if inputs == "rgb+2d" else None, 6.0, noise)
        if stage == "pretrain":
            terms = PretrainObjective(model, PretrainWeights(), bf16=True, channels_last=True)(augmented)
        else:
            objective = TrainObjective(model, TrainWeights(), form, bf16=True, channels_last=True)
            terms = objective(augmented, mask_weight)
    assert {t.device for t in augmented.values()} == {CUDA} and terms.device == CUDA
    assert terms.requires_grad and not cpu.ops, cpu.ops


def test_inference_keeps_every_tensor_on_the_gpu(hand_model_path, synthetic_packed):
    mode = FakeTensorMode()
    model = _on_fake_cuda(_model(hand_model_path, "rgb+2d").eval(), mode)
    images = _fake_batch(mode, synthetic_packed, ("images",))["images"].permute(0, 3, 1, 2)
    with torch.no_grad(), mode, CpuOperands() as cpu:
        heatmaps = torch.zeros((4, 21, 80, 80), dtype=torch.uint8, device=CUDA)
        prediction = model(images, heatmaps)
    assert prediction.vertices.device == CUDA and prediction.keypoints_2d.device == CUDA
    assert not cpu.ops, cpu.ops
