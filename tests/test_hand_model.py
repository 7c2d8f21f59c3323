"""The hand model file: npz contract, smplx loading, MANO pickle conversion, refusal of unsafe pickles."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch
from py2_pickle import Call, Global, write_mano_like_pickle, write_py2_pickle

from hand3d.hand_model import (
    MANO_TIP_VERTEX_IDS,
    build_hand_model,
    load_hand_model_arrays,
    save_hand_model,
)
from hand3d.handedness import curl_side
from hand3d.mano_pickle import UnsafePickleError, file_md5


def test_npz_loads_in_smplx_as_the_issue_specifies(hand_model_path):
    mano = smplx.MANO(str(hand_model_path), ext="npz", use_pca=True, num_pca_comps=6, flat_hand_mean=False)
    out = mano(hand_pose=torch.zeros(1, 6), betas=torch.zeros(1, 10), global_orient=torch.zeros(1, 3))
    assert out.vertices.shape[1] == mano.v_template.shape[0] and out.joints.shape == (1, 16, 3)


def test_npz_holds_plain_arrays_only(hand_model_path):
    with np.load(hand_model_path, allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)
        assert str(data["source"]) == "procedural"


def test_inconsistent_model_is_refused_with_key_named(tmp_path, procedural_arrays):
    broken = dict(procedural_arrays, weights=procedural_arrays["weights"][:-1])
    with pytest.raises(ValueError, match=r"broken\.npz: key 'weights' has shape"):
        save_hand_model(tmp_path / "broken.npz", broken)
    assert not (tmp_path / "broken.npz").exists()


class _Trap:
    """Unpickled, it would create ``marker``: a stand-in for code a crafted file runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_an_npz_carrying_a_pickled_object_is_refused_unread(tmp_path, procedural_arrays):
    marker, npz = tmp_path / "ran", tmp_path / "crafted.npz"
    np.savez(npz, **procedural_arrays, extra=np.array([_Trap(marker)], dtype=object))
    with pytest.raises(ValueError, match=r"crafted\.npz: not a readable hand model npz of plain arrays"):
        load_hand_model_arrays(npz)
    assert not marker.exists()


def _flip_middle_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


def _npy(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array)
    return stream.getvalue()


# An uncompressed npz of the procedural hand -> the damaged file's bytes, and what the error says.
DAMAGES = {
    "truncated": (lambda npz, arrays: npz[: len(npz) // 2], "File is not a zip file"),
    "empty": (lambda npz, arrays: b"", "No data left in file"),
    "bad_crc": (lambda npz, arrays: _flip_middle_byte(npz), "Bad CRC-32 for file 'posedirs.npy'"),
    "npy_renamed": (lambda npz, arrays: _npy(arrays["v_template"]), r"one float64 array of shape \(\d+, 3\), not an"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_model_file_is_refused_naming_it(tmp_path, procedural_arrays, damage):
    stored = tmp_path / "stored.npz"
    np.savez(stored, **procedural_arrays)  # uncompressed, so a flipped byte fails its member's CRC
    damaged, reason = DAMAGES[damage]
    npz = tmp_path / "MANO_RIGHT.npz"
    npz.write_bytes(damaged(stored.read_bytes(), procedural_arrays))
    with pytest.raises(ValueError, match=rf"MANO_RIGHT\.npz: not a readable hand model npz of plain arrays \({reason}"):
        load_hand_model_arrays(npz)


def test_a_fingertip_id_past_the_last_vertex_is_refused(procedural_arrays):
    from hand3d.hand_model import check_hand_model

    tips = procedural_arrays["tip_vertex_ids"].copy()
    tips[0] = len(procedural_arrays["v_template"])
    with pytest.raises(ValueError, match=r"here: key 'tip_vertex_ids' must be 5 vertex indices below"):
        check_hand_model(dict(procedural_arrays, tip_vertex_ids=tips), "here")


def test_the_fingertip_vertices_are_freihands():
    """Thumb, index, middle, ring, little tips of the real MANO mesh, as FreiHAND's ground truth uses them."""
    assert MANO_TIP_VERTEX_IDS.tolist() == [744, 320, 443, 555, 672]


def test_missing_model_file_error_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        load_hand_model_arrays(tmp_path / "nowhere.npz")


@pytest.fixture(scope="module")
def coarse_hand():
    """A small procedural hand (6 mm grid): the same arrays and structure as MANO's, fewer vertices."""
    from hand3d.procedural_hand import build_procedural_hand

    arrays = build_procedural_hand(grid_spacing=0.006)
    assert len(arrays["v_template"]) > MANO_TIP_VERTEX_IDS.max()
    return arrays


def _mano_like(arrays: dict) -> dict:
    keys = ("v_template", "f", "weights", "J_regressor", "J", "kintree_table", "shapedirs", "posedirs")
    out = {k: arrays[k] for k in keys}
    out.update(hands_components=arrays["hands_components"], hands_mean=arrays["hands_mean"])
    out.update(hands_coeffs=np.zeros((4, 45)), bs_style="lbs", bs_type="lrotmin")
    return out


def test_mano_structured_pickle_converts(tmp_path, coarse_hand):
    pkl = tmp_path / "MANO_RIGHT.pkl"
    write_mano_like_pickle(pkl, _mano_like(coarse_hand), chumpy_keys=("shapedirs",), select_key="J")
    npz, obj = tmp_path / "out" / "MANO_RIGHT.npz", tmp_path / "out" / "template.obj"
    build_hand_model(str(npz), str(obj), mano_pkl=str(pkl))
    arrays = load_hand_model_arrays(npz)
    assert str(arrays["source"]) == "mano_pkl" and str(arrays["source_md5"]) == file_md5(pkl)
    np.testing.assert_array_equal(arrays["tip_vertex_ids"], MANO_TIP_VERTEX_IDS)
    for key in ("v_template", "shapedirs", "weights", "hands_components"):
        np.testing.assert_allclose(arrays[key], coarse_hand[key], err_msg=key)
    np.testing.assert_allclose(arrays["J_regressor"], coarse_hand["J_regressor"])
    smplx.MANO(str(npz), ext="npz", use_pca=True, num_pca_comps=6, flat_hand_mean=False)
    assert obj.read_text().count("\nv ") == len(coarse_hand["v_template"])


def _mirrored(arrays: dict) -> dict:
    """The left hand MANO_LEFT.pkl holds: the right one mirrored in x, faces turned, mean pose mirrored."""
    flip = np.array([-1.0, 1.0, 1.0])
    out = dict(arrays, v_template=arrays["v_template"] * flip, J=arrays["J"] * flip, f=arrays["f"][:, ::-1].copy())
    out["shapedirs"] = arrays["shapedirs"] * flip[:, None]
    out["hands_mean"] = (arrays["hands_mean"].reshape(-1, 3) * np.array([1.0, -1.0, -1.0])).ravel()
    return out


def test_a_pickle_with_a_nan_vertex_leaves_no_model_behind(tmp_path, coarse_hand):
    pkl = tmp_path / "MANO_RIGHT.pkl"
    v_template = coarse_hand["v_template"].copy()
    v_template[3, 1] = np.nan
    write_mano_like_pickle(pkl, dict(_mano_like(coarse_hand), v_template=v_template))
    npz, obj = tmp_path / "MANO_RIGHT.npz", tmp_path / "template.obj"
    with pytest.raises(ValueError, match=r"MANO_RIGHT\.pkl: key 'v_template' holds 1 non-finite value"):
        build_hand_model(str(npz), str(obj), mano_pkl=str(pkl))
    assert not npz.exists() and not obj.exists()
    with pytest.raises(ValueError, match=r"MANO_RIGHT\.npz: key 'v_template' holds 1 non-finite value"):
        save_hand_model(npz, dict(coarse_hand, v_template=v_template))
    assert not npz.exists()


def test_a_left_hand_pickle_is_refused_naming_it(tmp_path, coarse_hand):
    assert curl_side(coarse_hand) < -0.9  # the right hand's fingers curl away from its back
    assert curl_side(dict(coarse_hand, hands_mean=np.zeros(45))) is None  # a flat mean pose cannot tell
    pkl = tmp_path / "MANO_LEFT.pkl"
    write_mano_like_pickle(pkl, _mirrored(_mano_like(coarse_hand)), chumpy_keys=("shapedirs",), select_key="J")
    npz = tmp_path / "MANO_RIGHT.npz"
    with pytest.raises(ValueError, match=r"MANO_LEFT\.pkl: this is a left-hand model .*cosine \+0\.9"):
        build_hand_model(str(npz), str(tmp_path / "template.obj"), mano_pkl=str(pkl))
    assert not npz.exists()


def test_unsafe_pickle_is_refused_and_nothing_written(tmp_path, coarse_hand):
    marker = tmp_path / "pwned"
    arrays = _mano_like(coarse_hand)
    arrays["bs_style"] = Call(Global("posix", "system"), (f"touch {marker}",))
    pkl = tmp_path / "MANO_RIGHT.pkl"
    write_py2_pickle(pkl, arrays)
    npz = tmp_path / "MANO_RIGHT.npz"
    with pytest.raises(UnsafePickleError, match="posix.system"):
        build_hand_model(str(npz), str(tmp_path / "template.obj"), mano_pkl=str(pkl))
    assert not marker.exists() and not npz.exists()
