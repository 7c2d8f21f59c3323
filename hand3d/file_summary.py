"""What ``hand3d inspect`` says about a file: a hand model, a packed dataset, a trained model or a training state.

The kind comes from the content, not the name: HDF5 is a packed dataset (DESIGN section 2); a zip archive of
``.npy`` members is a hand model npz; a zip archive holding ``data.pkl`` is a torch file, read with
``weights_only=True`` and told apart by its keys (``config``/``state_dict``: a ``model.pt``; ``signature``/``step``:
a training ``state.pt``). Each summary is a JSON-ready dict whose ``kind`` names what the file is.
"""

from __future__ import annotations

import csv
import os
import zipfile
from pathlib import Path

import h5py
import numpy as np

from hand3d.metrics import MIDDLE_MCP, WRIST

__all__ = ["file_in_folder", "file_kind", "summarise"]

HAND_MODEL, PACKED, MODEL, STATE = "hand model", "packed dataset", "model", "training state"
TORCH = "torch file"


def file_kind(path: str | os.PathLike) -> str:
    """:data:`HAND_MODEL`, :data:`PACKED` or :data:`TORCH`; an error naming the file for anything else."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"{path}: a folder without a state.pt or model.pt; inspect takes a hand model (.npz), a packed dataset "
            "(.h5), a trained model (model.pt) or a training state (state.pt)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if h5py.is_hdf5(path):
        return PACKED
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
        if members and all(name.endswith(".npy") for name in members):
            return HAND_MODEL
        if any(name == "data.pkl" or name.endswith("/data.pkl") for name in members):
            return TORCH
    raise ValueError(
        f"{path}: not a file hand3d knows; inspect takes a hand model (.npz), a packed dataset (.h5), "
        "a trained model (model.pt) or a training state (state.pt)"
    )


def file_in_folder(path: str | os.PathLike, names: tuple[str, ...] = ("state.pt", "model.pt")) -> Path:
    """A folder stands for the first of ``names`` it holds (a run's state folder for its ``state.pt``, a run's folder
    for its ``model.pt``); any other path for itself."""
    inside = [Path(path) / name for name in names] if Path(path).is_dir() else []
    return next((file for file in inside if file.is_file()), Path(path))


def summarise(path: str | os.PathLike, verify_checksum: bool = True) -> dict:
    """The summary of any file :func:`file_kind` knows (or of the ``state.pt`` or ``model.pt`` in a folder);
    ``verify_checksum`` rereads a packed file's data."""
    path = file_in_folder(path)
    kind = file_kind(path)
    if kind == HAND_MODEL:
        return hand_model_summary(path)
    if kind == PACKED:
        return packed_summary(path, verify_checksum)
    return torch_file_summary(path)


# ---------------------------------------------------------------- hand models


def hand_model_summary(path: str | os.PathLike) -> dict:
    """Provenance and mesh statistics (:func:`hand3d.hand_stats.mesh_statistics`)."""
    from hand3d.hand_model import load_hand_model_arrays
    from hand3d.hand_stats import mesh_statistics

    arrays = load_hand_model_arrays(path)
    provenance = {k: arrays[k].item() for k in ("source", "source_md5", "generator_version") if k in arrays}
    return {"kind": HAND_MODEL, "path": str(path), **provenance, **mesh_statistics(arrays)}


# ---------------------------------------------------------------- packed datasets

FLAGS = ("has_mask", "has_3d", "has_params", "is_left")


def packed_summary(path: str | os.PathLike, verify_checksum: bool = True) -> dict:
    """:func:`hand3d.h5io.validate_packed`'s summary, plus what the labels hold: samples with each flag, visible
    keypoints, the hands' extent in the crop and their 3D size (a check of units: metres, camera frame)."""
    from hand3d.h5io import open_packed, read_field, validate_packed

    summary = validate_packed(path, verify_checksum=verify_checksum)
    with open_packed(path) as f:
        flags = {name: f[name][:] for name in FLAGS}
        keypoints_2d, keypoints_3d = f["keypoints_2d"][:], f["keypoints_3d"][:]
        version = str(f.attrs["hand3d_version"])
        first_names = list(read_field(f["names"], slice(0, 3)))
    return {
        "kind": PACKED,
        **summary,
        "checksum_verified": verify_checksum,
        "hand3d_version": version,
        "samples_with": {name: int(values.sum()) for name, values in flags.items()},
        "keypoints_2d": keypoints_2d_summary(keypoints_2d),
        "keypoints_3d": keypoints_3d_summary(keypoints_3d[flags["has_3d"]]),
        "first_names": first_names,
    }


def keypoints_2d_summary(keypoints: np.ndarray) -> dict:
    """(N, 21, 3) crop pixels + visibility: visible keypoints per sample, samples with none, and the median side of
    the visible keypoints' bounding box (crop pixels; the crop is 320)."""
    visible = keypoints[..., 2] > 0
    counts = visible.sum(axis=1)
    sides = [
        _extent(points[shown]) for points, shown in zip(keypoints[..., :2], visible, strict=True) if shown.sum() > 1
    ]
    return {
        "visible_per_sample": round(float(counts.mean()), 2) if len(counts) else None,
        "samples_without_visible": int((counts == 0).sum()),
        "extent_px_median": round(float(np.median(sides)), 1) if sides else None,
    }


def _extent(points: np.ndarray) -> float:
    return float((points.max(axis=0) - points.min(axis=0)).max())


def keypoints_3d_summary(keypoints: np.ndarray) -> dict:
    """(M, 21, 3) metres, samples with 3D only: median wrist depth and median wrist-to-middle-MCP length (about
    9 cm on an adult hand, so a figure 1000 times off means millimetres)."""
    if not len(keypoints):
        return {"samples": 0}
    palm = np.linalg.norm(keypoints[:, MIDDLE_MCP] - keypoints[:, WRIST], axis=1)
    return {
        "samples": len(keypoints),
        "wrist_depth_m_median": round(float(np.nanmedian(keypoints[:, WRIST, 2])), 4),
        "wrist_to_middle_mcp_mm_median": round(float(np.nanmedian(palm)) * 1000, 1),
    }


# ---------------------------------------------------------------- models and training states


def torch_file_summary(path: str | os.PathLike) -> dict:
    """A ``model.pt`` (:func:`hand3d.model.save_model`) or a training ``state.pt`` (:mod:`hand3d.train_state`),
    loaded with ``weights_only=True``."""
    from hand3d.model import read_torch_file

    content = read_torch_file(path, "cpu", "a hand3d model or training state")
    if isinstance(content, dict) and {"config", "state_dict"} <= content.keys():
        return model_summary(path, content)
    if isinstance(content, dict) and {"signature", "step", "model"} <= content.keys():
        return state_summary(path, content)
    keys = sorted(content) if isinstance(content, dict) else type(content).__name__
    raise ValueError(f"{path}: a torch file, but neither a hand3d model nor a training state (it holds {keys})")


def model_summary(path: str | os.PathLike, checkpoint: dict) -> dict:
    """How the model was built and trained, its size, and whether its hand model is found from here."""
    from hand3d.model import check_checkpoint, find_hand_model

    check_checkpoint(path, checkpoint)
    config = dict(checkpoint["config"])
    try:
        hand_model = str(find_hand_model(path, config["hand_model"]))
    except FileNotFoundError:
        hand_model = None
    return {
        "kind": MODEL,
        "path": str(path),
        "config": config,
        "meta": dict(checkpoint.get("meta", {})),
        "parameters": _parameter_count(checkpoint["state_dict"]),
        "hand_model_found": hand_model,
        "last_logged": last_logged(path),
    }


def state_summary(path: str | os.PathLike, state: dict) -> dict:
    """Where a (possibly interrupted) run stands: its step, signature, logged rows and learning rate."""
    groups = state.get("optimizer", {}).get("param_groups", [])
    return {
        "kind": STATE,
        "path": str(path),
        "step": int(state["step"]),
        "signature": str(state["signature"]),
        "history_rows": len(state.get("history", [])),
        "lr": float(groups[0]["lr"]) if groups else None,
        "parameters": _parameter_count(state["model"]),
        "last_logged": last_logged(path),
    }


def last_logged(path: str | os.PathLike) -> dict | None:
    """The last row of the ``history.csv`` beside a model or state file (step, learning rate, every loss term,
    images/s, the ms a step waited for data), or None where there is none."""
    history = Path(path).parent / "history.csv"
    if not history.is_file():
        return None
    with open(history, newline="") as stream:
        rows = list(csv.DictReader(stream))
    return {name: float(value) for name, value in rows[-1].items()} if rows else None


HEAD_BUFFERS = ("mean", "scale")  # HandRegressor's fixed offset and scale of the head's output
BATCH_NORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _parameter_count(state_dict: dict) -> int:
    """The trainable numbers: the state dict less the hand layer's arrays (``hand.*``), the head's buffers and the
    batch-norm statistics."""
    return int(sum(tensor.numel() for name, tensor in state_dict.items() if not _is_buffer(name)))


def _is_buffer(name: str) -> bool:
    return name.startswith("hand.") or name in HEAD_BUFFERS or name.endswith(BATCH_NORM_BUFFERS)
