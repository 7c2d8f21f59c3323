"""Evaluation of a trained model on a packed test set (DESIGN section 7): metrics.json, PCK plots, sample overlays.

Every metric is computed twice: for the model and for the trivial mean-hand baseline (what the untrained network
predicts: the mean hand, palm-facing, centred in the crop), so a reader sees at once whether the model learned.

- 2D: PCK over 0-30 px and its AUC (the paper's MPII+NZSL protocol), on the visible keypoints, in the original
  image's pixels (crop errors times the crop's side / 320; the crop pixels are reported too).
- 3D, on the samples with 3D ground truth: the STB protocol (root-relative, the prediction rescaled to the ground
  truth's middle MCP-PIP bone, PCK 0-50 mm, AUC 20-50 mm; root: the palm centre for STB, whose palm is its
  original root joint and is scored in the estimated wrist's place, else the wrist), the root-relative MPJPE
  without rescaling, and the FreiHAND protocol (per-sample similarity Procrustes: PA-MPJPE, joint AUC 0-50 mm;
  with vertices in the test set also PA-MPVPE and F@5 / F@15 mm).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from hand3d import metrics
from hand3d.atomic import atomic_write_json
from hand3d.crop import CROP_SIZE
from hand3d.drawing import draw_mask_outline, draw_skeleton, tile
from hand3d.h5io import open_packed, read_samples
from hand3d.image_io import write_rgb
from hand3d.inference import decode_params, mean_hand_predictions, open_model, predict_crops
from hand3d.overlay import MeshOverlay, screen_vertices
from hand3d.paper_reference import paper_curve
from hand3d.plots import PckPanel, plot_pck

__all__ = ["PROTOCOLS", "TestSet", "evaluate", "score", "stb_root"]

PROTOCOLS = {
    "pck_2d": "2D PCK of the visible keypoints at absolute pixel thresholds 0-30 (1-px steps), AUC by the "
    "trapezoid rule normalised by 30 (Boukhayma et al.'s MPII+NZSL protocol); image_px: in the original image's "
    "pixels (crop error x crop side / 320), crop_px: in the 320-pixel crop",
    "pck_3d": "STB protocol (Zimmermann & Brox): root-relative, prediction rescaled to the ground truth's middle "
    "MCP-PIP bone, no rotation alignment; PCK at 0-50 mm (1-mm steps), AUC 20-50 mm normalised by 30; 21 "
    "keypoints with the root as keypoint 0 (on STB the annotated palm centre, not the reader's estimated wrist)",
    "mpjpe_mm": "mean 3D keypoint error, root-relative (root as in pck_3d), no rescaling or alignment, mm",
    "freihand": "FreiHAND protocol: per-sample similarity Procrustes alignment (as its official evaluation), "
    "PA-MPJPE / PA-MPVPE in mm, joint AUC over 0-50 mm (100 thresholds), F@5 / F@15 mm on aligned vertices; "
    "predicted from the packed crops cut around the ground-truth keypoints, not the benchmark's whole images",
}
SAMPLE_COUNT = 8


def stb_root(dataset: str) -> str:
    """The 3D root joint of a test set: STB's own root is the palm centre (its reader estimates the wrist)."""
    return "palm" if dataset == "stb" else "wrist"


class TestSet:
    """The labels of a packed test file (images stay on disk and are read in blocks)."""

    LABELS = ("keypoints_2d", "keypoints_3d", "has_3d", "crop_box", "names")

    def __init__(self, path: str | os.PathLike, need_heatmaps: bool):
        self.path = str(path)
        with open_packed(path) as f:
            self.count = len(f["images"])
            if need_heatmaps and "heatmaps" not in f:
                raise ValueError(f"{path}: the model takes heatmaps (rgb+2d), but this test set has none")
            self.has_vertices = "vertices" in f
        if self.count == 0:
            raise ValueError(f"{path}: the test set is empty")
        fields = [*self.LABELS, *(["vertices"] if self.has_vertices else [])]
        self.labels = read_samples(path, np.arange(self.count), fields)
        self.heatmaps = need_heatmaps

    def image_scale(self) -> np.ndarray:
        """(N,) original-image pixels per crop pixel (1 where the crop has no source image, as for synthetic)."""
        side = self.labels["crop_box"][:, 2].astype(np.float64)
        return np.where(np.isfinite(side) & (side > 0), side / CROP_SIZE, 1.0)


def _fields(test: TestSet) -> tuple[str, ...]:
    """The prediction fields the metrics need (vertices only where the test set has them: they are big)."""
    return ("params", "keypoints_2d", "keypoints_3d", *(("vertices",) if test.has_vertices else ()))


def _predict(model, test: TestSet, batch_size: int) -> dict[str, np.ndarray]:
    """Predictions for every crop, read from the file batch by batch."""
    with open_packed(test.path) as f:
        maps = f["heatmaps"] if test.heatmaps else None
        return predict_crops(model, f["images"], maps, batch_size, progress="evaluate", fields=_fields(test))


def _with_protocol(result: dict, protocol: str) -> dict:
    return {"protocol": PROTOCOLS[protocol], **result}


def _score_2d(pred: dict, test: TestSet) -> dict:
    gt = test.labels["keypoints_2d"].astype(np.float64)
    visible = gt[..., 2] > 0
    scale = test.image_scale()[:, None, None]
    return {
        "pck_2d_image_px": _with_protocol(
            metrics.pck_2d(pred["keypoints_2d"] * scale, gt[..., :2] * scale, visible), "pck_2d"
        ),
        "pck_2d_crop_px": _with_protocol(metrics.pck_2d(pred["keypoints_2d"], gt, visible), "pck_2d"),
    }


def _score_3d(pred: dict, test: TestSet, root: str, palm_factor: float) -> dict:
    rows = test.labels["has_3d"].astype(bool)
    if not rows.any():
        return {}
    gt = test.labels["keypoints_3d"][rows].astype(np.float64)
    kp = pred["keypoints_3d"][rows].astype(np.float64)
    scores = {
        "pck_3d": _with_protocol(metrics.pck_3d(kp, gt, root=root, palm_factor=palm_factor), "pck_3d"),
        "mpjpe_mm": 1000.0
        * metrics.mpjpe(metrics.root_relative(kp, root, palm_factor), metrics.root_relative(gt, root, palm_factor)),
    }
    verts = None
    if test.has_vertices:
        gt_verts = test.labels["vertices"][rows].astype(np.float64)
        if gt_verts.shape[1] == pred["vertices"].shape[1] and np.isfinite(gt_verts).all():
            verts = (pred["vertices"][rows].astype(np.float64), gt_verts)
    freihand = metrics.freihand_scores(kp, gt, *(verts or ()))
    freihand.pop("mpjpe_mm", None)  # unaligned errors need absolute positions: the weak-perspective model has none
    freihand.pop("mpvpe_mm", None)
    scores["freihand"] = _with_protocol(freihand, "freihand")
    return scores


def score(pred: dict, test: TestSet, root: str = "wrist", palm_factor: float = metrics.STB_PALM_FACTOR) -> dict:
    """All metrics of predictions (see :mod:`hand3d.inference`) against a test set's labels."""
    return {**_score_2d(pred, test), **_score_3d(pred, test, root, palm_factor)}


# The curves a PCK plot draws: scores key, title, threshold unit (the paper's curves carry theirs), AUC range.
CURVES = (
    ("pck_2d_image_px", "2D PCK (original image pixels)", "px", (0, 30)),
    ("pck_3d", "3D PCK (STB protocol)", "mm", (20, 50)),
)


def _paper_aucs(dataset: str, inputs: str, scores: dict) -> dict:
    curve = paper_curve(dataset, inputs)
    for key, _, unit, (lo, hi) in CURVES:
        if curve is not None and curve.unit == unit and key in scores:
            return {"metric": key, "auc": metrics.auc(curve.thresholds, curve.pck, lo, hi), "source": curve.label}
    return {}


def _panels(dataset: str, inputs: str, model_scores: dict, baseline: dict) -> list[PckPanel]:
    curve = paper_curve(dataset, inputs)
    return [
        PckPanel(title, unit, model_scores[key], baseline[key], curve if curve and curve.unit == unit else None)
        for key, title, unit, _ in CURVES
        if key in model_scores
    ]


def _sample_pair(crop: np.ndarray, gt: dict, pred: dict, overlay: MeshOverlay) -> list[np.ndarray]:
    truth = draw_mask_outline(crop, gt["masks"]) if gt["has_mask"] else crop
    truth = draw_skeleton(truth, gt["keypoints_2d"])
    mesh = screen_vertices(pred["vertices"], pred["params"][:3])
    guess = draw_skeleton(overlay.draw(crop, [mesh]), pred["keypoints_2d"], thickness=1)
    for image, text in ((truth, "ground truth"), (guess, "prediction")):
        cv2.putText(image, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return [truth, guess]


def sample_overlays(model, test: TestSet, params: np.ndarray, out_png: str, count: int = SAMPLE_COUNT) -> None:
    """``count`` evenly spaced test crops: ground truth (skeleton, mask outline) beside the prediction (rendered
    mesh and skeleton, decoded from the predicted ``params`` (N, P)), four pairs per row."""
    rows = np.unique(np.linspace(0, test.count - 1, min(count, test.count)).astype(int))
    data = read_samples(test.path, rows, ["images", "masks", "has_mask", "keypoints_2d"])
    hands = decode_params(model, params[rows], ("params", "vertices", "keypoints_2d"))
    tiles = []
    with MeshOverlay(model.hand.faces, alpha=0.85) as overlay:
        for i in range(len(rows)):
            gt = {key: value[i] for key, value in data.items()}
            tiles += _sample_pair(data["images"][i], gt, {key: value[i] for key, value in hands.items()}, overlay)
    grid = tile(tiles, columns=min(8, len(tiles)))
    write_rgb(out_png, grid)


def evaluate(
    model_path: str,
    test_h5: str,
    out_json: str,
    out_plot: str,
    out_samples: str,
    dataset: str,
    hand_model: str | None = None,
    palm_factor: float | None = None,
    batch_size: int = 64,
    device: str = "auto",
) -> dict:
    """Metrics of the model and of the mean-hand baseline on a test set, with the plots; returns the JSON record.

    ``palm_factor``: STB's wrist-from-palm factor (None: :data:`metrics.STB_PALM_FACTOR`); other sets ignore it.
    """
    palm_factor = metrics.STB_PALM_FACTOR if palm_factor is None else palm_factor
    model = open_model(model_path, hand_model, device)
    inputs = model.config["inputs"]
    test = TestSet(test_h5, need_heatmaps=model.uses_heatmaps)
    pred = _predict(model, test, batch_size)
    root = stb_root(dataset)
    model_scores = score(pred, test, root, palm_factor)
    baseline = score(mean_hand_predictions(model, test.count, _fields(test)), test, root, palm_factor)
    record = {
        "model": str(model_path),
        "test_set": str(test_h5),
        "dataset": dataset,
        "inputs": inputs,
        "samples": test.count,
        "samples_3d": int(test.labels["has_3d"].sum()),
        "root": root,
        "protocols": PROTOCOLS,
        "scores": {"model": model_scores, "mean_hand": baseline},
        "paper": _paper_aucs(dataset, inputs, model_scores),
    }
    title = f"{Path(model_path).parent.name} on {dataset} test ({test.count} samples)"
    plot_pck(_panels(dataset, inputs, model_scores, baseline), out_plot, title)
    sample_overlays(model, test, pred["params"], out_samples)
    atomic_write_json(out_json, record, indent=1)
    return record
