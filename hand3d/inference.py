"""Batched inference: a trained model on 320-pixel crops, and the mean-hand baseline.

Predictions come back as numpy arrays (float32) with the :class:`~hand3d.model.Prediction` fields: ``params``
(N, P), ``vertices`` (N, V, 3) and ``keypoints_3d`` (N, 21, 3) in metres (camera axes, OpenCV convention, about the
hand model's own origin: weak perspective gives no depth), ``keypoints_2d`` (N, 21, 2) and ``vertices_2d`` (N, V, 2)
in crop pixels.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from hand3d.distributed import pick_device
from hand3d.file_summary import file_in_folder
from hand3d.model import HandRegressor, load_model

__all__ = ["FIELDS", "decode_params", "mean_hand_predictions", "open_model", "predict_crops"]

FIELDS = ("params", "vertices", "keypoints_3d", "keypoints_2d", "vertices_2d")


def open_model(
    model_path: str | os.PathLike, hand_model: str | os.PathLike | None = None, device: str = "auto"
) -> HandRegressor:
    """A saved model in eval mode on ``device`` ("auto": CUDA if present); see :func:`hand3d.model.load_model`.

    A run's folder (``results/models/<experiment>``) stands for the ``model.pt`` in it.
    """
    model_path = file_in_folder(model_path, ("model.pt",))
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path}: model file not found")
    return load_model(model_path, hand_model=hand_model, map_location=pick_device(device))


def _batches(count: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, count, batch_size):
        yield slice(start, min(start + batch_size, count))


def _to_numpy(prediction, fields: Iterable[str] = FIELDS) -> dict[str, np.ndarray]:
    return {name: getattr(prediction, name).float().cpu().numpy() for name in fields}


def _gather(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


@torch.no_grad()
def predict_crops(
    model: HandRegressor,
    images: np.ndarray,
    heatmaps: np.ndarray | None = None,
    batch_size: int = 64,
    progress: str | None = None,
    fields: Iterable[str] = FIELDS,
) -> dict[str, np.ndarray]:
    """Run ``model`` on RGB crops (N, H, W, 3) uint8 (and heatmaps (N, 21, h, w) uint8 for RGB+2D models), arrays
    or anything sliced into them batch by batch (h5py datasets: a packed file is read one batch at a time).

    ``fields``: which outputs to keep (the vertices of a large set are big; they can be decoded from ``params``).
    """
    device = next(model.parameters()).device
    parts = []
    for rows in tqdm(list(_batches(len(images), batch_size)), desc=progress, disable=progress is None):
        x = torch.from_numpy(np.ascontiguousarray(images[rows])).to(device).permute(0, 3, 1, 2)
        maps = None if heatmaps is None else torch.from_numpy(np.ascontiguousarray(heatmaps[rows])).to(device)
        parts.append(_to_numpy(model(x, maps), fields))
    if not parts:
        raise ValueError("no crops to predict")
    return _gather(parts)


@torch.no_grad()
def decode_params(model: HandRegressor, params: np.ndarray, fields: Iterable[str] = FIELDS) -> dict[str, np.ndarray]:
    """The hand (``fields`` of a prediction) of parameter vectors (N, P)."""
    device = next(model.parameters()).device
    return _to_numpy(model.decode(torch.as_tensor(params, device=device)), fields)


@torch.no_grad()
def mean_hand_predictions(model: HandRegressor, count: int, fields: Iterable[str] = FIELDS) -> dict[str, np.ndarray]:
    """The trivial baseline: the model's mean hand (what the untrained network predicts) for each of ``count``
    crops, palm-facing, centred in the crop."""
    one = _to_numpy(model.decode(model.mean[None]), fields)
    return {name: np.repeat(value, count, axis=0) for name, value in one.items()}
