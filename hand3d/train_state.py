"""Resumable training state: saved atomically in a side directory, reused only under the same hyperparameters.

Snakemake deletes a job's declared outputs before it runs, so the state lives beside them (``state_dir``, given
through ``params``): ``state.pt`` (weights, optimizer, scheduler, step, history so far, signature) and
``history.csv`` (the rows so far, for watching a run). The signature is a SHA-256 of everything that changes what
the run computes (the settings, the contents of its inputs, the number of processes); a state with another
signature is ignored, never half-reused.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import torch

from hand3d.atomic import atomic_torch_save, atomic_write
from hand3d.h5io import fields_checksum

__all__ = ["file_digest", "input_digest", "load_state", "save_state", "signature", "write_history"]

STATE_FILE = "state.pt"
HISTORY_FILE = "history.csv"
log = logging.getLogger(__name__)


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_digest(path: str | os.PathLike, fields: Sequence[str] | None = None) -> str:
    """Of a packed file, the stored digest of the ``fields`` the run reads (``field_sha256``), else of its whole
    content (``content_sha256``; cheap: no reread); of any other file, the SHA-256 of its bytes."""
    if h5py.is_hdf5(path):
        if fields is not None and (stored := fields_checksum(path, fields)) is not None:
            return stored
        with h5py.File(path, "r") as f:
            stored = f.attrs.get("content_sha256")
        if stored:
            return str(stored)
    return file_digest(path)


def signature(settings: Mapping, digests: Sequence[str], world_size: int) -> str:
    """SHA-256 of the settings (canonical JSON), the inputs' digests (:func:`input_digest`) and the number of
    processes."""
    record = {"settings": settings, "inputs": list(digests), "world_size": world_size}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def save_state(state_dir: str | os.PathLike, state: dict) -> None:
    """Write ``state.pt`` atomically (a kill mid-write leaves the previous state)."""
    atomic_torch_save(Path(state_dir) / STATE_FILE, state)


def load_state(state_dir: str | os.PathLike, expected_signature: str) -> dict | None:
    """The saved state when it exists and has ``expected_signature``; else None (and why, in the log)."""
    path = Path(state_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a state we cannot read is a state we do not have
        log.warning("%s: unreadable training state, starting afresh (%s)", path, error)
        return None
    if not isinstance(state, dict) or state.get("signature") != expected_signature:
        log.warning("%s: saved by a run with other settings or inputs; starting afresh", path)
        return None
    log.info("%s: resuming at step %d", path, state["step"])
    return state


def write_history(path: str | os.PathLike, columns: Sequence[str], rows: Sequence[Sequence[float]]) -> None:
    """history.csv: a header, then one row per logged step (atomically)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(columns)
            writer.writerows([[f"{v:.6g}" if isinstance(v, float) else v for v in row] for row in rows])

    atomic_write(path, write)
