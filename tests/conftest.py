"""Shared fixtures: the procedural hand is built once per session (about a second) and reused."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
