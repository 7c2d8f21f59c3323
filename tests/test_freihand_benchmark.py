"""FreiHAND's benchmark offline: pred.json in the published format, scored against a folder in the published layout."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from hand3d.camera import project_perspective
from hand3d.cli import main
from hand3d.freihand_benchmark import evaluate_freihand, load_prediction, predict_freihand
from hand3d.metrics import freihand_scores
from hand3d.model import load_model
from hand3d.real_data import write_demo_raw


@pytest.fixture(scope="module")
def freihand(tmp_path_factory, hand_model_path):
    """A stand-in in FreiHAND v2's published layout: FreiHAND_pub_v2/ (images, K) and FreiHAND_pub_v2_eval/."""
    root = tmp_path_factory.mktemp("freihand")
    write_demo_raw("freihand", str(root), str(hand_model_path), seed=3)
    return root / "FreiHAND_pub_v2", root / "FreiHAND_pub_v2_eval"


def _gt(folder):
    return [json.loads((folder / f"evaluation_{key}.json").read_text()) for key in ("xyz", "verts")]


def test_ground_truth_as_prediction_scores_perfectly(freihand, tmp_path):
    _, gt = freihand
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(_gt(gt)))
    scores = evaluate_freihand(str(pred), str(gt), str(tmp_path / "scores.json"))["scores"]
    assert scores["count"] == 4
    for key in ("pa_mpjpe_mm", "pa_mpvpe_mm", "mpjpe_mm", "mpvpe_mm"):
        assert scores[key] == pytest.approx(0.0, abs=1e-6), key
    assert scores["f_at_5mm"] == scores["f_at_15mm"] == 1.0
    assert json.loads((tmp_path / "scores.json").read_text())["scores"] == json.loads(json.dumps(scores))


def test_a_similar_copy_scores_zero_after_alignment_only(freihand, tmp_path):
    _, gt = freihand
    xyz, verts = (np.array(a) for a in _gt(gt))
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 degrees about z
    moved = [(xyz @ turn.T * 1.3 + 0.05).tolist(), (verts @ turn.T * 1.3 + 0.05).tolist()]
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(moved))
    scores = evaluate_freihand(str(pred), str(gt))["scores"]
    assert scores["pa_mpjpe_mm"] == pytest.approx(0.0, abs=1e-6)
    assert scores["pa_mpvpe_mm"] == pytest.approx(0.0, abs=1e-6)
    assert scores["f_at_5mm"] == 1.0
    assert scores["mpjpe_mm"] > 10.0  # unaligned errors see the move


def test_predictions_are_written_in_the_benchmark_format_and_scored(fixed_model, freihand, tmp_path):
    model_path, params = fixed_model
    root, gt = freihand
    pred = tmp_path / "pred.json"
    assert predict_freihand(str(model_path), str(root), str(pred), batch_size=3) == 4  # a second, short batch
    xyz, verts = load_prediction(pred)
    assert xyz.shape == (4, 21, 3) and verts.shape[0] == 4
    # the lifted hand's origin lands where the weak-perspective camera puts it (224-px images, the whole crop)
    K = np.array(json.loads((root / "evaluation_K.json").read_text()))
    k = 224 / 320
    expected = [k * (float(params[1]) + 0.5) - 0.5, k * (float(params[2]) + 0.5) - 0.5]
    assert len({tuple(np.ravel(k)) for k in K}) == 4, "each image has its own intrinsics"
    with torch.no_grad():
        hand = load_model(model_path).decode(params[None])
    relative, relative_verts = (a[0].double().numpy() for a in (hand.keypoints_3d, hand.vertices))
    for i in range(4):
        origin = xyz[i] - relative  # the same point (the model's origin) from every keypoint
        assert origin.std(axis=0) == pytest.approx(0.0, abs=1e-6)
        assert project_perspective(origin[:1], K[i])[0] == pytest.approx(expected, abs=1e-3)
        np.testing.assert_allclose(verts[i] - relative_verts, origin[:1].repeat(len(verts[i]), 0), atol=1e-6)
    record = evaluate_freihand(str(pred), str(gt))
    gt_xyz, gt_verts = (np.array(a) for a in _gt(gt))
    assert "mesh_skipped" not in record  # the procedural hand's vertices on both sides
    assert record["scores"] == freihand_scores(xyz, gt_xyz, verts, gt_verts)  # the file's arrays, in the file's order
    assert record["scores"]["pa_mpjpe_mm"] > 0 and record["scores"]["f_at_5mm"] <= record["scores"]["f_at_15mm"] < 1
    assert record["paper"]["pa_mpjpe_mm"] == 35.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[[], [], []]", r"\[xyz_list, verts_list\]"),
        ("[[[[0, 0, 0]]], [[[0, 0, 0]]]]", "xyz_list must be N x 21 x 3"),
        ("{}", "must be a JSON list"),
    ],
)
def test_malformed_prediction_file_is_refused_naming_it(freihand, tmp_path, content, message, capsys):
    _, gt = freihand
    pred = tmp_path / "pred.json"
    pred.write_text(content)
    assert main(["eval-freihand", "--pred", str(pred), "--gt", str(gt)]) == 2
    err = capsys.readouterr().err
    assert "pred.json" in err and re.search(message, err)


def test_wrong_count_and_missing_ground_truth_are_clear(freihand, tmp_path):
    root, gt = freihand
    xyz, verts = _gt(gt)
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([xyz[:3], verts[:3]]))
    with pytest.raises(ValueError, match="3 predictions for 4 evaluation samples"):
        evaluate_freihand(str(pred), str(gt))
    with pytest.raises(FileNotFoundError, match="FreiHAND_pub_v2_eval folder"):
        evaluate_freihand(str(pred), str(root))


def test_cli_round_trip(fixed_model, freihand, tmp_path, capsys):
    model_path, _ = fixed_model
    root, gt = freihand
    pred, scores = tmp_path / "pred.json", tmp_path / "scores.json"
    assert main(["predict", "--model", str(model_path), "--format", "freihand", str(root), "--out", str(pred)]) == 0
    assert main(["eval-freihand", "--pred", str(pred), "--gt", str(gt), "--out", str(scores)]) == 0
    out = capsys.readouterr().out
    assert "pa_mpjpe_mm" in out and "f_at_5mm" in out
    assert json.loads(scores.read_text())["scores"]["count"] == 4
