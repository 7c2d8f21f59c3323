"""HandRegressor: shapes, the untrained network's mean hand, gradients, heatmap channels, memory format, checkpoints
and backbone weight files. Real torchvision ResNet-18 (random init, nothing downloaded) at 64 px, the procedural
hand model."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torchvision

from hand3d.h5io import CROP_SIZE
from hand3d.model import HandRegressor, ParamLayout, build_backbone, load_model, save_model

INPUT_SIZE = 64
BOX_SIDE = CROP_SIZE / 2.2
CENTRE = (CROP_SIZE - 1) / 2


@pytest.fixture(scope="module")
def rgb_model(hand_model_path):
    torch.manual_seed(0)
    return HandRegressor(hand_model_path, backbone="resnet18", inputs="rgb", input_size=INPUT_SIZE)


@pytest.fixture(scope="module")
def rgb2d_model(hand_model_path):
    torch.manual_seed(1)
    return HandRegressor(hand_model_path, backbone="resnet18", inputs="rgb+2d", input_size=INPUT_SIZE)


def _images(batch: int = 2, size: int = 96, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, size, size), generator=g, dtype=torch.uint8)


def _heatmaps(batch: int = 2, size: int = 32, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 21, size, size), generator=g, dtype=torch.uint8)


def _with_random_head(model: HandRegressor, seed: int = 2) -> HandRegressor:
    """A copy whose head is non-zero, so the outputs depend on the backbone (eval mode)."""
    model = copy.deepcopy(model).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.head.weight.copy_(torch.randn(model.head.weight.shape, generator=g) * 1e-3)
        model.head.bias.copy_(torch.randn(model.head.bias.shape, generator=g) * 1e-2)
    return model


def test_param_layout():
    layout = ParamLayout(6)
    assert layout.size == 22 and ParamLayout.for_size(22) == layout
    params = torch.arange(2 * 22.0).view(2, 22)
    parts = layout.split(params)
    assert {k: tuple(v.shape) for k, v in parts.items()} == {
        "scale": (2, 1),
        "translation": (2, 2),
        "camera": (2, 3),
        "rotation": (2, 3),
        "pose": (2, 6),
        "betas": (2, 10),
    }
    assert parts["betas"][0, -1] == 21 and parts["pose"][0, 0] == 6 and parts["rotation"][0, 0] == 3
    with pytest.raises(ValueError, match="expected 22"):
        layout.split(params[:, :-1])


@pytest.mark.parametrize("inputs", ["rgb", "rgb+2d"])
def test_output_shapes(inputs, rgb_model, rgb2d_model):
    model = rgb_model if inputs == "rgb" else rgb2d_model
    heatmaps = _heatmaps() if inputs == "rgb+2d" else None
    with torch.no_grad():
        pred = model(_images(), heatmaps)
    num_vertices = model.hand.num_vertices
    assert pred.params.shape == (2, 22) and pred.params.dtype == torch.float32
    assert pred.vertices.shape == (2, num_vertices, 3) and pred.vertices_2d.shape == (2, num_vertices, 2)
    assert pred.keypoints_3d.shape == (2, 21, 3) and pred.keypoints_2d.shape == (2, 21, 2)
    assert model.prepare(_images(), heatmaps).shape == (2, 3 if inputs == "rgb" else 24, INPUT_SIZE, INPUT_SIZE)


def test_heatmaps_required_exactly_when_configured(rgb_model, rgb2d_model):
    with pytest.raises(ValueError, match="needs heatmaps"):
        rgb2d_model(_images())
    with pytest.raises(ValueError, match="takes no heatmaps"):
        rgb_model(_images(), _heatmaps())


def test_untrained_network_predicts_the_mean_hand_at_the_crop_centre(rgb_model):
    with torch.no_grad():
        pred = rgb_model(_images(size=CROP_SIZE))
    torch.testing.assert_close(pred.params, rgb_model.mean.expand(2, -1), rtol=0, atol=0)
    assert ((pred.keypoints_2d >= 0) & (pred.keypoints_2d <= CROP_SIZE - 1)).all()
    lo, hi = pred.vertices_2d.amin(dim=1), pred.vertices_2d.amax(dim=1)
    assert torch.allclose((hi - lo).amax(dim=1), torch.tensor(BOX_SIDE), atol=1e-3)
    assert torch.allclose((lo + hi) / 2, torch.tensor(CENTRE), atol=1e-3)  # pixel centres at integers: 159.5
    k2, k3 = pred.keypoints_2d[0], pred.keypoints_3d[0]
    assert k2[12, 1] < k2[0, 1] - 0.5 * BOX_SIDE  # the middle fingertip well above the wrist: fingers up
    assert k2[4, 0] > k2[20, 0]  # thumb on the image right: a right hand seen from the palm side
    palm_normal = torch.linalg.cross(k3[5] - k3[0], k3[17] - k3[0])
    assert palm_normal[2] < -0.9 * palm_normal.norm()  # the palm faces the camera (-z, OpenCV axes)
    assert torch.all(pred.params[:, ParamLayout().pose] == 0) and torch.all(pred.params[:, ParamLayout().betas] == 0)


def test_gradients_reach_head_then_backbone(rgb_model):
    model = copy.deepcopy(rgb_model).train()
    target = torch.full((2, 21, 2), 100.0)

    def step_loss():
        model.zero_grad()
        loss = (model(_images()).keypoints_2d - target).square().mean()
        loss.backward()

    step_loss()
    assert model.head.weight.grad.abs().sum() > 0 and model.head.bias.grad.abs().sum() > 0
    # The zero-initialised head passes no gradient to the features at first; one step later it does.
    with torch.no_grad():
        for p in model.head.parameters():
            p -= 1e-3 * p.grad
    step_loss()
    for name in ("conv1.weight", "layer1.0.conv1.weight", "layer4.1.conv2.weight"):
        grad = model.backbone.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_the_camera_scale_stays_positive_whatever_the_head_says(rgb_model):
    """s = mean_s * exp(SCALE_STEP * out_s): a negative s would project the hand turned 180 degrees (a mirror
    solution training drifted into)."""
    from hand3d.model import SCALE_STEP

    model = copy.deepcopy(rgb_model)
    mean_s = float(model.mean[0])
    for out_s in (-20.0, -1.0, 3.0):
        with torch.no_grad():
            model.head.bias[0] = out_s
            s = model.regress(_images())[:, 0]
        assert (s > 0).all()
        torch.testing.assert_close(s, torch.full_like(s, mean_s * np.exp(SCALE_STEP * out_s)), rtol=1e-5, atol=0)


def test_the_mask_term_reaches_the_camera_through_the_projected_vertices(rgb_model):
    """The camera is supervised through the reprojection: projected vertices carry gradients to s, tx and ty."""
    params = rgb_model.mean.expand(2, -1).clone().requires_grad_()
    rgb_model.decode(params).vertices_2d[..., 0].mean(dim=1).sum().backward()
    camera = params.grad[:, ParamLayout().camera]
    torch.testing.assert_close(camera[:, 1:], torch.tensor([[1.0, 0.0]] * 2))  # d mean(x) / d (tx, ty)
    assert (camera[:, 0].abs() > 0).all()


def test_heatmap_filters_start_at_zero(rgb2d_model):
    conv1 = rgb2d_model.backbone.conv1
    assert conv1.weight.shape == (64, 24, 7, 7) and conv1.bias is None
    assert torch.all(conv1.weight[:, 3:] == 0) and conv1.weight[:, :3].abs().sum() > 0
    model = _with_random_head(rgb2d_model)
    with torch.no_grad():
        with_maps = model(_images(), _heatmaps())
        blank = model(_images(), torch.zeros_like(_heatmaps()))
    assert not torch.allclose(with_maps.params, model.mean)  # the head really reads the features
    torch.testing.assert_close(with_maps.params, blank.params, rtol=0, atol=1e-6)


def test_channels_last_inputs_and_model_give_the_same_result(rgb_model):
    model = _with_random_head(rgb_model)
    images = _images().float()
    with torch.no_grad():
        reference = model(images)
        last = model(images.contiguous(memory_format=torch.channels_last))
        model_last = model.to(memory_format=torch.channels_last)(images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(last.keypoints_2d, reference.keypoints_2d, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(model_last.vertices, reference.vertices, rtol=1e-4, atol=1e-5)


def test_uint8_and_float_images_agree(rgb_model):
    model = _with_random_head(rgb_model)
    with torch.no_grad():
        torch.testing.assert_close(model(_images()).params, model(_images().float()).params)


def test_save_load_round_trip_reproduces_the_outputs(rgb2d_model, hand_model_path, tmp_path):
    model = _with_random_head(rgb2d_model)
    path = tmp_path / "models" / "model.pt"
    save_model(path, model)
    assert path.is_file() and not list(path.parent.glob(".*"))  # no temporary left behind
    checkpoint = torch.load(path, weights_only=True)
    assert json.loads(json.dumps(checkpoint["config"])) == model.model_config()
    assert model.model_config() == {
        "hand_model": str(hand_model_path),
        "backbone": "resnet18",
        "inputs": "rgb+2d",
        "input_size": INPUT_SIZE,
        "num_pca": 6,
    }
    loaded = load_model(path, hand_model=hand_model_path)
    assert not loaded.training
    with torch.no_grad():
        a, b = model(_images(), _heatmaps()), loaded(_images(), _heatmaps())
    for field in ("params", "vertices", "keypoints_3d", "keypoints_2d", "vertices_2d"):
        torch.testing.assert_close(getattr(b, field), getattr(a, field), rtol=0, atol=0)


def test_the_same_model_saves_to_the_same_bytes(rgb_model, tmp_path):
    """A model file's digest is an input of the runs trained from it: a resave must not change it."""
    save_model(tmp_path / "a.pt", rgb_model, {"stage": "test"})
    save_model(tmp_path / "b" / "model.pt", rgb_model, {"stage": "test"})
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()


def test_a_model_file_that_cannot_be_loaded_fails_naming_the_file(rgb_model, hand_model_path, tmp_path):
    good = tmp_path / "model.pt"
    save_model(good, rgb_model)
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "text.pt").write_text("model weights\n")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    checkpoint = torch.load(good, weights_only=True)
    checkpoint["config"]["head_layers"] = 2  # a setting from another version of hand3d
    torch.save(checkpoint, tmp_path / "newer.pt")
    for name, reason in [
        ("truncated.pt", "not a hand3d model checkpoint \\(torch cannot read it: PytorchStreamReader failed"),
        ("random.pt", "not a hand3d model checkpoint \\(torch cannot read it: Unsupported operand"),
        ("text.pt", "not a hand3d model checkpoint \\(torch cannot read it"),
        ("other.pt", "not a hand3d model checkpoint: expected a dict with keys 'config' and 'state_dict'"),
        ("newer.pt", "saved by another version of hand3d"),
    ]:
        with pytest.raises(ValueError, match=f"{name}: {reason}"):
            load_model(tmp_path / name, hand_model=hand_model_path)
    with pytest.raises(FileNotFoundError, match="missing.pt: no such model file"):
        load_model(tmp_path / "missing.pt", hand_model=hand_model_path)


class _Trap:
    """Unpickled, it would print: a stand-in for code a crafted file runs."""

    def __reduce__(self):
        return print, ("ran",)


@pytest.mark.parametrize("content", ["random bytes", "pickled code"])
def test_an_unreadable_model_file_is_named_without_torchs_advice_to_load_it_unsafely(tmp_path, content):
    path = tmp_path / "model.pt"
    if content == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        torch.save({"config": {}, "state_dict": {}, "meta": _Trap()}, path)
    with pytest.raises(ValueError) as refused:
        load_model(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: not a hand3d model checkpoint (torch cannot read it: ")
    assert not any(advice in message for advice in ("weights_only", "trust", "safe_globals")), message


def _without_hand_model(checkpoint: dict) -> None:
    del checkpoint["config"]["hand_model"]


# How a checkpoint's content is spoiled, and the problem the error names.
SPOILED = {
    "no hand model": (_without_hand_model, "its config lacks 'hand_model'"),
    "config a list": (lambda c: c.update(config=list(c["config"])), "its config is a list, not a dict"),
    "meta a list": (lambda c: c.update(meta=["pretrain"]), "its meta is a list, not a dict"),
    "state_dict a list": (lambda c: c.update(state_dict=list(c["state_dict"].values())), "its state_dict is a list"),
    "a state entry not a tensor": (lambda c: c["state_dict"].update(mean=[1.0]), "its state_dict holds other things"),
    "negative input size": (
        lambda c: c["config"].update(input_size=-5),
        "its config's input_size is -5, expected a positive whole number",
    ),
    "fractional num_pca": (lambda c: c["config"].update(num_pca=6.5), "its config's num_pca is 6.5, expected a whole"),
}


@pytest.mark.parametrize("spoiled", sorted(SPOILED))
def test_a_checkpoint_of_the_wrong_content_fails_naming_the_file_and_the_problem(rgb_model, tmp_path, spoiled):
    save_model(tmp_path / "model.pt", rgb_model)
    checkpoint = torch.load(tmp_path / "model.pt", weights_only=True)
    spoil, problem = SPOILED[spoiled]
    spoil(checkpoint)
    torch.save(checkpoint, tmp_path / "spoiled.pt")
    with pytest.raises(ValueError, match=rf"spoiled\.pt: not a hand3d model checkpoint: {problem}"):
        load_model(tmp_path / "spoiled.pt")


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A torchvision-style resnet18 state dict (fc included), as a user's ImageNet checkpoint would be."""
    torch.manual_seed(3)
    net = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path_factory.mktemp("weights") / "resnet18-imagenet.pth"
    torch.save(net.state_dict(), path)
    net.fc = torch.nn.Identity()
    return path, net


def test_build_backbone_loads_a_torchvision_state_dict(resnet18_file):
    path, reference = resnet18_file
    x = _images(size=64).float() / 255
    rgb, dim = build_backbone("resnet18", 3, path)
    wide, _ = build_backbone("resnet18", 24, path)
    assert dim == 512
    torch.testing.assert_close(wide.conv1.weight[:, :3], reference.conv1.weight, rtol=0, atol=0)
    assert torch.all(wide.conv1.weight[:, 3:] == 0)
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(rgb.eval()(x), expected, rtol=0, atol=0)
        stacked = torch.cat([x, torch.rand(2, 21, 64, 64)], dim=1)  # the heatmaps change nothing at first
        torch.testing.assert_close(wide.eval()(stacked), expected, rtol=1e-5, atol=1e-6)


def test_build_backbone_names_the_file_and_keys_on_a_mismatch(resnet18_file, tmp_path):
    path, _ = resnet18_file
    state = torch.load(path, weights_only=True)
    state["bogus.weight"] = state.pop("layer2.0.conv1.weight")
    wrong = tmp_path / "wrong.pth"
    torch.save(state, wrong)
    with pytest.raises(ValueError, match=r"wrong\.pth.*layer2\.0\.conv1\.weight.*bogus\.weight"):
        build_backbone("resnet18", 3, wrong)
    with pytest.raises(ValueError, match=r"resnet18-imagenet\.pth.*not a torchvision resnet34.*shape mismatches"):
        build_backbone("resnet34", 3, path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="garbage.pth"):
        build_backbone("resnet18", 3, garbage)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_backbone("resnet18", 3, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("vgg16", 3)


def test_predict_crops_feeds_the_network_as_training_does(rgb2d_model):
    """Crops (N, H, W, 3) as packed, in batches (the last one short), give what the network gives on (N, 3, H, W)."""
    from hand3d.inference import predict_crops

    model = _with_random_head(rgb2d_model)
    images = _images(batch=5).permute(0, 2, 3, 1).contiguous().numpy()  # channels last, as in a packed file
    maps = _heatmaps(batch=5).numpy()
    got = predict_crops(model, images, maps, batch_size=2)
    with torch.no_grad():
        want = model(torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(maps))
    np.testing.assert_allclose(got["params"], want.params.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["keypoints_2d"], want.keypoints_2d.numpy(), rtol=1e-4, atol=1e-3)
    transposed = predict_crops(model, images.transpose(0, 2, 1, 3).copy(), maps, batch_size=2)
    assert np.abs(transposed["params"] - got["params"]).max() > 1e-3  # the pixels' layout matters
