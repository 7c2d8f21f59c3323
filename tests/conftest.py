"""Shared fixtures: the procedural hand is built once per session (about a second) and reused."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` need a CUDA device and are skipped without one; ``pytest -m cuda`` runs only them."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def procedural_arrays() -> dict:
    from hand3d.procedural_hand import build_procedural_hand

    return build_procedural_hand()


@pytest.fixture(scope="session")
def hand_model_path(tmp_path_factory, procedural_arrays) -> Path:
    from hand3d.hand_model import save_hand_model

    path = tmp_path_factory.mktemp("hand_model") / "MANO_RIGHT.npz"
    save_hand_model(path, procedural_arrays, source="procedural", source_md5="", generator_version=0)
    return path


@pytest.fixture(scope="session")
def hand_layer(hand_model_path):
    from hand3d.hand_layer import HandLayer

    return HandLayer(hand_model_path, num_pca=6)


@pytest.fixture(scope="session")
def synthetic_packed(tmp_path_factory, hand_model_path) -> Path:
    """32 real synthetic renders of the procedural hand in the packed layout (a few seconds)."""
    from hand3d.backgrounds import build_backgrounds
    from hand3d.skin_colors import build_colors
    from hand3d.synthetic import SamplerConfig, render_shard

    folder = tmp_path_factory.mktemp("synthetic")
    colors, backgrounds = folder / "colors.npz", folder / "backgrounds.h5"
    build_colors(str(colors), str(hand_model_path), count=2, seed=0)
    build_backgrounds(str(backgrounds), folder=None, size=320, procedural=2, seed=0)
    out = folder / "synthetic_train.h5"
    render_shard(str(out), str(hand_model_path), str(colors), str(backgrounds), "train", 0, 32, 0, SamplerConfig())
    return out


@pytest.fixture(scope="session")
def fixed_model(tmp_path_factory, hand_model_path):
    """A saved RGB model whose head ignores the image: every crop gets the same known parameters.

    The fc weights are zero (as at initialisation), so the output is ``mean + scale * bias``; the bias is set so
    that this is ``params``, a posed, turned hand off the crop centre. Returns (model path, params (P,)).
    """
    import torch

    from hand3d.model import HandRegressor, save_model

    model = HandRegressor(hand_model_path, backbone="resnet18", input_size=64)
    params = model.mean.clone()
    params[model.layout.pose] = torch.tensor([1.0, -0.5, 0.3, 0.0, 0.0, 0.2])
    params[model.layout.rotation] += torch.tensor([0.2, -0.1, 0.3])
    params[model.layout.translation] += torch.tensor([12.0, -7.0])
    with torch.no_grad():
        model.head.bias.copy_((params - model.mean) / model.scale)
    path = tmp_path_factory.mktemp("fixed_model") / "model.pt"
    save_model(path, model, {"stage": "test"})
    with torch.no_grad():
        regressed = model.eval().regress(torch.zeros(1, 3, 64, 64))[0]
    # exact only where the scale is 1 (the rest goes through bias * scale / scale): compare with a tolerance
    torch.testing.assert_close(regressed, params, rtol=1e-5, atol=1e-5)
    return path, params
