"""The hand model file: `MANO_RIGHT.npz` in MANO's layout, from a user's MANO pickle or the procedural hand.

The npz holds plain arrays only (it loads with `allow_pickle=False`) under MANO's key names, so
`smplx.MANO(path, ext="npz")` reads it, plus `J`, `tip_vertex_ids` (thumb, index, middle, ring, little) and
provenance: `source` ("mano_pkl" or "procedural"), `source_md5` of the pickle, `generator_version`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# FreiHAND's fingertip vertices of the real MANO mesh (thumb, index, middle, ring, little): its benchmark's
# ground truth is built with them (Zimmermann et al., ICCV 2019, lmb-freiburg/freihand).
MANO_TIP_VERTEX_IDS = np.array([744, 320, 443, 555, 672], dtype=np.int64)

DEFAULT_MODEL_PATH = "results/hand_model/MANO_RIGHT.npz"

REQUIRED_KEYS = (
    "v_template",
    "f",
    "weights",
    "J_regressor",
    "kintree_table",
    "shapedirs",
    "posedirs",
    "hands_components",
    "hands_mean",
    "tip_vertex_ids",
)


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call write(tmp_path) on a temporary file beside `path`, then rename it over `path`.

    A killed job leaves no half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_hand_model(path: str | os.PathLike, arrays: dict, **provenance: str | int) -> None:
    """Validate and write a hand model npz atomically (compressed; posedirs of zeros cost nothing)."""
    arrays = {**arrays, **{k: np.array(v) for k, v in provenance.items()}}
    check_hand_model(arrays, str(path))
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays))


def load_hand_model_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a hand model npz without unpickling anything, and check its layout."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: hand model file not found (the workflow builds one: `snakemake {DEFAULT_MODEL_PATH}`)"
        ) from None
    except ValueError as error:
        raise ValueError(f"{path}: not a hand model npz of plain arrays ({error})") from error
    check_hand_model(arrays, str(path))
    return arrays


def check_hand_model(arrays: dict, where: str) -> None:
    """Raise ValueError naming `where` and the key when the arrays are not a consistent MANO-layout model."""
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{where}: hand model lacks {', '.join(missing)}")
    num_verts = arrays["v_template"].shape[0]
    num_joints = arrays["kintree_table"].shape[1]
    expected = {
        "v_template": (num_verts, 3),
        "weights": (num_verts, num_joints),
        "J_regressor": (num_joints, num_verts),
        "hands_components": (45, 45),
        "hands_mean": (45,),
        "tip_vertex_ids": (5,),
    }
    for key, shape in expected.items():
        if arrays[key].shape != shape:
            raise ValueError(f"{where}: {key} has shape {arrays[key].shape}, expected {shape}")
    for key in ("shapedirs", "posedirs"):
        if arrays[key].ndim != 3 or arrays[key].shape[:2] != (num_verts, 3):
            raise ValueError(f"{where}: {key} has shape {arrays[key].shape}, expected ({num_verts}, 3, k)")
    faces = arrays["f"]
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 or faces.max() >= num_verts:
        raise ValueError(f"{where}: f must be (F, 3) vertex indices below {num_verts}")
    if arrays["tip_vertex_ids"].max() >= num_verts:
        raise ValueError(f"{where}: tip_vertex_ids index past the {num_verts} vertices")


def write_obj(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write a triangle mesh as Wavefront OBJ (1-based faces), atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as out:
            out.write(f"# hand3d mesh: {len(vertices)} vertices, {len(faces)} faces, metres\n")
            np.savetxt(out, vertices, fmt="v %.6f %.6f %.6f")
            np.savetxt(out, np.asarray(faces, dtype=np.int64) + 1, fmt="f %d %d %d")

    atomic_write(path, write)


def build_hand_model(npz_path: str, obj_path: str, mano_pkl: str | None = None) -> dict[str, np.ndarray]:
    """Write `MANO_RIGHT.npz` and its template OBJ: converted from `mano_pkl` if given, else procedural."""
    if mano_pkl:
        from hand3d.mano_pickle import file_md5, load_mano_pickle

        arrays = {k: v for k, v in load_mano_pickle(mano_pkl).items() if k in REQUIRED_KEYS or k == "J"}
        arrays["tip_vertex_ids"] = MANO_TIP_VERTEX_IDS
        provenance = {"source": "mano_pkl", "source_md5": file_md5(mano_pkl), "generator_version": 0}
    else:
        from hand3d.procedural_hand import build_procedural_hand
        from hand3d.versions import HAND_MODEL

        arrays = build_procedural_hand()
        provenance = {"source": "procedural", "source_md5": "", "generator_version": HAND_MODEL}
    save_hand_model(npz_path, arrays, **provenance)
    write_obj(obj_path, arrays["v_template"], arrays["f"])
    from hand3d.hand_stats import mesh_statistics

    log.info("hand model from %s written to %s: %s", provenance["source"], npz_path, mesh_statistics(arrays))
    return arrays
