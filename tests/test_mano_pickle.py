"""Safe MANO pickle loader: real Python-2-style pickles (py2_pickle.py), real malicious payloads, no mocks."""

from __future__ import annotations

import builtins
import hashlib
import os
import pickle
import pickletools
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from py2_pickle import (
    PY2_MANO_GLOBALS,
    Call,
    Ch,
    CscMatrix,
    Global,
    Select,
    make_mano_like_arrays,
    mano_like_object,
    write_mano_like_pickle,
    write_py2_pickle,
)

from hand3d.mano_pickle import ALLOWED_GLOBALS, UnsafePickleError, file_md5, load_mano_pickle


@pytest.fixture
def arrays() -> dict[str, Any]:
    return make_mano_like_arrays()


@pytest.fixture
def mano_path(tmp_path: Path, arrays: dict[str, Any]) -> Path:
    path = tmp_path / "MANO_RIGHT.pkl"
    write_mano_like_pickle(path, arrays, chumpy_keys=("shapedirs", "posedirs"), select_key="J")
    return path


def _ops(data: bytes) -> list[tuple[str, Any]]:
    return [(op.name, arg) for op, arg, _ in pickletools.genops(data)]


# --- the fixture really looks like the Python 2 file -------------------------------------------------------


def test_fixture_has_python2_mano_structure(mano_path: Path) -> None:
    ops = _ops(mano_path.read_bytes())
    names = {name for name, _ in ops}
    globals_ = {arg for name, arg in ops if name == "GLOBAL"}
    assert ops[0] == ("PROTO", 2)
    assert globals_ == PY2_MANO_GLOBALS
    assert not any("_codecs" in g for g in globals_)
    assert {"SHORT_BINSTRING", "BINSTRING", "NEWOBJ", "BUILD", "REDUCE"} <= names
    assert not names & {
        "BINUNICODE",
        "SHORT_BINUNICODE",
        "BINBYTES",
        "SHORT_BINBYTES",
        "STACK_GLOBAL",
        "FRAME",
    }
    keys = {arg for name, arg in ops if name == "SHORT_BINSTRING"}
    assert {"v_template", "shapedirs", "J_regressor", "_dirty_vars", "x", "idxs", "_shape", "lbs"} <= keys


def test_loader_does_not_import_chumpy(mano_path: Path, monkeypatch) -> None:
    """Not even an attempt: chumpy is not installed here, so a failed import would leave sys.modules unchanged."""
    attempts = []

    class RecordChumpy:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] == "chumpy":
                attempts.append(name)
            return None  # let the other finders decide

    monkeypatch.delitem(sys.modules, "chumpy", raising=False)
    monkeypatch.setattr(sys, "meta_path", [RecordChumpy(), *sys.meta_path])
    load_mano_pickle(mano_path)
    assert attempts == []
    with pytest.raises(ImportError):
        import chumpy  # noqa: F401  the recorder sees imports: this one is recorded
    assert attempts == ["chumpy"]


# --- round trip ---------------------------------------------------------------------------------------------


def test_round_trip_returns_plain_arrays(mano_path: Path, arrays: dict[str, Any]) -> None:
    model = load_mano_pickle(mano_path)
    assert list(model) == list(arrays)
    for key, expected in arrays.items():
        got = model[key]
        if isinstance(expected, str):
            assert got == expected and type(got) is str
            continue
        assert type(got) is np.ndarray, key
        assert got.dtype == expected.dtype, key
        np.testing.assert_array_equal(got, expected, err_msg=key)


def test_csc_regressor_becomes_dense_float64(mano_path: Path, arrays: dict[str, Any]) -> None:
    regressor = load_mano_pickle(mano_path)["J_regressor"]
    assert regressor.dtype == np.float64 and regressor.shape == (16, 30)
    np.testing.assert_array_equal(regressor, arrays["J_regressor"])
    assert 0 < np.count_nonzero(regressor) < regressor.size


def test_kintree_parents_keep_uint32_minus_one(mano_path: Path) -> None:
    parents = load_mano_pickle(mano_path)["kintree_table"][0]
    assert parents.tolist() == [4294967295, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]


def test_select_without_preferred_shape_is_flat_and_nested_chumpy_resolves(
    tmp_path: Path, arrays: dict[str, Any]
) -> None:
    flat = np.arange(20.0)
    idxs = np.array([3, 1, 4, 1, 5, 9, 2, 6], dtype=np.int64)
    obj = mano_like_object(arrays)
    obj["extra_select"] = Select(Ch(Ch(flat.reshape(4, 5))), idxs)
    obj["v_template"] = Ch(Select(Ch(arrays["v_template"].T.copy()), np.arange(90).reshape(3, 30).T.ravel(), (30, 3)))
    path = tmp_path / "nested.pkl"
    write_py2_pickle(path, obj)
    model = load_mano_pickle(path)
    np.testing.assert_array_equal(model["extra_select"], flat[idxs])
    np.testing.assert_array_equal(model["v_template"], arrays["v_template"])


def test_fortran_ordered_array_round_trips(tmp_path: Path, arrays: dict[str, Any]) -> None:
    arrays["posedirs"] = np.asfortranarray(arrays["posedirs"])
    path = tmp_path / "fortran.pkl"
    write_mano_like_pickle(path, arrays)
    np.testing.assert_array_equal(load_mano_pickle(path)["posedirs"], arrays["posedirs"])


def test_python3_pickle_of_plain_arrays_also_loads(tmp_path: Path, arrays: dict[str, Any]) -> None:
    """A model re-saved by Python 3 + numpy 2 (``numpy._core`` globals, BINBYTES) is accepted too."""
    path = tmp_path / "converted.pkl"
    path.write_bytes(pickle.dumps(arrays, protocol=4))
    assert any("numpy._core" in str(arg) for _, arg in _ops(path.read_bytes()))
    np.testing.assert_array_equal(load_mano_pickle(path)["weights"], arrays["weights"])


# --- malicious pickles are refused and run nothing ----------------------------------------------------------


MALICIOUS_GLOBALS = [
    Global("posix", "system"),
    Global("os", "system"),
    Global("builtins", "eval"),
    Global("__builtin__", "exec"),
    Global("subprocess", "Popen"),
    Global("numpy", "load"),
    Global("chumpy.ch", "Ch_evil"),
]


def _attack_args(name: str, marker: Path) -> tuple[Any, ...]:
    """Arguments that would create ``marker`` if the callable were ever run."""
    if name == "system":
        return (f"touch {marker}",)
    if name in ("eval", "exec"):
        return (f"open({str(marker)!r}, 'w').close()",)
    if name == "Popen":
        return (["touch", str(marker)],)
    return (str(marker),)


@pytest.mark.parametrize("func", MALICIOUS_GLOBALS, ids=lambda g: f"{g.module}.{g.name}")
def test_py2_style_malicious_global_is_refused(tmp_path: Path, func: Global) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "MANO_RIGHT.pkl"
    write_py2_pickle(path, Call(func, _attack_args(func.name, marker)))
    with pytest.raises(UnsafePickleError, match=rf"MANO_RIGHT\.pkl: refused global '{func.module}\.{func.name}'"):
        load_mano_pickle(path)
    assert not marker.exists()


class _Evil:
    """What an attacker pickles: ``__reduce__`` names a dangerous callable."""

    def __init__(self, func: Any, args: tuple[Any, ...]) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


@pytest.mark.parametrize("protocol", [0, 2, 5])
@pytest.mark.parametrize("func", [os.system, builtins.eval, subprocess.Popen], ids=["system", "eval", "Popen"])
def test_python3_malicious_pickle_is_refused(tmp_path: Path, protocol: int, func: Any) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    payload = _Evil(func, _attack_args(func.__name__, marker))
    path.write_bytes(pickle.dumps({"v_template": payload}, protocol=protocol))
    with pytest.raises(UnsafePickleError, match=rf"evil\.pkl: refused global '[\w.]+\.{func.__name__}'"):
        load_mano_pickle(path)
    assert not marker.exists()


def test_malicious_global_nested_in_chumpy_state_is_refused(tmp_path: Path, arrays: dict[str, Any]) -> None:
    marker = tmp_path / "pwned"
    obj = mano_like_object(arrays)
    evil = Call(Global("os", "system"), (f"touch {marker}",))
    obj["shapedirs"] = Ch(arrays["shapedirs"], extra_state={"_dirty_vars": evil})
    path = tmp_path / "MANO_RIGHT.pkl"
    write_py2_pickle(path, obj)
    assert "os system" in {arg for name, arg in _ops(path.read_bytes()) if name == "GLOBAL"}
    with pytest.raises(UnsafePickleError, match=r"MANO_RIGHT\.pkl: refused global 'os\.system'.*only .* allowed"):
        load_mano_pickle(path)
    assert not marker.exists()


def test_malicious_global_as_select_source_is_refused(tmp_path: Path, arrays: dict[str, Any]) -> None:
    marker = tmp_path / "pwned"
    obj = mano_like_object(arrays)
    obj["J"] = Select(Call(Global("subprocess", "check_call"), (["touch", str(marker)],)), np.arange(48))
    path = tmp_path / "MANO_RIGHT.pkl"
    write_py2_pickle(path, obj)
    with pytest.raises(UnsafePickleError, match="subprocess.check_call"):
        load_mano_pickle(path)
    assert not marker.exists()


def test_allow_list_is_exactly_the_mano_globals() -> None:
    assert set(ALLOWED_GLOBALS) == {
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.ndarray",
        "numpy.dtype",
        "__builtin__.set",
        "builtins.set",
        "chumpy.ch.Ch",
        "chumpy.reordering.Select",
        "scipy.sparse.csc.csc_matrix",
        "scipy.sparse._csc.csc_matrix",
    }
    assert ALLOWED_GLOBALS["numpy.core.multiarray._reconstruct"] is np.empty(0).__reduce__()[0]
    assert issubclass(UnsafePickleError, ValueError)


# --- malformed but harmless files give clear errors ---------------------------------------------------------


def test_non_dict_top_level_is_rejected(tmp_path: Path, arrays: dict[str, Any]) -> None:
    path = tmp_path / "list.pkl"
    write_py2_pickle(path, [arrays["v_template"], arrays["f"]])
    with pytest.raises(ValueError, match=r"list\.pkl: top-level object is list, expected a dict"):
        load_mano_pickle(path)


@pytest.mark.parametrize("key", ["v_template", "J_regressor", "hands_mean", "shapedirs"])
def test_missing_key_is_named(tmp_path: Path, arrays: dict[str, Any], key: str) -> None:
    del arrays[key]
    path = tmp_path / "MANO_RIGHT.pkl"
    write_mano_like_pickle(path, arrays)
    with pytest.raises(ValueError, match=rf"MANO_RIGHT\.pkl: missing required key\(s\) \['{key}'\]"):
        load_mano_pickle(path)


BAD_SHAPES = {
    "weights": lambda a: a["weights"][:-1],
    "J_regressor": lambda a: a["J_regressor"].T.copy(),
    "posedirs": lambda a: a["posedirs"][:, :, :-9],
    "shapedirs": lambda a: a["shapedirs"][:, 0, :],
    "hands_components": lambda a: a["hands_components"][:6],
    "hands_mean": lambda a: a["hands_mean"][:-1],
    "kintree_table": lambda a: a["kintree_table"][:, :-1],
    "v_template": lambda a: np.zeros((30, 2)),
    "J": lambda a: a["J"][:-1],
    "hands_coeffs": lambda a: a["hands_coeffs"][:, :6],
}


@pytest.mark.parametrize("key", sorted(BAD_SHAPES))
def test_inconsistent_shape_is_named(tmp_path: Path, arrays: dict[str, Any], key: str) -> None:
    arrays[key] = BAD_SHAPES[key](arrays)
    path = tmp_path / "MANO_RIGHT.pkl"
    write_mano_like_pickle(path, arrays, select_key=None)
    with pytest.raises(ValueError, match=rf"MANO_RIGHT\.pkl: key '{key}' has shape"):
        load_mano_pickle(path)


@pytest.mark.parametrize(("key", "value"), [("v_template", np.nan), ("shapedirs", np.inf), ("J_regressor", -np.inf)])
def test_a_non_finite_value_is_named(tmp_path: Path, arrays: dict[str, Any], key: str, value: float) -> None:
    arrays[key].flat[7] = value
    path = tmp_path / "MANO_RIGHT.pkl"
    write_mano_like_pickle(path, arrays)
    with pytest.raises(ValueError, match=rf"MANO_RIGHT\.pkl: key '{key}' holds 1 non-finite value\(s\)"):
        load_mano_pickle(path)


@pytest.mark.parametrize("parent", [16, 5, -3])  # no such joint; a later joint; below 0
def test_a_kintree_parent_that_is_not_an_earlier_joint_is_named(
    tmp_path: Path, arrays: dict[str, Any], parent: int
) -> None:
    arrays["kintree_table"][0, 5] = parent
    path = tmp_path / "MANO_RIGHT.pkl"
    write_mano_like_pickle(path, arrays)
    with pytest.raises(ValueError, match=rf"key 'kintree_table' gives joint 5 the parent {parent}; it must be an"):
        load_mano_pickle(path)


def test_face_index_out_of_range_is_rejected(tmp_path: Path, arrays: dict[str, Any]) -> None:
    arrays["f"][0, 0] = 30
    path = tmp_path / "MANO_RIGHT.pkl"
    write_mano_like_pickle(path, arrays)
    with pytest.raises(ValueError, match=r"key 'f' indexes vertices outside \[0, 30\)"):
        load_mano_pickle(path)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (Ch(None, extra_state={"x": None}), "unexpected value of type NoneType"),
        (Select(Ch(np.zeros(3)), np.zeros(2), extra_state={"idxs": "01"}), "unexpected value of type str"),
        (Select(Ch(np.zeros(3)), np.array([0.5])), "Select idxs must be integers"),
        (Select(Ch(np.zeros(3)), np.array([7])), "cannot evaluate Select"),
        ([None, 1.0], "object arrays are not supported"),
        ([[1.0, 2.0], [3.0]], "not an array: .*inhomogeneous"),
    ],
)
def test_bad_chumpy_values_are_named(tmp_path: Path, arrays: dict[str, Any], value: Any, message: str) -> None:
    obj = mano_like_object(arrays)
    obj["shapedirs"] = value
    path = tmp_path / "MANO_RIGHT.pkl"
    write_py2_pickle(path, obj)
    with pytest.raises(ValueError, match=rf"MANO_RIGHT\.pkl: key 'shapedirs[.\w]*': .*{message}"):
        load_mano_pickle(path)


def test_self_referencing_chumpy_object_is_rejected(tmp_path: Path, arrays: dict[str, Any]) -> None:
    loop = Ch(None)
    loop.x = Select(loop, np.arange(3))
    obj = mano_like_object(arrays)
    obj["shapedirs"] = loop
    path = tmp_path / "MANO_RIGHT.pkl"
    write_py2_pickle(path, obj)
    with pytest.raises(ValueError, match=r"key 'shapedirs\.x\.a': chumpy\.ch\.Ch refers to itself"):
        load_mano_pickle(path)


def _strip_state(path: Path, field: str) -> None:
    """Rename one state key (e.g. a Ch's ``x``) inside the written pickle so the object lacks it."""
    data = path.read_bytes()
    old, new = bytes([len(field)]) + field.encode(), bytes([len(field)]) + b"z" * len(field)
    assert data.count(b"U" + old) >= 1
    path.write_bytes(data.replace(b"U" + old, b"U" + new))


@pytest.mark.parametrize(("key", "field", "kind"), [("shapedirs", "x", "Ch"), ("J", "idxs", "Select")])
def test_chumpy_without_value_field_is_named(
    tmp_path: Path, arrays: dict[str, Any], key: str, field: str, kind: str
) -> None:
    path = tmp_path / "MANO_RIGHT.pkl"
    obj = mano_like_object(arrays, chumpy_keys=(key,) if kind == "Ch" else (), select_key=key)
    write_py2_pickle(path, obj)
    _strip_state(path, field)
    with pytest.raises(ValueError, match=rf"key '{key}': chumpy\.\w+\.{kind} has no '{field}'"):
        load_mano_pickle(path)


def test_csc_without_shape_is_named(tmp_path: Path, arrays: dict[str, Any]) -> None:
    path = tmp_path / "MANO_RIGHT.pkl"
    write_mano_like_pickle(path, arrays)
    _strip_state(path, "_shape")
    with pytest.raises(ValueError, match=r"key 'J_regressor': csc_matrix has no '_shape'/'shape'"):
        load_mano_pickle(path)


def test_csc_with_old_scipy_shape_attribute_loads(tmp_path: Path, arrays: dict[str, Any]) -> None:
    csc = CscMatrix.from_dense(arrays["J_regressor"])
    obj = mano_like_object(arrays)
    obj["J_regressor"] = csc
    path = tmp_path / "MANO_RIGHT.pkl"
    write_py2_pickle(path, obj)
    data = path.read_bytes().replace(b"U\x06_shape", b"U\x05shape")
    path.write_bytes(data)
    np.testing.assert_array_equal(load_mano_pickle(path)["J_regressor"], arrays["J_regressor"])


def test_truncated_file_is_a_clear_value_error(mano_path: Path) -> None:
    mano_path.write_bytes(mano_path.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"MANO_RIGHT\.pkl: not a readable MANO pickle") as info:
        load_mano_pickle(mano_path)
    assert not isinstance(info.value, UnsafePickleError)


# --- file_md5 -----------------------------------------------------------------------------------------------


def test_file_md5_matches_hashlib(mano_path: Path) -> None:
    data = mano_path.read_bytes()
    assert file_md5(mano_path) == hashlib.md5(data).hexdigest()
    assert file_md5(str(mano_path), chunk_size=1000) == hashlib.md5(data).hexdigest()
