"""FreiHAND's benchmark, offline: predictions in its published format, and its evaluation without the server.

Prediction format (the FreiHAND competition's ``pred.json``): ``[xyz_list, verts_list]``, one entry per evaluation
image in id order, ``xyz`` 21 x 3 keypoints (OpenPose order) and ``verts`` V x 3 mesh vertices (778 for MANO), in
metres in the camera frame. The ground truth: ``FreiHAND_pub_v2_eval/evaluation_{xyz,verts}.json``.

Our weak-perspective model predicts root-relative 3D; :func:`predict_freihand` places it in the camera frame with
the published intrinsics (``evaluation_K.json``, see :func:`hand3d.camera.lift_weak_perspective`). The
Procrustes-aligned scores (the benchmark's headline) do not depend on that placement; the unaligned ones do.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hand3d import metrics
from hand3d.atomic import atomic_write_json
from hand3d.camera import lift_weak_perspective
from hand3d.crop import camera_from_crop, crop_image, whole_image_box
from hand3d.datasets.freihand import read_annotation_file
from hand3d.image_io import read_rgb
from hand3d.inference import open_model, predict_crops
from hand3d.json_input import read_json
from hand3d.paper_reference import FREIHAND

__all__ = ["evaluate_freihand", "load_prediction", "predict_freihand"]

PROTOCOL = (
    "FreiHAND evaluation protocol (its official eval.py, offline): per sample, keypoints and vertices each aligned "
    "to the ground truth by a similarity Procrustes fit; PA-MPJPE / PA-MPVPE in mm; F@5 mm and F@15 mm "
    "(nearest-point precision and recall, strict <) on the aligned vertices; AUC of the aligned keypoint PCK "
    "over 0-50 mm (100 thresholds); unaligned MPJPE / MPVPE in the camera frame"
)


def _points(values, path, what: str, count: int | None = None) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {what} is not a list of equally sized point lists ({error})") from error
    if array.ndim != 3 or array.shape[2] != 3 or (count is not None and array.shape[1] != count):
        want = f"N x {count or 'V'} x 3"
        raise ValueError(f"{path}: {what} must be {want} points, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: {what} holds NaN or infinite values")
    return array


def load_prediction(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(xyz (N, 21, 3), verts (N, V, 3)) from a ``pred.json`` in FreiHAND's format, checked."""
    data = read_json(path, "FreiHAND prediction file", list, "it must be a JSON list")
    if len(data) != 2:
        raise ValueError(f"{path}: a FreiHAND prediction file is [xyz_list, verts_list], got a list of {len(data)}")
    xyz = _points(data[0], path, "xyz_list", 21)
    verts = _points(data[1], path, "verts_list")
    if len(xyz) != len(verts):
        raise ValueError(f"{path}: {len(xyz)} keypoint sets but {len(verts)} vertex sets")
    return xyz, verts


def _ground_truth(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    xyz_path, verts_path = folder / "evaluation_xyz.json", folder / "evaluation_verts.json"
    for path in (xyz_path, verts_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; --gt must be the FreiHAND_pub_v2_eval folder")
    xyz = _points(read_annotation_file(xyz_path), xyz_path, "evaluation_xyz", 21)
    verts = _points(read_annotation_file(verts_path), verts_path, "evaluation_verts")
    return xyz, verts


def evaluate_freihand(pred_json: str, gt_folder: str, out_json: str | None = None) -> dict:
    """Score a ``pred.json`` against the FreiHAND evaluation annotations; write the scores to ``out_json``.

    The mesh scores need the prediction's vertices to be MANO's (as many as the ground truth's); otherwise they are
    left out and ``mesh_skipped`` says why.
    """
    pred_xyz, pred_verts = load_prediction(pred_json)
    gt_xyz, gt_verts = _ground_truth(Path(gt_folder))
    if len(pred_xyz) != len(gt_xyz):
        raise ValueError(f"{pred_json}: {len(pred_xyz)} predictions for {len(gt_xyz)} evaluation samples")
    record = {"protocol": PROTOCOL, "prediction": str(pred_json), "ground_truth": str(gt_folder)}
    if pred_verts.shape[1] == gt_verts.shape[1]:
        record["scores"] = metrics.freihand_scores(pred_xyz, gt_xyz, pred_verts, gt_verts)
    else:
        record["scores"] = metrics.freihand_scores(pred_xyz, gt_xyz)
        record["mesh_skipped"] = (
            f"the predicted meshes have {pred_verts.shape[1]} vertices, the ground truth {gt_verts.shape[1]}: "
            "vertex scores need the model trained with MANO"
        )
    record["paper"] = {"source": "Boukhayma et al. as evaluated in the FreiHAND paper (Zimmermann et al. 2019)"}
    record["paper"].update(FREIHAND)
    if out_json:
        atomic_write_json(out_json, record, indent=1)
    return record


def _evaluation_images(root: Path) -> tuple[list[Path], np.ndarray]:
    K_path = root / "evaluation_K.json"
    if not K_path.is_file():
        raise FileNotFoundError(f"{K_path}: not found; give the FreiHAND_pub_v2 folder")
    Ks = np.asarray(read_annotation_file(K_path), dtype=np.float64)
    images = [root / "evaluation" / "rgb" / f"{i:08d}.jpg" for i in range(len(Ks))]
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: {len(missing)} evaluation images missing, e.g. {missing[0]}")
    return images, Ks


def _read_rgb(path: Path) -> np.ndarray:
    image = read_rgb(path)
    if image is None:
        raise ValueError(f"{path}: not a readable image (the benchmark needs a prediction for every image)")
    return image


def predict_freihand(
    model_path: str,
    root: str,
    out_json: str,
    batch_size: int = 32,
    device: str = "auto",
    hand_model: str | None = None,
) -> int:
    """Predict every FreiHAND evaluation image (``<root>/evaluation/rgb``, whole image as the crop) and write
    ``pred.json`` in the benchmark's format; returns the number of samples."""
    model = open_model(model_path, hand_model, device)
    if model.uses_heatmaps:
        raise ValueError(f"{model_path}: an rgb+2d model needs 2D detections; FreiHAND's benchmark format is RGB-only")
    images, Ks = _evaluation_images(Path(root))
    xyz, verts = [], []
    for start in range(0, len(images), batch_size):
        paths = images[start : start + batch_size]
        pixels = [_read_rgb(p) for p in paths]
        boxes = [whole_image_box(p.shape[1], p.shape[0]) for p in pixels]
        pred = predict_crops(model, np.stack([crop_image(p, b) for p, b in zip(pixels, boxes, strict=True)]))
        for i, box in enumerate(boxes):
            camera = camera_from_crop(pred["params"][i, :3], box)
            K = Ks[start + i]
            xyz.append(lift_weak_perspective(pred["keypoints_3d"][i], camera, K).tolist())
            verts.append(lift_weak_perspective(pred["vertices"][i], camera, K).tolist())
    atomic_write_json(out_json, [xyz, verts])
    return len(xyz)
