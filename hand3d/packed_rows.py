"""Random rows of a packed HDF5 file at memory-copy speed: ``pread`` at each row's chunk offset.

The packed layout stores ``images``, ``masks`` and ``heatmaps`` one sample per chunk, uncompressed (see
:mod:`hand3d.h5io`), so a row is a run of bytes in the file whose offset h5py reports
(``DatasetID.get_chunk_info``). Reading it is one ``os.preadv`` into the caller's buffer: no HDF5 selection per row,
no intermediate copy, and the GIL is released, so threads read in parallel. Datasets stored any other way are read
through h5py: whole into memory when small (the per-sample labels), else row by row under a lock (h5py is not
thread-parallel).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence

import h5py
import numpy as np

__all__ = ["PackedRows"]

SMALL_BYTES = 256 << 20  # datasets up to this size are held in memory


def _chunk_offsets(dataset: h5py.Dataset) -> np.ndarray | None:
    """File offset of each row, when every row is its own unfiltered, allocated chunk; else None."""
    if dataset.chunks is None or dataset.chunks[0] != 1 or dataset.chunks[1:] != dataset.shape[1:]:
        return None
    if dataset.compression is not None or dataset.id.get_create_plist().get_nfilters():
        return None
    row_bytes = dataset.dtype.itemsize * int(np.prod(dataset.shape[1:]))
    offsets = np.full(dataset.shape[0], -1, dtype=np.int64)
    for info in _chunk_infos(dataset.id):
        if info.size != row_bytes:
            return None
        offsets[info.chunk_offset[0]] = info.byte_offset
    return offsets if (offsets >= 0).all() else None


def _chunk_infos(dataset_id: h5py.h5d.DatasetID) -> list:
    """Every allocated chunk's offset in the dataset, size and offset in the file, in one pass over the chunk index.

    h5py leaves ``chunk_iter`` out when built on an HDF5 older than 1.10.10 or 1.12.3; then they are asked for one by
    one (:func:`_chunk_infos_one_by_one`), in time quadratic in their count.
    """
    if not hasattr(dataset_id, "chunk_iter"):
        return _chunk_infos_one_by_one(dataset_id)
    infos: list = []
    dataset_id.chunk_iter(infos.append)  # append returns None, which lets the iteration go on
    return infos


def _chunk_infos_one_by_one(dataset_id: h5py.h5d.DatasetID) -> list:
    """As :func:`_chunk_infos`, a chunk a call. ``get_chunk_info(i)`` walks the index from its start each time: at
    130,000 rows, about an hour per field (``python benchmarks/chunk_offsets.py``)."""
    return [dataset_id.get_chunk_info(i) for i in range(dataset_id.get_num_chunks())]


class PackedRows:
    """``fields`` of one packed file, opened for reading rows into caller-owned arrays from many threads."""

    def __init__(self, path: str | os.PathLike, fields: Sequence[str]):
        self.path = str(path)
        self.offsets: dict[str, np.ndarray] = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.lazy: set[str] = set()
        self.row_shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, np.dtype] = {}
        self._lock = threading.Lock()
        self._h5 = h5py.File(self.path, "r")
        missing = [name for name in fields if name not in self._h5]
        if missing:
            self._h5.close()
            raise KeyError(f"{self.path}: the packed file has no {missing}, needed for training")
        self.count = self._h5[fields[0]].shape[0] if fields else 0
        for name in fields:
            dataset = self._h5[name]
            self.row_shapes[name], self.dtypes[name] = dataset.shape[1:], dataset.dtype
            offsets = _chunk_offsets(dataset)
            if offsets is not None:
                self.offsets[name] = offsets
            elif dataset.nbytes <= SMALL_BYTES:
                self.arrays[name] = dataset[()]
            else:
                self.lazy.add(name)
        self._fd = os.open(self.path, os.O_RDONLY)

    def read(self, name: str, indices: np.ndarray, out: np.ndarray) -> None:
        """Rows ``indices`` of ``name`` into ``out`` (len(indices), *row shape), C-contiguous."""
        if name in self.arrays:
            out[...] = self.arrays[name][indices]
        elif name in self.offsets:
            offsets = self.offsets[name]
            for row, index in enumerate(indices):
                buffer = out[row].reshape(-1).view(np.uint8)
                if os.preadv(self._fd, [buffer], int(offsets[index])) != buffer.nbytes:
                    raise OSError(f"{self.path}: {name} row {index} is cut short (truncated file?)")
        else:
            with self._lock:
                for row, index in enumerate(indices):
                    self._h5[name].read_direct(out, np.s_[index], np.s_[row])

    def read_rows(self, indices: np.ndarray, arrays: Mapping[str, np.ndarray], first: int) -> None:
        """Rows ``indices`` of every field into rows ``first ...`` of ``arrays[field]``."""
        for name in self.row_shapes:
            self.read(name, indices, arrays[name][first : first + len(indices)])

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._h5.close()
