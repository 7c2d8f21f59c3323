"""The packed HDF5 layout (DESIGN.md section 2): one file of N crops per dataset source and split.

Every packed file ``results/datasets/<source>_<split>.h5`` holds these datasets, axis 0 is the sample:

=================  ===================  ===========================================================================
dataset            shape, dtype         meaning
=================  ===================  ===========================================================================
``images``         (N,320,320,3) uint8  RGB crops
``keypoints_2d``   (N,21,3) float32     x, y in crop pixels, visibility (1 annotated and inside, 0 not)
``keypoints_3d``   (N,21,3) float32     metres, camera frame after mirroring; NaN where the source has none
``masks``          (N,320,320) uint8    1 hand, 0 background; all 0 where ``has_mask`` is false
``has_mask``       (N,) bool            per-sample availability of the mask
``has_3d``         (N,) bool            ... of ``keypoints_3d``
``has_params``     (N,) bool            ... of ``params``
``is_left``        (N,) bool            the hand was a left hand, mirrored to a right hand at crop time
``params``         (N,P) float32        synthetic ground truth ``[s, tx, ty, rot(3), pose PCA(n), betas(10)]``; NaN
``crop_box``       (N,4) float32        x0, y0, side (original-image pixels), 1.0 if mirrored else 0.0
``names``          (N,) UTF-8 string    source file or sample id
``heatmaps``       (N,21,h,w) uint8     optional: 0-255 Gaussian heatmaps of the 2D keypoints
``vertices``       (N,V,3) float32      optional: mesh vertices, metres, camera frame
=================  ===================  ===========================================================================

File attributes: ``layout_version`` (:data:`LAYOUT_VERSION`), ``source``, ``split``, ``keypoint_order``
(``"openpose21"``), ``crop_size`` (320), ``hand3d_version``, ``num_params`` (P), ``content_sha256``
(:func:`content_checksum`) and ``field_sha256`` (:func:`fields_checksum`).

Storage: datasets are resizable along axis 0 and uncompressed (reads stay fast); ``images``, ``masks``,
``heatmaps`` and ``vertices`` are chunked one sample per chunk so a training loader reads single samples cheaply, the
small per-sample arrays in blocks of ``chunk_samples`` samples.

Checksum (``content_sha256``): SHA-256 over the datasets in sorted name order; for each one the bytes
``name + "\\n" + dtype + "\\n" + shape + "\\n"`` (dtype as numpy's little-endian ``dtype.str``, e.g. ``<f4``,
``|u1``, ``|b1``, or ``vlen-utf8`` for strings; shape as comma-separated decimal integers, e.g. ``12,21,3``),
followed by the 32-byte SHA-256 digest of its data: the C-order little-endian bytes of a numeric dataset, or for a
string dataset each element as an 8-byte little-endian length then its UTF-8 bytes. The attributes are not
covered, so the same arrays give the same checksum whatever hand3d version or batch sizes wrote them.

Per field (``field_sha256``): a JSON object mapping each dataset's name to the SHA-256 of its own entry (the same
header line bytes followed by its data digest), so a reader of some fields can tell whether those changed: a
training run that reads no heatmaps is not redone because the heatmaps were redrawn. Files written before it have
``content_sha256`` only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from hand3d import __version__
from hand3d.atomic import durable_replace, fresh_temp

__all__ = [
    "CROP_SIZE",
    "FIELDS",
    "KEYPOINT_ORDER",
    "LAYOUT_VERSION",
    "NUM_KEYPOINTS",
    "Field",
    "PackedWriter",
    "concat_packed",
    "content_checksum",
    "fields_checksum",
    "open_packed",
    "read_samples",
    "validate_packed",
]

LAYOUT_VERSION = 1
CROP_SIZE = 320
NUM_KEYPOINTS = 21
KEYPOINT_ORDER = "openpose21"

STRING = "vlen-utf8"  # the dtype token of `names` (h5py variable-length UTF-8 strings)
_HASH_BLOCK_BYTES = 64 << 20

Dims = Mapping[str, int | None]  # file-level sizes: "P" params, "V" vertices, "H", "W" heatmap height and width
Given = Mapping[str, np.ndarray]


# ---------------------------------------------------------------- defaults for fields a batch leaves out


def _nan(*shape: int) -> np.ndarray:
    return np.full(shape, np.nan, np.float32)


def _zero_masks(batch: int) -> np.ndarray:
    return np.zeros((batch, CROP_SIZE, CROP_SIZE), np.uint8)


def _rows_finite(array: np.ndarray | None, batch: int) -> np.ndarray:
    if array is None:
        return np.zeros(batch, bool)
    return np.isfinite(array).reshape(batch, -1).all(axis=1)


def _default_is_left(given: Given, batch: int) -> np.ndarray:
    box = given.get("crop_box")
    return np.zeros(batch, bool) if box is None else box[:, 3] == 1


def _default_crop_box(given: Given, batch: int) -> np.ndarray:
    box = _nan(batch, 4)
    box[:, 3] = given.get("is_left", 0.0)
    return box


@dataclass(frozen=True)
class Field:
    """One per-sample dataset of the layout.

    `shape` is the per-sample shape; a string entry is a file-level size ("P", "V", "H", "W"). `dtype` is a numpy
    dtype string or :data:`STRING`. `default(given, batch, dims)` fills the field when `append` leaves it out
    (`given`: the batch's checked fields); None: every batch must give it. `required`: every packed file has it
    (else only files created with that size).
    `per_sample_chunks`: chunked one sample per chunk (large rows a loader reads one at a time).
    """

    name: str
    shape: tuple[int | str, ...]
    dtype: str
    default: Callable[[Given, int, Dims], np.ndarray] | None = None
    required: bool = True
    per_sample_chunks: bool = False


FIELDS: tuple[Field, ...] = (
    Field("images", (CROP_SIZE, CROP_SIZE, 3), "|u1", per_sample_chunks=True),
    Field("keypoints_2d", (NUM_KEYPOINTS, 3), "<f4"),
    Field("keypoints_3d", (NUM_KEYPOINTS, 3), "<f4", default=lambda g, b, d: _nan(b, NUM_KEYPOINTS, 3)),
    Field("masks", (CROP_SIZE, CROP_SIZE), "|u1", default=lambda g, b, d: _zero_masks(b), per_sample_chunks=True),
    Field("has_mask", (), "|b1", default=lambda g, b, d: np.full(b, "masks" in g)),
    Field("has_3d", (), "|b1", default=lambda g, b, d: _rows_finite(g.get("keypoints_3d"), b)),
    Field("has_params", (), "|b1", default=lambda g, b, d: _rows_finite(g.get("params"), b)),
    Field("is_left", (), "|b1", default=lambda g, b, d: _default_is_left(g, b)),
    Field("params", ("P",), "<f4", default=lambda g, b, d: _nan(b, d["P"])),
    Field("crop_box", (4,), "<f4", default=lambda g, b, d: _default_crop_box(g, b)),
    Field("names", (), STRING),
    Field("heatmaps", (NUM_KEYPOINTS, "H", "W"), "|u1", required=False, per_sample_chunks=True),
    Field(
        "vertices", ("V", 3), "<f4", default=lambda g, b, d: _nan(b, d["V"], 3), required=False, per_sample_chunks=True
    ),
)
FIELD_BY_NAME: dict[str, Field] = {field.name: field for field in FIELDS}
REQUIRED = tuple(field.name for field in FIELDS if field.required)


def _resolve(field: Field, dims: Dims) -> tuple[int, ...] | None:
    """The per-sample shape with file-level sizes filled in; None when the file has no such field."""
    sizes = [dims.get(entry) if isinstance(entry, str) else entry for entry in field.shape]
    return None if any(size is None for size in sizes) else tuple(sizes)


def _h5_dtype(field: Field):
    return h5py.string_dtype("utf-8") if field.dtype == STRING else np.dtype(field.dtype)


# ---------------------------------------------------------------- checksum


def _dtype_token(dtype: np.dtype) -> str:
    return STRING if h5py.check_string_dtype(dtype) is not None else np.dtype(dtype).newbyteorder("<").str


def _update_strings(hasher, values: Iterable[bytes]) -> None:
    for value in values:
        hasher.update(len(value).to_bytes(8, "little"))
        hasher.update(value)


def _update_numeric(hasher, block: np.ndarray) -> None:
    hasher.update(np.ascontiguousarray(block, dtype=block.dtype.newbyteorder("<")).data)


Entry = tuple[str, str, tuple[int, ...], bytes]  # a dataset's name, dtype token, shape and data digest


def _entry_bytes(entry: Entry) -> bytes:
    name, token, shape, digest = entry
    return f"{name}\n{token}\n{','.join(map(str, shape))}\n".encode() + digest


def _combine(entries: Iterable[Entry]) -> str:
    """The file digest from (name, dtype token, shape, data digest) of each dataset, in sorted name order."""
    top = hashlib.sha256()
    for entry in sorted(entries):
        top.update(_entry_bytes(entry))
    return top.hexdigest()


def _field_digests(entries: Iterable[Entry]) -> dict[str, str]:
    """``{name: SHA-256 of the dataset's entry}``, names sorted: the ``field_sha256`` attribute, as JSON."""
    return {entry[0]: hashlib.sha256(_entry_bytes(entry)).hexdigest() for entry in sorted(entries)}


def fields_checksum(path: str | os.PathLike, fields: Iterable[str]) -> str | None:
    """SHA-256 over the stored per-field digests of ``fields`` (in sorted order); None when the file stores none."""
    with h5py.File(path, "r") as f:
        stored = f.attrs.get("field_sha256")
    if stored is None:
        return None
    digests = json.loads(stored)
    missing = sorted(set(fields) - set(digests))
    if missing:
        raise ValueError(f"{path}: field_sha256 has no digest of {missing}")
    return hashlib.sha256("".join(f"{name}:{digests[name]}\n" for name in sorted(set(fields))).encode()).hexdigest()


def _dataset_digest(dataset: h5py.Dataset) -> bytes:
    hasher = hashlib.sha256()
    is_string = h5py.check_string_dtype(dataset.dtype) is not None
    blocks = [dataset[()]] if dataset.shape == () else _blocks(dataset, is_string)
    for block in blocks:
        if is_string:
            _update_strings(hasher, np.asarray(block, dtype=object).ravel())
        else:
            _update_numeric(hasher, np.asarray(block))
    return hasher.digest()


def _blocks(dataset: h5py.Dataset, is_string: bool) -> Iterable[np.ndarray]:
    """Read a dataset along axis 0 in blocks of about 64 MiB (4096 rows for strings)."""
    row_bytes = max(1, int(np.prod(dataset.shape[1:], dtype=np.int64)) * dataset.dtype.itemsize)
    step = 4096 if is_string else max(1, _HASH_BLOCK_BYTES // row_bytes)
    for start in range(0, dataset.shape[0], step):
        yield dataset[start : start + step]


def _entries(h5file: h5py.File) -> list[Entry]:
    entries = []
    for name in sorted(h5file):
        dataset = h5file[name]
        if not isinstance(dataset, h5py.Dataset):
            raise ValueError(f"{h5file.filename}: {name!r} is a group; a packed file holds datasets only")
        entries.append((name, _dtype_token(dataset.dtype), dataset.shape, _dataset_digest(dataset)))
    return entries


def content_checksum(h5file: h5py.File) -> str:
    """Recompute the ``content_sha256`` of an open packed file (definition in the module docstring)."""
    return _combine(_entries(h5file))


# ---------------------------------------------------------------- batch validation


def _as_names(path: Path, values) -> np.ndarray:
    """The batch's names as a 1-D object array of str (no NUL characters, encodable as UTF-8)."""
    names = np.asarray(values, dtype=object)
    if isinstance(values, str | bytes) or names.ndim != 1:
        raise ValueError(f"{path}: field 'names': expected a sequence of strings, got {type(values).__name__}")
    for name in names:
        if not isinstance(name, str) or "\0" in name:
            raise ValueError(f"{path}: field 'names': every name must be a str without NUL characters, got {name!r}")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"{path}: field 'names': {name!r} is not encodable as UTF-8 ({error})") from None
    return names


def _as_field(path: Path, field: Field, value, batch: int, shape: tuple[int, ...]) -> np.ndarray:
    """Check one given field's dtype and shape; return it as the stored dtype.

    Float fields take any real number dtype ("same_kind" cast); uint8 and bool fields only "safe" casts.
    """
    array = np.asarray(value)
    target = np.dtype(field.dtype)
    casting = "same_kind" if target.kind == "f" else "safe"
    if array.dtype.kind not in "biuf" or not np.can_cast(array.dtype, target, casting):
        raise ValueError(f"{path}: field {field.name!r}: dtype {array.dtype} cannot be stored as {target}")
    if array.shape != (batch, *shape):
        raise ValueError(f"{path}: field {field.name!r}: expected shape {(batch, *shape)}, got {array.shape}")
    return array.astype(target, copy=False)


def _check_flag(path: Path, data: np.ndarray, flag: np.ndarray, what: str, missing: str) -> None:
    rows = data.reshape(len(data), -1)
    absent = np.isnan(rows).all(axis=1) if missing == "NaN" else (rows == 0).all(axis=1)
    if np.any(~flag & ~absent):
        raise ValueError(f"{path}: {what}: samples with the flag false must be all {missing}")
    if missing == "NaN" and np.any(flag & ~np.isfinite(rows).all(axis=1)):
        raise ValueError(f"{path}: {what}: samples with the flag true must be finite everywhere")


def _check_batch(path: Path, fields: Mapping[str, np.ndarray]) -> None:
    """Cross-field rules of the layout (DESIGN.md section 2)."""
    _check_flag(path, fields["keypoints_3d"], fields["has_3d"], "keypoints_3d / has_3d", "NaN")
    _check_flag(path, fields["params"], fields["has_params"], "params / has_params", "NaN")
    _check_flag(path, fields["masks"], fields["has_mask"], "masks / has_mask", "0")
    if fields["masks"].size and fields["masks"].max() > 1:
        raise ValueError(f"{path}: field 'masks': values must be 0 (background) or 1 (hand)")
    if not np.isin(fields["keypoints_2d"][..., 2], (0.0, 1.0)).all():
        raise ValueError(f"{path}: field 'keypoints_2d': visibility (last column) must be 0 or 1")
    if not np.array_equal(fields["crop_box"][:, 3], fields["is_left"].astype(np.float32)):
        raise ValueError(f"{path}: field 'crop_box': the mirrored flag (column 3) must be 1.0 exactly where is_left")


# ---------------------------------------------------------------- writer


def _heatmap_dims(heatmap_size: int | Sequence[int] | None) -> tuple[int | None, int | None]:
    if heatmap_size is None:
        return None, None
    height, width = (heatmap_size, heatmap_size) if isinstance(heatmap_size, int | np.integer) else heatmap_size
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"heatmap_size must be positive, got {heatmap_size}")
    return int(height), int(width)


class PackedWriter:
    """Write a packed file atomically: ``with PackedWriter(...) as w: w.append(batch)``.

    The file is written under a hidden temporary name in the destination folder; on a clean exit the attributes
    (``content_sha256`` included) are written, the file is flushed to disk and renamed onto `path`
    (:func:`hand3d.atomic.durable_replace`); on an exception the temporary file is deleted, so `path` never holds a
    half-written file.

    `num_params` is P (>= 1). `num_vertices` (V) and `heatmap_size` (h or (h, w)) create the optional ``vertices``
    and ``heatmaps`` datasets; without them a batch giving those fields is refused.

    Defaults for fields a batch leaves out (``images``, ``keypoints_2d`` and ``names`` are always needed, and
    ``heatmaps`` when the file has them):

    - ``keypoints_3d``: NaN; ``params``: NaN; ``vertices``: NaN; ``masks``: 0.
    - ``has_mask``: true where ``masks`` was given, else false.
    - ``has_3d`` / ``has_params``: true for the samples whose given ``keypoints_3d`` / ``params`` are finite
      everywhere, false when the field was left out.
    - ``is_left``: the mirrored flag of a given ``crop_box``, else false.
    - ``crop_box``: x0, y0, side NaN (unknown), mirrored flag ``1.0`` where ``is_left`` else ``0.0``.

    Rules checked on every batch (ValueError naming the file and field): the dtype and per-sample shape of each
    field (float fields take any real dtype, uint8 and bool fields only lossless ones), a flag false means all-NaN
    3D keypoints / params and an all-zero mask, a flag true means finite 3D keypoints / params, masks in {0, 1},
    visibility in {0, 1}, and the crop_box mirrored flag equal to ``is_left``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        source: str,
        split: str,
        num_params: int,
        num_vertices: int | None = None,
        heatmap_size: int | tuple[int, int] | None = None,
        chunk_samples: int = 1024,
    ) -> None:
        if int(num_params) < 1:
            raise ValueError(f"{path}: num_params must be at least 1, got {num_params}")
        if num_vertices is not None and int(num_vertices) < 1:
            raise ValueError(f"{path}: num_vertices must be at least 1, got {num_vertices}")
        height, width = _heatmap_dims(heatmap_size)
        self.path = Path(path)
        self.source, self.split, self.chunk_samples = str(source), str(split), max(1, int(chunk_samples))
        self.dims: dict[str, int | None] = {"P": int(num_params), "V": num_vertices, "H": height, "W": width}
        self.shapes = {f.name: shape for f in FIELDS if (shape := _resolve(f, self.dims)) is not None}
        self.num_samples = 0
        self._file: h5py.File | None = None
        self._tmp: Path | None = None
        self._hashers: dict = {}  # field name -> hashlib.sha256 of its data so far
        self._broken = False

    def __enter__(self) -> PackedWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = fresh_temp(self.path)
        self._file = h5py.File(self._tmp, "w-")
        try:
            self._create_datasets()
        except BaseException:
            self._discard()
            raise
        return self

    def _create_datasets(self) -> None:
        for name, shape in self.shapes.items():
            field = FIELD_BY_NAME[name]
            rows = 1 if field.per_sample_chunks else self.chunk_samples
            self._file.create_dataset(
                name, shape=(0, *shape), maxshape=(None, *shape), chunks=(rows, *shape), dtype=_h5_dtype(field)
            )
            self._hashers[name] = hashlib.sha256()

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            if exc_type is None:
                self._finish()
        finally:
            self._discard()

    def _discard(self) -> None:
        """Close the file and delete the temporary name (a no-op after a successful rename)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    def _finish(self) -> None:
        if self._broken:
            raise RuntimeError(f"{self.path}: an append failed part-way; the file is not written")
        attrs = self._file.attrs
        attrs["layout_version"] = LAYOUT_VERSION
        attrs["source"], attrs["split"] = self.source, self.split
        attrs["keypoint_order"], attrs["crop_size"] = KEYPOINT_ORDER, CROP_SIZE
        attrs["hand3d_version"], attrs["num_params"] = __version__, self.dims["P"]
        entries = self._entries()
        attrs["content_sha256"] = _combine(entries)
        attrs["field_sha256"] = json.dumps(_field_digests(entries))
        self._file.close()
        self._file = None
        durable_replace(self._tmp, self.path)

    def _entries(self) -> list[Entry]:
        entries = []
        for name, shape in self.shapes.items():
            token = STRING if name == "names" else np.dtype(FIELD_BY_NAME[name].dtype).str
            entries.append((name, token, (self.num_samples, *shape), self._hashers[name].digest()))
        return entries

    def checksum(self) -> str:
        """``content_sha256`` of what was appended so far."""
        return _combine(self._entries())

    def prepare(self, batch: Mapping[str, object]) -> dict[str, np.ndarray]:
        """Validate a batch and fill the defaults; returns every field of the file as its stored dtype."""
        unknown = sorted(set(batch) - set(FIELD_BY_NAME))
        undeclared = sorted(set(batch) & set(FIELD_BY_NAME) - set(self.shapes))  # e.g. vertices without num_vertices
        if unknown or undeclared:
            raise ValueError(f"{self.path}: fields {unknown + undeclared} are not part of this file's layout")
        if "names" not in batch:
            raise ValueError(f"{self.path}: field 'names' is required in every batch")
        names = _as_names(self.path, batch["names"])
        size = len(names)
        rows = {name: np.shape(value)[0] for name, value in batch.items() if name != "names" and np.ndim(value)}
        if any(count != size for count in rows.values()):
            sizes = {"names": size} | rows
            raise ValueError(f"{self.path}: fields disagree on the batch size: {sizes}")
        given = {"names": names}
        for name in self.shapes:
            if name != "names" and batch.get(name) is not None:
                given[name] = _as_field(self.path, FIELD_BY_NAME[name], batch[name], size, self.shapes[name])
        fields = dict(given)
        for name in self.shapes:
            if name not in fields:
                default = FIELD_BY_NAME[name].default
                if default is None:
                    raise ValueError(f"{self.path}: field {name!r} is required in every batch")
                fields[name] = default(given, size, self.dims)
        _check_batch(self.path, fields)
        return fields

    def append(self, batch: Mapping[str, object]) -> None:
        """Add B samples: `batch` maps field names to arrays with B rows (``names``: B strings)."""
        if self._file is None:
            raise RuntimeError(f"{self.path}: append is only valid inside `with PackedWriter(...)`")
        fields = self.prepare(batch)
        size, start = len(fields["names"]), self.num_samples
        self._broken = True  # until every dataset has its rows
        for name, values in fields.items():
            dataset = self._file[name]
            dataset.resize(start + size, axis=0)
            dataset[start:] = values
            if name == "names":
                _update_strings(self._hashers[name], (value.encode("utf-8") for value in values))
            else:
                _update_numeric(self._hashers[name], values)
        self.num_samples += size
        self._broken = False


# ---------------------------------------------------------------- readers


def _file_dims(f: h5py.File) -> dict[str, int | None]:
    """P, V, h, w of an open packed file (V, h, w None where the optional dataset is absent)."""
    dims: dict[str, int | None] = {"P": f["params"].shape[1] if f["params"].ndim == 2 else None, "V": None}
    dims["H"] = dims["W"] = None
    if "vertices" in f and f["vertices"].ndim == 3:
        dims["V"] = f["vertices"].shape[1]
    if "heatmaps" in f and f["heatmaps"].ndim == 4:
        dims["H"], dims["W"] = f["heatmaps"].shape[2:]
    return dims


def _check_structure(path, f: h5py.File) -> None:
    version = f.attrs.get("layout_version")
    if version is None:
        raise ValueError(f"{path}: no layout_version attribute; not a packed hand3d dataset")
    if int(version) != LAYOUT_VERSION:
        raise ValueError(
            f"{path}: packed layout version {int(version)}, this hand3d reads {LAYOUT_VERSION}{_rebuild_hint(path)}"
        )
    missing = [name for name in REQUIRED if name not in f]
    if missing:
        raise ValueError(f"{path}: missing datasets {missing}")
    groups = [name for name in f if not isinstance(f[name], h5py.Dataset)]
    if groups:
        raise ValueError(f"{path}: groups {groups}; a packed file holds datasets only")
    lengths = {name: f[name].shape[0] if f[name].shape else None for name in f}
    if len(set(lengths.values())) != 1 or None in lengths.values():
        raise ValueError(f"{path}: datasets disagree on the number of samples: {lengths}")
    dims = _file_dims(f)
    for field in FIELDS:
        if field.name in f:
            _check_dataset(path, f, field, dims)
    _check_attrs(path, f, dims)


def _rebuild_hint(path: str | os.PathLike, verb: str = "rebuild") -> str:
    """How to make a packed file the workflow makes (its outputs lie under results/datasets/); else nothing."""
    parts = Path(path).parts
    return f"; {verb} it with snakemake {path}" if parts[:2] == ("results", "datasets") else ""


def open_packed(path: str | os.PathLike) -> h5py.File:
    """Open a packed file read-only after checking it exists, is HDF5, and has this layout: its version, its
    datasets' dtypes and shapes, its attributes (the data itself is checked by :func:`validate_packed`).

    Use as a context manager: ``with open_packed(path) as f: f["images"][i]``.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: packed dataset file not found{_rebuild_hint(path, 'build')}")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path}: not an HDF5 file, which a packed dataset is{_rebuild_hint(path)}")
    try:
        f = h5py.File(path, "r")
    except OSError as error:  # truncated or damaged
        raise ValueError(f"{path}: not a readable HDF5 file ({error}){_rebuild_hint(path)}") from error
    try:
        _check_structure(path, f)
    except BaseException:
        f.close()
        raise
    return f


def _check_dataset(path, f: h5py.File, field: Field, dims: Dims) -> None:
    dataset = f[field.name]
    expected = _resolve(field, dims)
    if field.dtype == STRING:
        info = h5py.check_string_dtype(dataset.dtype)
        ok_dtype = info is not None and info.encoding == "utf-8" and info.length is None
    else:
        ok_dtype = np.dtype(dataset.dtype) == np.dtype(field.dtype)
    if not ok_dtype:
        raise ValueError(f"{path}: dataset {field.name!r}: dtype {dataset.dtype}, the layout says {field.dtype}")
    if expected is None or dataset.shape[1:] != expected:
        shape = ("N", *(dims.get(s, s) if isinstance(s, str) else s for s in field.shape))
        raise ValueError(f"{path}: dataset {field.name!r}: shape {dataset.shape}, the layout says {shape}")


def _check_attrs(path, f: h5py.File, dims: Dims) -> None:
    expected = {"keypoint_order": KEYPOINT_ORDER, "crop_size": CROP_SIZE, "num_params": dims["P"]}
    for key in ("source", "split", "hand3d_version", "content_sha256", *expected):
        if key not in f.attrs:
            raise ValueError(f"{path}: attribute {key!r} missing")
    for key, value in expected.items():
        stored = f.attrs[key]
        if stored != value:
            shown = stored.item() if isinstance(stored, np.generic) else stored  # 6, not np.int64(6)
            raise ValueError(f"{path}: attribute {key!r} is {shown!r}, expected {value!r}")


def _verify_checksums(path, f: h5py.File, stored: str) -> None:
    entries = _entries(f)
    if _combine(entries) != stored:
        raise ValueError(f"{path}: content_sha256 does not match the data (the file was changed or damaged)")
    if "field_sha256" in f.attrs and json.loads(f.attrs["field_sha256"]) != _field_digests(entries):
        raise ValueError(f"{path}: field_sha256 does not match the data (the file was changed or damaged)")


def validate_packed(path: str | os.PathLike, verify_checksum: bool = True) -> dict:
    """Check a packed file against the layout and return a summary.

    Raises ValueError naming the file and the dataset or attribute at fault (a shape, a dtype, an unexpected
    dataset, a missing attribute, or a ``content_sha256`` that does not match the data when `verify_checksum`).
    The summary: path, num_samples, source, split, num_params, num_vertices, heatmap_size ((h, w) or None),
    optional (names of the optional datasets present) and content_sha256.
    """
    with open_packed(path) as f:
        unexpected = sorted(set(f) - set(FIELD_BY_NAME))
        if unexpected:
            raise ValueError(f"{path}: unexpected datasets {unexpected}")
        dims = _file_dims(f)
        stored = str(f.attrs["content_sha256"])
        if verify_checksum:
            _verify_checksums(path, f, stored)
        return {
            "path": str(path),
            "num_samples": f["images"].shape[0],
            "source": str(f.attrs["source"]),
            "split": str(f.attrs["split"]),
            "num_params": dims["P"],
            "num_vertices": dims["V"],
            "heatmap_size": None if dims["H"] is None else (dims["H"], dims["W"]),
            "optional": [field.name for field in FIELDS if not field.required and field.name in f],
            "content_sha256": stored,
        }


def read_field(dataset: h5py.Dataset, selection=slice(None)) -> np.ndarray:
    """Rows of a packed dataset; string datasets (``names``) come back as an object array of str."""
    if h5py.check_string_dtype(dataset.dtype) is not None:
        return np.asarray(dataset.asstr()[selection], dtype=object)
    return dataset[selection]


def read_samples(
    path: str | os.PathLike, indices: Sequence[int] | np.ndarray, fields: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """Read the samples `indices` (any order, repeats and negative indices allowed) of `fields` (default: all).

    h5py reads the sorted unique indices; the rows come back in the order asked. ``names`` are str.
    """
    with open_packed(path) as f:
        count = f["images"].shape[0]
        wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
        if wanted.size and (wanted.min() < -count or wanted.max() >= count):
            raise IndexError(
                f"{path}: sample indices must lie in [-{count}, {count}), got {wanted.min()}..{wanted.max()}"
            )
        names = list(f) if fields is None else list(fields)
        missing = [name for name in names if name not in f]
        if missing:
            raise KeyError(f"{path}: no datasets {missing}")
        if not wanted.size:
            return {name: read_field(f[name], slice(0, 0)) for name in names}
        unique, inverse = np.unique(wanted % count, return_inverse=True)
        return {name: read_field(f[name], unique)[inverse] for name in names}


# ---------------------------------------------------------------- concatenation


def _input_dims(inputs: Sequence[str | os.PathLike]) -> tuple[dict[str, int | None], list[int]]:
    """The common (P, V, h, w) of the inputs and their sample counts; ValueError naming a file that differs."""
    first, reference, counts = inputs[0], None, []
    for path in inputs:
        with open_packed(path) as f:
            dims = _file_dims(f)
            counts.append(f["images"].shape[0])
        reference = reference or dims
        for key, label in (("P", "num_params"), ("V", "num_vertices"), ("H", "heatmap height"), ("W", "heatmap width")):
            if dims[key] != reference[key]:
                raise ValueError(
                    f"{path}: {label} {dims[key]}, but {first} has {reference[key]}; concat_packed needs equal layouts"
                )
    return reference, counts


def concat_packed(
    inputs: Sequence[str | os.PathLike], output: str | os.PathLike, source: str, split: str, block_samples: int = 256
) -> None:
    """Gather packed files (e.g. the shards of parallel jobs) into `output`, in the given order.

    Streams `block_samples` samples at a time through :class:`PackedWriter` (atomic, checksummed); every input must
    agree on num_params, num_vertices and heatmap size (ValueError naming the odd file otherwise).
    """
    from tqdm import tqdm

    if not inputs:
        raise ValueError(f"{output}: concat_packed needs at least one input file")
    dims, counts = _input_dims(inputs)
    heatmap = None if dims["H"] is None else (dims["H"], dims["W"])
    with (
        PackedWriter(output, source, split, dims["P"], num_vertices=dims["V"], heatmap_size=heatmap) as writer,
        tqdm(total=sum(counts), desc=f"pack {source}_{split}", unit="sample") as progress,
    ):
        for path, count in zip(inputs, counts, strict=True):
            with open_packed(path) as f:
                for start in range(0, count, block_samples):
                    block = slice(start, min(start + block_samples, count))
                    writer.append({name: read_field(f[name], block) for name in writer.shapes})
                    progress.update(block.stop - block.start)
