"""Evaluation of a saved model on a packed test set: metrics against hand-made ground truth, plots, sample overlays."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from hand3d.evaluate import evaluate
from hand3d.h5io import PackedWriter
from hand3d.model import load_model

SHIFT = (30.0, 40.0)  # crop pixels: a 50-pixel offset
SIDE = 640  # the crops' side in the original images: 2 image pixels per crop pixel


def _decoded(model, params: torch.Tensor) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model.decode(params)
    return {"kp2d": out.keypoints_2d.numpy(), "kp3d": out.keypoints_3d.numpy(), "verts": out.vertices.numpy()}


def write_test_set(
    path, model, params: torch.Tensor, shifted: int, heatmaps: bool = False, camera_offset=(0.0, 0.0, 0.0), no_3d=0
) -> None:
    """Samples whose ground truth is the hand of ``params``; the last ``shifted`` moved by SHIFT in the crop only.
    ``camera_offset`` (metres) moves the 3D ground truth as a camera frame places it; the first ``no_3d`` samples
    have no 3D (NaN, ``has_3d`` false)."""
    count = 5
    rows = params[None].repeat(count, 1)
    rows[count - shifted :, model.layout.translation] += torch.tensor(SHIFT)
    hand = _decoded(model, rows)
    visible = np.ones((count, 21, 1), np.float32)
    has_3d = np.arange(count) >= no_3d
    keypoints_3d, vertices = (
        np.where(has_3d[:, None, None], hand[name] + np.float32(camera_offset), np.nan) for name in ("kp3d", "verts")
    )
    data = {
        "images": np.random.default_rng(0).integers(0, 255, (count, 320, 320, 3), dtype=np.uint8),
        "keypoints_2d": np.concatenate([hand["kp2d"], visible], axis=2),
        "keypoints_3d": keypoints_3d.astype(np.float32),
        "has_3d": has_3d,
        "vertices": vertices.astype(np.float32),
        "crop_box": np.tile(np.array([10, 20, SIDE, 0], np.float32), (count, 1)),
        "names": [f"sample{i}" for i in range(count)],
    }
    extra = {"heatmap_size": 8} if heatmaps else {}
    if heatmaps:
        data["heatmaps"] = np.zeros((count, 21, 8, 8), np.uint8)
    with PackedWriter(path, "stb", "test", len(params), num_vertices=hand["verts"].shape[1], **extra) as writer:
        writer.append(data)


@pytest.fixture(scope="module")
def evaluated(fixed_model, hand_model_path, tmp_path_factory):
    path, params = fixed_model
    model = load_model(path)
    folder = tmp_path_factory.mktemp("eval")
    write_test_set(folder / "stb_test.h5", model, params, shifted=2)
    outputs = [folder / name for name in ("metrics.json", "pck.png", "samples.png")]
    record = evaluate(str(path), str(folder / "stb_test.h5"), *map(str, outputs), dataset="stb")
    return record, outputs


def test_metrics_match_the_ground_truth_made_by_hand(evaluated):
    record, (metrics_json, _, _) = evaluated
    assert json.loads(metrics_json.read_text()) == json.loads(json.dumps(record))
    assert (record["samples"], record["samples_3d"], record["root"]) == (5, 5, "palm")
    model = record["scores"]["model"]
    crop, image = model["pck_2d_crop_px"], model["pck_2d_image_px"]
    # three samples exact, two 50 crop pixels (100 image pixels) off in every keypoint
    assert crop["mean_error"] == pytest.approx(20.0, abs=1e-3)
    assert image["mean_error"] == pytest.approx(40.0, abs=1e-3)
    assert crop["pck"][1] == pytest.approx(0.6) and crop["pck"][-1] == pytest.approx(0.6)
    assert crop["count"] == 5 * 21
    # the shift is 2D only: the 3D hand is right everywhere
    assert model["pck_3d"]["auc"] == pytest.approx(1.0)
    assert model["mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)
    assert model["freihand"]["pa_mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)
    assert model["freihand"]["pa_mpvpe_mm"] == pytest.approx(0.0, abs=1e-3)
    assert model["freihand"]["f_at_5mm"] == pytest.approx(1.0)


@pytest.mark.parametrize("dataset", ["stb", "freihand"])
def test_3d_scores_are_root_relative_and_of_the_samples_with_3d(fixed_model, tmp_path, dataset):
    """Real 3D ground truth sits in the camera frame, half a metre away; the model's hand has no absolute position.
    And a test set may mix samples with and without 3D."""
    path, params = fixed_model
    write_test_set(tmp_path / "t.h5", load_model(path), params, 0, camera_offset=(0.1, 0.2, 0.5), no_3d=2)
    outs = [str(tmp_path / n) for n in ("m.json", "p.png", "s.png")]
    record = evaluate(str(path), str(tmp_path / "t.h5"), *outs, dataset=dataset)
    model = record["scores"]["model"]
    assert (record["samples"], record["samples_3d"]) == (5, 3)
    assert model["pck_3d"]["count"] == 3 * 21 and model["pck_3d"]["auc"] == pytest.approx(1.0)
    assert model["mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)
    assert model["freihand"]["pa_mpvpe_mm"] == pytest.approx(0.0, abs=1e-3)


def test_baseline_is_the_mean_hand_and_is_worse(evaluated):
    record, _ = evaluated
    model, baseline = record["scores"]["model"], record["scores"]["mean_hand"]
    assert baseline["mpjpe_mm"] > 5.0
    assert baseline["pck_3d"]["auc"] < model["pck_3d"]["auc"]
    assert baseline["pck_2d_crop_px"]["pck"][1] < model["pck_2d_crop_px"]["pck"][1]
    assert set(baseline) == set(model)


def test_paper_reference_comes_with_the_stb_protocol(evaluated):
    record, _ = evaluated
    paper = record["paper"]
    assert paper["metric"] == "pck_3d" and paper["auc"] == pytest.approx(0.994, abs=5e-4)
    assert "Boukhayma" in paper["source"]
    assert "STB protocol" in record["scores"]["model"]["pck_3d"]["protocol"]
    assert "root-relative" in record["protocols"]["mpjpe_mm"]


def test_plots_and_sample_overlays_are_pictures(evaluated):
    _, (_, plot, samples) = evaluated
    pck = cv2.imread(str(plot))
    assert pck is not None and pck.shape[1] > pck.shape[0]  # two panels side by side
    grid = cv2.imread(str(samples))
    assert grid.shape == (2 * 320, 8 * 320, 3)  # 5 pairs, 4 per row
    truth, guess = grid[:320, :320].astype(int), grid[:320, 320:640].astype(int)
    changed = (np.abs(truth - guess).max(axis=2) > 30).mean()
    assert changed > 0.02, "the prediction tile shows the rendered mesh"


def test_heatmap_model_needs_heatmaps_in_the_test_set(fixed_model, hand_model_path, tmp_path):
    from hand3d.model import HandRegressor, save_model

    path, params = fixed_model
    model = load_model(path)
    write_test_set(tmp_path / "plain.h5", model, params, shifted=0)
    wide = HandRegressor(hand_model_path, backbone="resnet18", inputs="rgb+2d", input_size=64)
    save_model(tmp_path / "rgb2d.pt", wide)
    outs = [str(tmp_path / n) for n in ("m.json", "p.png", "s.png")]
    with pytest.raises(ValueError, match="plain.h5.*has none"):
        evaluate(str(tmp_path / "rgb2d.pt"), str(tmp_path / "plain.h5"), *outs, dataset="stb")
    assert not (tmp_path / "m.json").exists()
    write_test_set(tmp_path / "maps.h5", model, params, shifted=0, heatmaps=True)
    record = evaluate(str(tmp_path / "rgb2d.pt"), str(tmp_path / "maps.h5"), *outs, dataset="freihand")
    assert record["inputs"] == "rgb+2d" and record["root"] == "wrist"


def test_the_command_line_evaluates_with_the_files_own_dataset(fixed_model, tmp_path, capsys):
    from hand3d.cli import main

    path, params = fixed_model
    write_test_set(tmp_path / "mine.h5", load_model(path), params, shifted=0)  # the model's own hand: no error
    args = ["evaluate", "--model", str(path), "--test", str(tmp_path / "mine.h5"), "--out", str(tmp_path / "out")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    record = json.loads((tmp_path / "out/metrics.json").read_text())
    assert record["dataset"] == "stb" and record["root"] == "palm"  # the packed file's source
    assert record["scores"]["model"]["pck_2d_image_px"]["mean_error"] < 1e-3
    table = {line[:32].strip(): line[32:].split() for line in printed.splitlines()[2:7]}
    assert table["2D mean error px"][0] == "0.0" and table["3D AUC 20-50 mm (STB protocol)"][-1] == "0.994"
    assert cv2.imread(str(tmp_path / "out/samples.png")) is not None
    assert main([*args, "--dataset", "freihand"]) == 0
    assert json.loads((tmp_path / "out/metrics.json").read_text())["root"] == "wrist"
    capsys.readouterr()
    assert main(["evaluate", "--model", str(path), "--test", str(tmp_path / "none.h5"), "--out", str(tmp_path)]) == 2
    assert "none.h5: packed dataset file not found" in capsys.readouterr().err
