"""The hand model file: `MANO_RIGHT.npz` in MANO's layout, from a user's MANO pickle or the procedural hand.

The npz holds plain arrays only (it loads with `allow_pickle=False`) under MANO's key names, so
`smplx.MANO(path, ext="npz")` reads it, plus `J`, `tip_vertex_ids` (thumb, index, middle, ring, little) and
provenance: `source` ("mano_pkl" or "procedural"), `source_md5` of the pickle, `generator_version`.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from hand3d.atomic import atomic_write
from hand3d.model_layout import MANO_KEYS, check_mano_layout

log = logging.getLogger(__name__)

# FreiHAND's fingertip vertices of the real MANO mesh (thumb, index, middle, ring, little): its benchmark's
# ground truth is built with them (Zimmermann et al., ICCV 2019, lmb-freiburg/freihand).
MANO_TIP_VERTEX_IDS = np.array([744, 320, 443, 555, 672], dtype=np.int64)

DEFAULT_MODEL_PATH = "results/hand_model/MANO_RIGHT.npz"


def save_hand_model(path: str | os.PathLike, arrays: dict, **provenance: str | int) -> None:
    """Validate and write a hand model npz atomically (compressed; posedirs of zeros cost nothing)."""
    arrays = {**arrays, **{k: np.array(v) for k, v in provenance.items()}}
    check_hand_model(arrays, str(path))
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays))


def load_hand_model_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a hand model npz without unpickling anything, and check its layout."""
    try:
        arrays = _npz_arrays(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: hand model file not found (the workflow builds one: `snakemake --cores 1 {DEFAULT_MODEL_PATH}`)"
        ) from None
    except Exception as error:  # numpy, zipfile and zlib raise many kinds for a damaged or pickled file
        reason = str(error).split(". ")[0] or type(error).__name__  # less numpy's advice to allow pickles
        raise ValueError(f"{path}: not a readable hand model npz of plain arrays ({reason})") from error
    check_hand_model(arrays, str(path))
    return arrays


def _npz_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"one {data.dtype} array of shape {data.shape}, not an archive of named arrays")
    with data:
        return {key: data[key] for key in data.files}


def check_hand_model(arrays: dict, where: str) -> None:
    """Raise ValueError naming `where` and the key when the arrays are not a consistent MANO-layout model."""
    check_mano_layout(where, arrays)
    tips = arrays.get("tip_vertex_ids")
    num_verts = len(arrays["v_template"])
    if tips is None or tips.shape != (5,) or tips.dtype.kind not in "iu" or tips.min() < 0 or tips.max() >= num_verts:
        raise ValueError(f"{where}: key 'tip_vertex_ids' must be 5 vertex indices below {num_verts}")


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
        from hand3d.handedness import check_right_hand
        from hand3d.mano_pickle import file_md5, load_mano_pickle

        arrays = {k: v for k, v in load_mano_pickle(mano_pkl).items() if k in MANO_KEYS or k == "J"}
        check_right_hand(mano_pkl, arrays)
        arrays["tip_vertex_ids"] = MANO_TIP_VERTEX_IDS
        provenance = {"source": "mano_pkl", "source_md5": file_md5(mano_pkl), "generator_version": 0}
    else:
        from hand3d.procedural_hand import build_procedural_hand
        from hand3d.versions import HAND_MODEL

        arrays = build_procedural_hand()
        provenance = {"source": "procedural", "source_md5": "", "generator_version": HAND_MODEL}
    from hand3d.hand_stats import mesh_statistics

    statistics = mesh_statistics(arrays)  # before writing: a model it cannot measure leaves no file behind
    save_hand_model(npz_path, arrays, **provenance)
    write_obj(obj_path, arrays["v_template"], arrays["f"])
    log.info("hand model from %s written to %s: %s", provenance["source"], npz_path, statistics)
    return arrays
