"""`hand3d inspect` on every file it knows (hand model, packed dataset, model.pt, state.pt) and on files it does not."""

from __future__ import annotations

import csv
import json
import shutil

import cv2
import h5py
import numpy as np
import pytest

from hand3d.cli import main
from hand3d.h5io import read_samples


def _inspect(capsys, *args: str) -> dict:
    assert main(["inspect", *args]) == 0
    return json.loads(capsys.readouterr().out)


def _error(capsys, *args: str) -> str:
    assert main(["inspect", *args]) == 2
    return capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory, hand_model_path, synthetic_packed):
    """A real 4-step pretraining: (folder with model.pt and history.csv, its state folder)."""
    from hand3d.train import Settings, train

    folder = tmp_path_factory.mktemp("trained")
    settings = Settings(
        stage="pretrain",
        hand_model=str(hand_model_path),
        datasets={str(synthetic_packed): 1.0},
        iterations=4,
        batch_size=2,
        backbone="resnet18",
        input_size=32,
        lr=3e-4,
        log_every=2,
        checkpoint_every=2,
    )
    train(settings, str(folder / "model.pt"), str(folder / "history.csv"), str(folder / "state"))
    return folder, folder / "state"


def test_a_packed_dataset_summary_counts_what_its_labels_hold(synthetic_packed, tmp_path, capsys):
    preview = tmp_path / "preview.png"
    summary = _inspect(capsys, str(synthetic_packed), "--preview", str(preview), "--count", "6")
    labels = read_samples(synthetic_packed, np.arange(32))
    assert summary["kind"] == "packed dataset" and summary["num_samples"] == 32 and summary["checksum_verified"]
    assert summary["source"] == "synthetic" and summary["split"] == "train"
    for flag in ("has_mask", "has_3d", "has_params", "is_left"):
        assert summary["samples_with"][flag] == int(labels[flag].sum())
    visible = labels["keypoints_2d"][..., 2] > 0
    assert summary["keypoints_2d"]["visible_per_sample"] == pytest.approx(visible.sum(1).mean(), abs=0.01)
    assert 30 < summary["keypoints_2d"]["extent_px_median"] < 320
    assert summary["keypoints_3d"]["samples"] == int(labels["has_3d"].sum())
    assert 70 < summary["keypoints_3d"]["wrist_to_middle_mcp_mm_median"] < 120  # metres, read as mm: a hand's palm
    assert summary["first_names"] == list(labels["names"][:3])
    assert cv2.imread(str(preview)).shape == (2 * 320, 4 * 320, 3)  # 6 samples, 4 columns


def test_a_hand_model_summary_and_preview(hand_model_path, tmp_path, capsys):
    preview = tmp_path / "hand.png"
    summary = _inspect(capsys, str(hand_model_path), "--preview", str(preview))
    assert summary["kind"] == "hand model" and summary["source"] == "procedural" and summary["closed"] is True
    image = cv2.imread(str(preview))
    assert image.shape == (2 * 240, 8 * 240, 3)  # two views of the template, mean pose and 3 PCA components at +-2
    assert (image.max(axis=2) > 0).mean() > 0.05, "the hands must be drawn"


def test_a_changed_packed_file_fails_its_checksum_unless_told_not_to_verify(synthetic_packed, tmp_path, capsys):
    changed = tmp_path / "changed.h5"
    shutil.copy(synthetic_packed, changed)
    with h5py.File(changed, "r+") as f:
        f["keypoints_2d"][0, 0, 0] += 1.0
    assert "content_sha256 does not match" in _error(capsys, str(changed))
    assert _inspect(capsys, str(changed), "--no-verify")["checksum_verified"] is False


def test_a_preview_of_no_samples_is_refused_plainly(tmp_path, capsys):
    from hand3d.h5io import PackedWriter

    empty = tmp_path / "empty.h5"
    with PackedWriter(empty, "test", "train", 5):
        pass
    assert "empty.h5: no samples to preview" in _error(capsys, str(empty), "--preview", str(tmp_path / "p.png"))
    assert not (tmp_path / "p.png").exists()
    with pytest.raises(SystemExit):
        main(["inspect", str(empty), "--preview", str(tmp_path / "p.png"), "--count", "0"])
    assert "argument --count: must be positive, got 0" in capsys.readouterr().err


def test_a_packed_file_of_another_layout_version_is_named(synthetic_packed, tmp_path, capsys):
    old = tmp_path / "old.h5"
    shutil.copy(synthetic_packed, old)
    with h5py.File(old, "r+") as f:
        f.attrs["layout_version"] = 0
    message = _error(capsys, str(old))
    assert "old.h5" in message and "layout version 0" in message


def test_a_model_summary_says_how_it_was_made_and_what_it_logged_last(trained, capsys):
    folder, _ = trained
    summary = _inspect(capsys, str(folder / "model.pt"))
    assert summary["kind"] == "model" and summary["meta"]["stage"] == "pretrain" and summary["meta"]["iterations"] == 4
    assert summary["config"]["backbone"] == "resnet18" and summary["config"]["input_size"] == 32
    assert summary["hand_model_found"] == summary["config"]["hand_model"]
    import torchvision

    head = 512 * 22 + 22  # the regression head: resnet18's 512 features to the 22 parameters
    assert summary["parameters"] == sum(p.numel() for p in torchvision.models.resnet18().parameters()) - 513_000 + head
    with open(folder / "history.csv", newline="") as stream:
        last = list(csv.DictReader(stream))[-1]
    assert summary["last_logged"] == {name: float(value) for name, value in last.items()}
    assert summary["last_logged"]["step"] == 4


def test_a_training_state_summary_says_where_the_run_stands(trained, capsys):
    _, state = trained
    summary = _inspect(capsys, str(state / "state.pt"))
    assert summary["kind"] == "training state" and summary["step"] == 4 and summary["history_rows"] == 2
    assert _inspect(capsys, str(state)) == summary  # the state folder, as the README names it
    assert summary["lr"] == pytest.approx(3e-4) and len(summary["signature"]) == 64
    assert summary["last_logged"]["step"] == 4


def _spoil_config(checkpoint: dict) -> None:
    del checkpoint["config"]["hand_model"]


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (_spoil_config, "its config lacks 'hand_model'"),
        (lambda c: c.update(meta=["pretrain"]), "its meta is a list, not a dict"),
        (lambda c: c.update(state_dict=list(c["state_dict"].values())), "its state_dict is a list, not a dict"),
    ],
    ids=["no hand_model", "meta a list", "state_dict a list"],
)
def test_a_model_file_of_the_wrong_content_is_refused_naming_it(trained, tmp_path, capsys, spoil, problem):
    import torch

    folder, _ = trained
    checkpoint = torch.load(folder / "model.pt", weights_only=True)
    spoil(checkpoint)
    torch.save(checkpoint, tmp_path / "model.pt")
    assert f"{tmp_path / 'model.pt'}: not a hand3d model checkpoint: {problem}" in _error(capsys, str(tmp_path))


class _Trap:
    """Unpickled, it would print: a stand-in for code a crafted file runs."""

    def __reduce__(self):
        return print, ("ran",)


def test_a_torch_file_it_cannot_read_is_named_without_torchs_advice_to_load_it_unsafely(tmp_path, capsys):
    import torch

    torch.save({"config": {}, "state_dict": {}, "meta": _Trap()}, tmp_path / "model.pt")
    message = _error(capsys, str(tmp_path / "model.pt"))
    assert "model.pt: not a hand3d model or training state (torch cannot read it: Unsupported global" in message
    assert not any(advice in message for advice in ("weights_only", "trust", "safe_globals")), message


def test_files_it_does_not_know_are_refused_by_name(trained, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not a hand")
    assert "notes.txt: not a file hand3d knows" in _error(capsys, str(text))
    assert "no such file" in _error(capsys, str(tmp_path / "missing.h5"))
    (tmp_path / "empty").mkdir()
    assert "empty: a folder without a state.pt or model.pt" in _error(capsys, str(tmp_path / "empty"))
    import torch

    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    assert "neither a hand3d model nor a training state (it holds ['weights'])" in _error(capsys, str(other))
    folder, _ = trained
    refused = _error(capsys, str(folder / "model.pt"), "--preview", "x.png")
    assert "--preview draws hand models and packed datasets only" in refused
