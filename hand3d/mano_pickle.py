"""Safe loader for the licensed MANO v1.2 model pickle (``MANO_RIGHT.pkl``).

Why this module exists: the official MANO file is a Python-2 pickle (protocol 2) holding chumpy objects and
a scipy sparse matrix. The usual recipe, ``pickle.load(f, encoding="latin1")`` with chumpy installed, gives
the file full control of the interpreter: a pickle may name *any* importable callable (``os.system``,
``builtins.eval``, ``subprocess.Popen``...) and have the unpickler call it. Never unpickle data you did not
create yourself with plain :mod:`pickle`; a model file downloaded from anywhere, or handed over by a user,
is such data.

What this module does instead:

* :class:`_SafeUnpickler` overrides :meth:`pickle.Unpickler.find_class` with an explicit allow-list
  (:data:`ALLOWED_GLOBALS`). The only callables the pickle can reach are numpy's own array/dtype/scalar
  reconstruction helpers and ``set``; the chumpy and scipy classes map to small inert placeholder classes
  defined here, which only store the state the pickle hands them. Any other global raises
  :class:`UnsafePickleError` before anything is called, so nothing from the pickle runs. chumpy is never
  imported.
* After unpickling, the placeholders are turned into plain numpy arrays (``Ch`` -> its ``x``; ``Select`` ->
  ``a.ravel()[idxs]`` reshaped to ``preferred_shape``; ``csc_matrix`` -> a dense float64 array).
* The result is checked for the required MANO keys and mutually consistent shapes.

Entry points: :func:`load_mano_pickle` and :func:`file_md5`.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import types
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import scipy.sparse

from hand3d.model_layout import check_mano_layout

__all__ = ["ALLOWED_GLOBALS", "UnsafePickleError", "file_md5", "load_mano_pickle"]

StrPath = str | os.PathLike[str]


class UnsafePickleError(ValueError):
    """The pickle names a global outside :data:`ALLOWED_GLOBALS`; nothing from it was executed."""


class _Placeholder:
    """Inert stand-in for a pickled class: records constructor args and BUILD state, runs nothing else."""

    kind: ClassVar[str] = "object"

    def __new__(cls, *args: object, **kwargs: object) -> _Placeholder:
        self = super().__new__(cls)
        self.args = args
        self.state = {}
        return self

    def __init__(self, *args: object, **kwargs: object) -> None:
        """Nothing to do: ``__new__`` already recorded the arguments."""

    def __setstate__(self, state: object) -> None:
        self.state = _state_dict(state)

    def __repr__(self) -> str:
        return f"<{self.kind} placeholder, state keys {sorted(self.state)}>"


class _ChPlaceholder(_Placeholder):
    kind = "chumpy.ch.Ch"


class _SelectPlaceholder(_Placeholder):
    kind = "chumpy.reordering.Select"


class _CscPlaceholder(_Placeholder):
    kind = "scipy.sparse.csc_matrix"


def _state_dict(state: object) -> dict[str, Any]:
    """Normalise a BUILD state (a dict, or a ``(dict, slotstate)`` pair) into one dict."""
    if isinstance(state, dict):
        return dict(state)
    if isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict) for s in state):
        merged: dict[str, Any] = {}
        for part in state:
            merged.update(part or {})
        return merged
    return {"__unknown_state__": state}


def _numpy_reconstruct() -> Callable[..., np.ndarray]:
    """numpy's ``_reconstruct`` (``numpy._core.multiarray`` in numpy 2, ``numpy.core.multiarray`` in 1.x)."""
    return np.ndarray.__reduce__(np.empty(0))[0]


def _numpy_scalar() -> Callable[..., np.generic]:
    """numpy's ``multiarray.scalar`` helper, found through numpy's own pickling protocol."""
    return np.float64(0.0).__reduce__()[0]


def _build_allowed() -> dict[str, object]:
    reconstruct, scalar = _numpy_reconstruct(), _numpy_scalar()
    allowed: dict[str, object] = {}
    for core in ("numpy.core", "numpy._core"):
        allowed[f"{core}.multiarray._reconstruct"] = reconstruct
        allowed[f"{core}.multiarray.scalar"] = scalar
    allowed["numpy.ndarray"] = np.ndarray
    allowed["numpy.dtype"] = np.dtype
    allowed["__builtin__.set"] = set
    allowed["builtins.set"] = set
    allowed["chumpy.ch.Ch"] = _ChPlaceholder
    allowed["chumpy.reordering.Select"] = _SelectPlaceholder
    allowed["scipy.sparse.csc.csc_matrix"] = _CscPlaceholder
    allowed["scipy.sparse._csc.csc_matrix"] = _CscPlaceholder
    return allowed


ALLOWED_GLOBALS: Mapping[str, object] = types.MappingProxyType(_build_allowed())
"""Every global (``module.name``) the loader lets a pickle reference, mapped to what it resolves to."""


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves globals only through :data:`ALLOWED_GLOBALS`."""

    def __init__(self, file: Any, path: StrPath) -> None:
        super().__init__(file, encoding="latin1")
        self._path = os.fspath(path)

    def find_class(self, module: str, name: str) -> Any:
        dotted = f"{module}.{name}"
        if dotted in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[dotted]
        raise UnsafePickleError(
            f"{self._path}: refused global {dotted!r} (not part of a MANO model pickle; nothing was "
            f"executed); only {', '.join(sorted(ALLOWED_GLOBALS))} are allowed"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._path}: refused persistent id {pid!r}; MANO pickles have none")


def _unpickle(path: StrPath) -> object:
    with open(path, "rb") as fh:
        try:
            return _SafeUnpickler(fh, path).load()
        except UnsafePickleError:
            raise
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            AttributeError,
            IndexError,
            KeyError,
        ) as e:
            raise ValueError(f"{os.fspath(path)}: not a readable MANO pickle: {type(e).__name__}: {e}") from e


class _Converter:
    """Turns placeholders (recursively) into numpy arrays; errors name the file and the key path."""

    def __init__(self, path: StrPath) -> None:
        self.path = os.fspath(path)
        self._active: set[int] = set()

    def fail(self, where: str, msg: str) -> ValueError:
        return ValueError(f"{self.path}: key {where!r}: {msg}")

    def value(self, obj: object, where: str) -> np.ndarray | str:
        return obj if isinstance(obj, str) else self.array(obj, where)

    def array(self, obj: object, where: str) -> np.ndarray:
        if isinstance(obj, _Placeholder):
            return self._placeholder(obj, where)
        if isinstance(obj, np.ndarray | np.generic | bool | int | float | list | tuple):
            try:
                arr = np.asarray(obj)
            except ValueError as e:  # a ragged nested list
                raise self.fail(where, f"not an array: {e}") from e
            if arr.dtype == object:
                raise self.fail(where, "object arrays are not supported in a MANO pickle")
            return arr
        raise self.fail(where, f"unexpected value of type {type(obj).__name__}")

    def _placeholder(self, obj: _Placeholder, where: str) -> np.ndarray:
        if id(obj) in self._active:
            raise self.fail(where, f"{obj.kind} refers to itself")
        self._active.add(id(obj))
        try:
            if isinstance(obj, _ChPlaceholder):
                return self._ch(obj, where)
            if isinstance(obj, _SelectPlaceholder):
                return self._select(obj, where)
            return self._csc(obj, where)
        finally:
            self._active.discard(id(obj))

    def _field(self, obj: _Placeholder, field: str, where: str) -> Any:
        if field not in obj.state:
            raise self.fail(where, f"{obj.kind} has no {field!r} in its pickled state (keys {sorted(obj.state)})")
        return obj.state[field]

    def _ch(self, obj: _ChPlaceholder, where: str) -> np.ndarray:
        return self.array(self._field(obj, "x", where), f"{where}.x")

    def _select(self, obj: _SelectPlaceholder, where: str) -> np.ndarray:
        a = self.array(self._field(obj, "a", where), f"{where}.a")
        idxs = self.array(self._field(obj, "idxs", where), f"{where}.idxs")
        if idxs.dtype.kind not in "iu":
            raise self.fail(where, f"Select idxs must be integers, got dtype {idxs.dtype}")
        try:
            out = a.ravel()[idxs].copy()
            shape = obj.state.get("preferred_shape")
            return out if shape is None else out.reshape(tuple(shape))
        except (IndexError, ValueError, TypeError) as e:
            raise self.fail(where, f"cannot evaluate Select: {e}") from e

    def _csc(self, obj: _CscPlaceholder, where: str) -> np.ndarray:
        parts = [self.array(self._field(obj, k, where), f"{where}.{k}") for k in ("data", "indices", "indptr")]
        shape = obj.state.get("_shape", obj.state.get("shape"))
        if shape is None:
            raise self.fail(where, f"csc_matrix has no '_shape'/'shape' in its state (keys {sorted(obj.state)})")
        try:
            matrix = scipy.sparse.csc_matrix(tuple(parts), shape=tuple(int(n) for n in shape))
            return matrix.toarray().astype(np.float64, copy=False)
        except (ValueError, TypeError, IndexError) as e:
            raise self.fail(where, f"cannot rebuild csc_matrix: {e}") from e


def load_mano_pickle(path: StrPath) -> dict[str, np.ndarray | str]:
    """Load a MANO v1.2 model pickle safely into plain numpy arrays (``bs_style``/``bs_type`` stay ``str``).

    Only the globals in :data:`ALLOWED_GLOBALS` may appear in the file (else :class:`UnsafePickleError`);
    chumpy objects become their values and ``J_regressor`` (scipy csc) a dense float64 array. Raises
    :class:`ValueError` naming the file (and key) when the top level is not a dict, a required key is missing,
    or shapes disagree.
    """
    raw = _unpickle(path)
    name = os.fspath(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{name}: top-level object is {type(raw).__name__}, expected a dict (a MANO model)")
    converter = _Converter(path)
    model: dict[str, np.ndarray | str] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ValueError(f"{name}: dict key {key!r} is not a string")
        try:
            model[key] = converter.value(value, key)
        except RecursionError as e:
            raise ValueError(f"{name}: key {key!r}: chumpy objects nested too deeply") from e
    check_mano_layout(name, model)
    return model


def file_md5(path: StrPath, chunk_size: int = 1 << 20) -> str:
    """Hex MD5 of a file (to identify which MANO release a user supplied; not a security check)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
