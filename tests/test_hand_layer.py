"""HandLayer: batched, differentiable parameters -> vertices and 21 OpenPose-ordered keypoints."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from hand3d.keypoints import KEYPOINT_NAMES


def _params(batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rot = torch.randn(batch, 3, generator=g)
    pose = torch.rand(batch, 6, generator=g) * 4 - 2
    betas = (torch.rand(batch, 10, generator=g) * 2 - 1) * 0.5
    return rot, pose, betas


def test_batched_shapes_and_per_sample_independence(hand_layer):
    rot, pose, betas = _params(4)
    out = hand_layer(rot, pose, betas)
    assert out.vertices.shape == (4, hand_layer.num_vertices, 3)
    assert out.keypoints.shape == (4, 21, 3) and out.joints.shape == (4, 16, 3)
    single = hand_layer(rot[2:3], pose[2:3], betas[2:3])
    torch.testing.assert_close(single.vertices[0], out.vertices[2])


def test_keypoints_are_joints_and_tip_vertices_in_openpose_order(hand_layer):
    out = hand_layer(*_params(2))
    torch.testing.assert_close(out.keypoints[:, 0], out.joints[:, 0])  # wrist
    torch.testing.assert_close(out.keypoints[:, 1], out.joints[:, 13])  # thumb CMC is MANO joint 13
    torch.testing.assert_close(out.keypoints[:, 5], out.joints[:, 1])  # index MCP is MANO joint 1
    torch.testing.assert_close(out.keypoints[:, 17], out.joints[:, 7])  # little MCP is MANO joint 7
    tips = out.vertices[:, hand_layer.tip_vertex_ids]
    for k, name in enumerate(("thumb", "index", "middle", "ring", "little")):
        torch.testing.assert_close(out.keypoints[:, KEYPOINT_NAMES.index(f"{name}_tip")], tips[:, k])


def test_global_rotation_turns_the_hand_about_the_wrist(hand_layer):
    _, pose, betas = _params(1)
    rvec = np.array([0.3, -1.1, 0.7])
    base = hand_layer(torch.zeros(1, 3), pose, betas).keypoints[0].double()
    turned = hand_layer(torch.tensor(rvec[None], dtype=torch.float32), pose, betas).keypoints[0].double()
    rotation = torch.from_numpy(cv2.Rodrigues(rvec)[0])
    wrist = base[0]
    torch.testing.assert_close(turned, (base - wrist) @ rotation.T + wrist, atol=1e-5, rtol=0)


def test_gradients_reach_every_parameter(hand_layer):
    rot, pose, betas = (p.requires_grad_() for p in _params(3))
    out = hand_layer(rot, pose, betas)
    (out.keypoints.square().sum() + out.vertices.square().mean()).backward()
    for p in (rot, pose, betas):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.cuda
def test_cuda_matches_cpu(hand_layer):
    params = _params(8)
    cpu = hand_layer(*params)
    gpu = hand_layer.to("cuda")(*(p.cuda() for p in params))
    hand_layer.to("cpu")
    torch.testing.assert_close(gpu.keypoints.cpu(), cpu.keypoints, atol=1e-5, rtol=1e-4)


def test_hand_layer_traces_as_one_graph(hand_layer):
    """torch.compile sees the whole kinematic chain: no graph break per joint (the training step is launch-bound)."""
    zeros = torch.zeros
    explained = torch._dynamo.explain(hand_layer)(zeros(2, 3), zeros(2, 6), zeros(2, 10))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons[:2]
    assert "mano.parents" not in hand_layer.state_dict()  # the tree is rebuilt from the hand model file


def test_models_saved_with_the_parents_buffer_still_load(hand_model_path, tmp_path):
    from hand3d.model import HandRegressor, load_model

    model = HandRegressor(hand_model_path, backbone="resnet18", input_size=64)
    state = model.state_dict()
    state["hand.mano.parents"] = torch.tensor([-1, *model.hand.mano.parents[1:]])  # as smplx registered it
    torch.save({"config": model.model_config(), "state_dict": state, "meta": {}}, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt")
    assert tuple(loaded.hand.mano.parents) == tuple(model.hand.mano.parents)


def test_45_pose_coefficients_are_refused(hand_model_path):
    from hand3d.hand_layer import HandLayer

    assert HandLayer(hand_model_path, num_pca=44).mano.use_pca
    with pytest.raises(ValueError, match="num_pca must be 1 to 44, got 45"):
        HandLayer(hand_model_path, num_pca=45)  # smplx would take the 45 numbers as joint angles
