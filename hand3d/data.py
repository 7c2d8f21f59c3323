"""Training batches from packed HDF5 files (DESIGN section 2): mixed sources, deterministic per step, no decoding.

A :class:`PackedBatches` is an endless stream of whole batches. Batch ``k`` is drawn from its own random generator
seeded with ``(seed, rank, k)``: how many samples each source gives (multinomial over the source weights), which
samples (uniform, without repeats within a source where it has enough), and the per-sample augmentation parameters
(:func:`hand3d.augment.draw_augmentation`). So the stream is the same whatever the number of reader threads, and a
run resumed at step ``k`` sees exactly the batches an uninterrupted run would have seen.

Reading (:class:`hand3d.packed_rows.PackedRows`): images, masks and heatmaps are stored raw, one sample per chunk,
so each row is one ``pread`` from the file (page cache) straight into the batch buffer: no decoding, no copy
between processes. The readers are threads of this process, or, for a GPU, worker processes
(:mod:`hand3d.reader_processes`) writing into shared-memory buffers, so that they do not compete for the GIL with
the thread launching the GPU work. :func:`device_batches` then copies the batch to the GPU on a side stream ahead
of its use, from page-locked memory (pinned buffers, or the shared ones registered with CUDA) so that the copy is
the GPU's DMA and not the CPU's. Samples stay in crop pixels at 320x320; resizing and augmentation happen on the device.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import h5py
import numpy as np
import torch

from hand3d.augment import AUGMENT_COLUMNS, AugmentConfig, draw_augmentation
from hand3d.h5io import open_packed
from hand3d.packed_rows import PackedRows
from hand3d.reader_processes import ReaderProcesses

__all__ = [
    "PRETRAIN_FIELDS",
    "TRAIN_FIELDS",
    "PackedBatches",
    "Source",
    "device_batches",
    "page_locked",
    "to_device",
]

PRETRAIN_FIELDS = ("images", "params", "keypoints_2d")
TRAIN_FIELDS = ("images", "keypoints_2d", "keypoints_3d", "has_3d", "masks", "has_mask")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """One packed file and its share of each batch (weights are relative)."""

    path: str
    weight: float = 1.0


def _open_source(source: Source, fields: Sequence[str]) -> PackedRows:
    """The source's rows, after checking its weight, its layout (:func:`hand3d.h5io.open_packed`) and its size."""
    if not source.weight > 0:
        raise ValueError(f"{source.path}: dataset weight must be > 0, got {source.weight}")
    open_packed(source.path).close()
    rows = PackedRows(source.path, fields)
    if rows.count == 0:
        rows.close()
        raise ValueError(f"{source.path}: no samples to train on")
    return rows


def all_have(sources: Sequence[Source], field: str) -> bool:
    """Whether every source stores ``field`` (e.g. the optional ``heatmaps``)."""
    for source in sources:
        with h5py.File(source.path, "r") as f:
            if field not in f:
                return False
    return True


class PackedBatches:
    """Batches of ``fields`` from ``sources``: dicts of CPU tensors, plus the ``augment`` parameters.

    ``batch_size`` samples per batch (this process's share under DDP); ``rank`` separates the streams of DDP
    processes; ``start_step`` is the first batch's index (resume). ``threads`` reader threads share each batch's
    rows; with ``processes`` > 0, that many reader processes do instead, into buffers from ``allocate(shared=True)``
    made before :meth:`start_processes`. Boolean fields come as bool tensors, the rest in their stored dtype (images
    and masks uint8).
    """

    def __init__(
        self,
        sources: Sequence[Source],
        batch_size: int,
        fields: Sequence[str],
        seed: int = 0,
        rank: int = 0,
        start_step: int = 0,
        augment: AugmentConfig | None = None,
        threads: int = 1,
        processes: int = 0,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sources = list(sources)
        self.fields = tuple(fields)
        self.files = [_open_source(source, self.fields) for source in self.sources]
        _check_row_shapes(self.files, self.fields)
        self.counts = [f.count for f in self.files]
        self.batch_size = batch_size
        self.seed, self.rank, self.start_step = seed, rank, start_step
        self.augment = augment or AugmentConfig()
        weights = np.array([s.weight for s in self.sources], dtype=np.float64)
        self.probabilities = weights / weights.sum()
        self.threads = max(1, threads)
        self.processes = max(0, processes)
        threaded = self.threads > 1 and not self.processes
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="hand3d-read") if threaded else None
        self._shared: list[dict[str, torch.Tensor]] = []
        self._readers: ReaderProcesses | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._readers is not None:
            self._readers.close()
            self._readers = None
        for f in self.files:
            f.close()

    def start_processes(self) -> None:
        """Start the reader processes (after every buffer they fill is allocated)."""
        if self.processes and self._readers is None:
            paths = [source.path for source in self.sources]
            self._readers = ReaderProcesses(paths, self.fields, self._shared, self.processes)

    @property
    def reader_pids(self) -> list[int]:
        """The reader processes' ids (none before :meth:`start_processes` or without processes)."""
        return [] if self._readers is None else self._readers.pids

    def allocate(self, pin: bool = False, shared: bool = False) -> dict[str, torch.Tensor]:
        """Empty host tensors for one batch: pinned for asynchronous copies to a GPU, or in shared memory for the
        reader processes."""
        first = self.files[0]
        out = {
            name: torch.empty((self.batch_size, *first.row_shapes[name]), dtype=_torch_dtype(first.dtypes[name]))
            for name in self.fields
        }
        out["augment"] = torch.empty((self.batch_size, len(AUGMENT_COLUMNS)), dtype=torch.float32)
        if shared:
            if self._readers is not None:
                raise RuntimeError("shared batch buffers must be allocated before the reader processes start")
            out = {k: v.share_memory_() for k, v in out.items()}
            self._shared.append(out)
            return out
        return {k: v.pin_memory() for k, v in out.items()} if pin else out

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """Batch number ``step`` of the stream (the same every time it is asked for)."""
        out = self.allocate()
        self.fill(step, out)
        return out

    def fill(self, step: int, out: dict[str, torch.Tensor]) -> None:
        """Read batch ``step`` into the tensors of :meth:`allocate` (by the reader processes if they share ``out``,
        else in this process)."""
        rng = np.random.default_rng([self.seed, self.rank, step])
        per_source = rng.multinomial(self.batch_size, self.probabilities)
        picks = [_pick(rng, count, n) for count, n in zip(self.counts, per_source, strict=True)]
        out["augment"].numpy()[...] = draw_augmentation(rng, self.batch_size, self.augment)
        jobs, row = [], 0
        for source, indices in enumerate(picks):
            for part in np.array_split(np.arange(len(indices)), max(self.threads, self.processes)):
                if len(part):
                    jobs.append((source, indices[part], row + part[0]))
            row += len(indices)
        shared = next((i for i, buffer in enumerate(self._shared) if buffer is out), None)
        if self._readers is not None and shared is not None:
            self._readers.read(shared, jobs)
            return
        arrays = {name: out[name].numpy() for name in self.fields}

        def read(job) -> None:
            source, indices, first = job
            self.files[source].read_rows(indices, arrays, first)

        if self._pool is None:
            for job in jobs:
                read(job)
        else:
            for done in [self._pool.submit(read, job) for job in jobs]:
                done.result()


def _check_row_shapes(files: list[PackedRows], fields: Sequence[str]) -> None:
    for f in files[1:]:
        for name in fields:
            if f.row_shapes[name] != files[0].row_shapes[name]:
                raise ValueError(
                    f"{f.path}: {name} has shape {f.row_shapes[name]} per sample, "
                    f"but {files[0].path} has {files[0].row_shapes[name]}"
                )


def _pick(rng: np.random.Generator, count: int, n: int) -> np.ndarray:
    """``n`` sample indices of ``count``, distinct where possible, sorted (sequential reads)."""
    return np.sort(rng.choice(count, size=n, replace=n > count))


@functools.cache
def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=dtype)).dtype


def device_batches(stream: PackedBatches, device: torch.device, depth: int = 3) -> Iterator[dict]:
    """Endless batches from ``stream.start_step`` on, on ``device``.

    On CUDA a background thread reads batch ``k + 1 ... k + depth`` into host buffers (pinned for reader threads,
    shared for reader processes) and copies each on a side stream while the training stream computes batch ``k``:
    the thread launching the training kernels never waits for the disk or the copy.
    """
    if device.type != "cuda":
        yield from _host_batches(stream)
        return
    buffers = [stream.allocate(pin=not stream.processes, shared=bool(stream.processes)) for _ in range(depth)]
    stream.start_processes()  # forked here, by the main thread, before the read-ahead thread exists
    ready: queue.Queue = queue.Queue(maxsize=depth - 1)
    stop = threading.Event()
    thread = threading.Thread(target=_read_ahead, args=(stream, device, buffers, ready, stop), daemon=True)
    thread.start()
    main = torch.cuda.current_stream(device)
    try:
        while True:
            item = ready.get()
            if isinstance(item, BaseException):
                raise item
            batch, copied = item
            main.wait_event(copied)
            for tensor in batch.values():
                tensor.record_stream(main)  # allocated on the side stream, used on this one
            yield batch
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.1)


def _host_batches(stream: PackedBatches) -> Iterator[dict]:
    buffer = stream.allocate(shared=bool(stream.processes))
    stream.start_processes()
    step = stream.start_step
    while True:
        stream.fill(step, buffer)
        yield {name: tensor.clone() for name, tensor in buffer.items()}  # the buffer is refilled next step
        step += 1


def _read_ahead(stream: PackedBatches, device: torch.device, buffers: list[dict], ready: queue.Queue, stop) -> None:
    try:
        side = torch.cuda.Stream(device)
        copies: list[torch.cuda.Event | None] = [None] * len(buffers)
        step = stream.start_step
        with page_locked(buffers if stream.processes else [], side):
            while not stop.is_set():
                slot = step % len(buffers)
                if copies[slot] is not None:
                    copies[slot].synchronize()  # the buffer's previous copy to the device is done
                stream.fill(step, buffers[slot])
                with torch.cuda.stream(side):
                    moved = to_device(buffers[slot], device)
                    copies[slot] = torch.cuda.Event()
                    copies[slot].record(side)
                ready.put((moved, copies[slot]))
                step += 1
    except BaseException as error:  # handed to the consuming thread, which raises it
        ready.put(error)


@contextlib.contextmanager
def page_locked(buffers: Sequence[Mapping[str, torch.Tensor]], side: torch.cuda.Stream):
    """Host buffers registered with CUDA (page-locked, as pinned memory is) while inside; ``side``, the stream
    copying from them, is drained before they are released.

    Shared memory cannot come from CUDA's pinned allocator, and a copy from pageable memory is the CPU's: it stages
    the bytes and returns when they are on their way. Registered, the copy is the GPU's DMA, asynchronous. A buffer
    that cannot be registered is copied as before, with a warning. Called from the copying thread: a failed call
    leaves its error as that thread's CUDA "last error", and no kernel launched there would report it.
    """
    cudart = torch.cuda.cudart()
    registered = []
    try:
        storages = [tensor.untyped_storage() for buffer in buffers for tensor in buffer.values()]
        for storage in (storage for storage in storages if storage.nbytes()):
            error = int(cudart.cudaHostRegister(storage.data_ptr(), storage.nbytes(), 0))
            if error:
                log.warning(
                    "could not page-lock a %d-byte batch buffer (cudaError %d): staged copies", storage.nbytes(), error
                )
            else:
                registered.append(storage.data_ptr())
        yield
    finally:
        side.synchronize()
        for address in registered:
            cudart.cudaHostUnregister(address)


def to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Every tensor of a batch on ``device``."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
