"""Test helper: write pickles byte-for-byte in the style of Python 2 + numpy 1.x + chumpy + old scipy.

The official ``MANO_RIGHT.pkl`` was written by Python 2 with protocol 2. This writer reproduces its structure
so the safe loader can be tested without the licensed file:

* py2 ``str`` (dict keys, short strings, numpy raw buffers) as SHORT_BINSTRING / BINSTRING, never the
  ``_codecs.encode`` trick that Python 3 uses for ``bytes`` at protocol 2;
* numpy arrays as ``_reconstruct(ndarray, (0,), 'b')`` + BUILD ``(1, shape, dtype, is_fortran, rawstring)``,
  dtypes as ``dtype('f8', 0, 1)`` + BUILD ``(3, '<', None, None, None, -1, -1, 0)``;
* chumpy ``Ch`` / ``Select`` and scipy ``csc_matrix`` as GLOBAL + EMPTY_TUPLE + NEWOBJ + BUILD(state dict);
* ``set`` as ``__builtin__.set([...])`` via REDUCE.

Globals are written as raw GLOBAL opcodes (:class:`Global`), so no chumpy/scipy stand-in module is
registered in ``sys.modules``. :class:`Call` writes ``GLOBAL`` + args + ``REDUCE`` for any (e.g. malicious)
global.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Global:
    """A global reference written verbatim as ``GLOBAL module\\nname\\n``."""

    module: str
    name: str


RECONSTRUCT = Global("numpy.core.multiarray", "_reconstruct")
NDARRAY = Global("numpy", "ndarray")
DTYPE = Global("numpy", "dtype")
SET = Global("__builtin__", "set")
CH = Global("chumpy.ch", "Ch")
SELECT = Global("chumpy.reordering", "Select")
CSC = Global("scipy.sparse.csc", "csc_matrix")

PY2_MANO_GLOBALS = frozenset(f"{g.module} {g.name}" for g in (RECONSTRUCT, NDARRAY, DTYPE, SET, CH, SELECT, CSC))
"""The globals (as ``pickletools`` reports them) of a MANO v1.2 pickle."""


@dataclass(eq=False)
class Ch:
    """Stand-in for ``chumpy.ch.Ch``; ``extra_state`` is merged into the pickled state (last wins)."""

    x: Any
    extra_state: dict[str, Any] = field(default_factory=dict)

    def pickled_state(self) -> dict[str, Any]:
        base = {"x": self.x, "_dirty_vars": set(), "_itr": None, "_make_dense": False, "_make_sparse": False}
        return {**base, **self.extra_state}


@dataclass(eq=False)
class Select:
    """Stand-in for ``chumpy.reordering.Select``: ``a.ravel()[idxs]``, reshaped to ``preferred_shape``."""

    a: Any
    idxs: np.ndarray
    preferred_shape: tuple[int, ...] | None = None
    extra_state: dict[str, Any] = field(default_factory=dict)

    def pickled_state(self) -> dict[str, Any]:
        state = {"a": self.a, "idxs": self.idxs, "_dirty_vars": {"a"}, "_itr": None, "_make_dense": False}
        if self.preferred_shape is not None:
            state["preferred_shape"] = tuple(self.preferred_shape)
        return {**state, **self.extra_state}


@dataclass(eq=False)
class CscMatrix:
    """Stand-in for an old-scipy ``csc_matrix`` (state with ``_shape``, ``maxprint``, ``format``)."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    shape: tuple[int, int]

    @classmethod
    def from_dense(cls, dense: np.ndarray) -> CscMatrix:
        cols = [np.flatnonzero(dense[:, j]) for j in range(dense.shape[1])]
        indptr = np.concatenate([[0], np.cumsum([len(c) for c in cols])]).astype(np.int32)
        indices = np.concatenate(cols).astype(np.int32)
        data = np.concatenate([dense[c, j] for j, c in enumerate(cols)]).astype(np.float64)
        return cls(data, indices, indptr, (int(dense.shape[0]), int(dense.shape[1])))

    def pickled_state(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "indices": self.indices,
            "indptr": self.indptr,
            "_shape": self.shape,
            "maxprint": 50,
            "format": "csc",
        }


@dataclass(eq=False)
class Call:
    """``func(*args)`` written as GLOBAL + args tuple + REDUCE (what a malicious ``__reduce__`` produces)."""

    func: Global
    args: tuple[Any, ...]


_NEWOBJ_GLOBALS: dict[type, Global] = {Ch: CH, Select: SELECT, CscMatrix: CSC}


class Py2Pickler(pickle._Pickler):
    """Pure-Python pickler (protocol 2) that writes strings, arrays and globals the way Python 2 did."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file: io.BufferedIOBase) -> None:
        super().__init__(file, protocol=2)

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        if id(obj) in self.memo or not isinstance(obj, np.ndarray | np.dtype):
            super().save(obj, save_persistent_id)
        elif isinstance(obj, np.ndarray):
            self.save_ndarray(obj)
        else:
            self.save_dtype(obj)

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + struct.pack("<B", len(data)) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if not isinstance(obj, Global):
            raise pickle.PicklingError(f"Py2Pickler writes only explicit Global references, not {obj!r}")
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
        self.memoize(obj)

    dispatch[Global] = save_global

    def _reduce(self, func: Global, args: tuple[Any, ...], obj: Any) -> None:
        self.save(func)
        self.save(args)
        self.write(pickle.REDUCE)
        self.memoize(obj)

    def save_set(self, obj: set[Any]) -> None:
        self._reduce(SET, (sorted(obj),), obj)

    dispatch[set] = save_set

    def save_call(self, obj: Call) -> None:
        self._reduce(obj.func, tuple(obj.args), obj)

    dispatch[Call] = save_call

    def save_dtype(self, dt: np.dtype) -> None:
        if dt.kind not in "biuf":
            raise pickle.PicklingError(f"Py2Pickler writes only simple numeric dtypes, not {dt}")
        endian = {"=": "<" if sys.byteorder == "little" else ">"}.get(dt.byteorder, dt.byteorder)
        self._reduce(DTYPE, (f"{dt.kind}{dt.itemsize}", 0, 1), dt)
        self.save((3, endian, None, None, None, -1, -1, 0))
        self.write(pickle.BUILD)

    def save_ndarray(self, arr: np.ndarray) -> None:
        self._reduce(RECONSTRUCT, (NDARRAY, (0,), "b"), arr)
        is_fortran = bool(arr.flags.f_contiguous and not arr.flags.c_contiguous)
        self.save((1, tuple(int(n) for n in arr.shape), arr.dtype, is_fortran, arr.tobytes(order="A")))
        self.write(pickle.BUILD)

    def save_newobj(self, obj: Ch | Select | CscMatrix) -> None:
        self.save(_NEWOBJ_GLOBALS[type(obj)])
        self.save(())
        self.write(pickle.NEWOBJ)
        self.memoize(obj)
        self.save(obj.pickled_state())
        self.write(pickle.BUILD)

    dispatch.update(dict.fromkeys(_NEWOBJ_GLOBALS, save_newobj))


def dumps_py2(obj: Any) -> bytes:
    """Pickle ``obj`` as Python 2 (protocol 2) would have."""
    buf = io.BytesIO()
    Py2Pickler(buf).dump(obj)
    return buf.getvalue()


def write_py2_pickle(path: str | os.PathLike[str], obj: Any) -> None:
    with open(path, "wb") as fh:
        fh.write(dumps_py2(obj))


def make_mano_like_arrays(
    n_verts: int = 30, n_joints: int = 16, n_shape: int = 10, n_faces: int = 40, seed: int = 0
) -> dict[str, np.ndarray | str]:
    """Small arrays with MANO's keys, dtypes and mutually consistent shapes (45-dim pose for 16 joints)."""
    rng = np.random.default_rng(seed)
    n_pose = 3 * (n_joints - 1)
    regressor = rng.random((n_joints, n_verts)) * (rng.random((n_joints, n_verts)) < 0.2)
    child = np.arange(1, n_joints)
    # MANO's kintree: fingers hang off the wrist in chains of 3; the root's parent is uint32(-1).
    parents = np.r_[4294967295, np.where((child - 1) % 3 == 0, 0, child - 1)]
    return {
        "hands_components": rng.standard_normal((n_pose, n_pose)),
        "f": rng.integers(0, n_verts, (n_faces, 3)).astype(np.uint32),
        "J_regressor": regressor,
        "kintree_table": np.stack([parents, np.arange(n_joints)]).astype(np.int64),
        "bs_style": "lbs",
        "hands_coeffs": rng.standard_normal((12, n_pose)),
        "weights": rng.dirichlet(np.ones(n_joints), n_verts),
        "posedirs": rng.standard_normal((n_verts, 3, 9 * (n_joints - 1))) * 1e-3,
        "J": rng.standard_normal((n_joints, 3)),
        "hands_mean": rng.standard_normal(n_pose),
        "v_template": rng.standard_normal((n_verts, 3)) * 0.05,
        "bs_type": "lrotmin",
        "shapedirs": rng.standard_normal((n_verts, 3, n_shape)) * 1e-2,
    }


def select_of(arr: np.ndarray, seed: int = 1, extra: int = 7) -> Select:
    """A ``Select`` over a ``Ch`` that evaluates to ``arr`` (its values scattered through a longer vector)."""
    rng = np.random.default_rng(seed)
    source = rng.standard_normal(arr.size + extra).astype(arr.dtype)
    idxs = rng.permutation(arr.size + extra)[: arr.size].astype(np.int64)
    source[idxs] = arr.ravel()
    return Select(Ch(source.reshape(-1, 1)), idxs, arr.shape)


def mano_like_object(
    arrays: dict[str, Any],
    chumpy_keys: tuple[str, ...] = ("shapedirs",),
    select_key: str | None = "J",
    csc_keys: tuple[str, ...] = ("J_regressor",),
) -> dict[str, Any]:
    """The top-level dict of a MANO pickle: chosen keys as Ch, one as Select-over-Ch, csc for J_regressor."""
    obj: dict[str, Any] = {}
    for key, value in arrays.items():
        if key in chumpy_keys:
            value = Ch(value)
        elif key == select_key:
            value = select_of(value)
        elif key in csc_keys:
            value = CscMatrix.from_dense(value)
        obj[key] = value
    return obj


def write_mano_like_pickle(
    path: str | os.PathLike[str],
    arrays: dict[str, Any],
    chumpy_keys: tuple[str, ...] = ("shapedirs",),
    select_key: str | None = "J",
    csc_keys: tuple[str, ...] = ("J_regressor",),
) -> None:
    """Write ``arrays`` as a MANO-v1.2-structured Python-2 pickle (see :func:`mano_like_object`)."""
    write_py2_pickle(path, mano_like_object(arrays, chumpy_keys, select_key, csc_keys))
