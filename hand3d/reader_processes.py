"""Rows of packed files read by worker processes straight into shared-memory batch buffers.

Reader threads in the training process take its GIL back after every row they read (one ``pread`` each), and the
thread that launches the GPU work then waits for the GIL each time it lets go of it, around every convolution and
kernel launch: the step becomes host-bound. Workers here are forked once, after the batch buffers are made in shared
memory, so they write into them directly; each opens the files itself. The training process only sends row lists
and waits for the answers, its GIL released while it waits. ``benchmarks/reader_contention.py`` measures the
difference.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import warnings
from collections.abc import Sequence

import torch

from hand3d.packed_rows import PackedRows

__all__ = ["ReaderProcesses"]

POLL_S = 1.0  # how often a waiting side checks that the other is still there


class ReaderProcesses:
    """``count`` processes reading rows of ``paths`` (their ``fields``) into ``buffers``, dicts of shared tensors.

    A job is ``(source, indices, first)``: rows ``indices`` of ``paths[source]`` go to rows ``first ...`` of every
    field of a buffer. Linux only (fork); the buffers must be in shared memory before the processes start.
    """

    def __init__(self, paths: Sequence[str], fields: Sequence[str], buffers: list[dict[str, torch.Tensor]], count: int):
        if not all(tensor.is_shared() for buffer in buffers for tensor in buffer.values()):
            raise ValueError("reader processes need every batch buffer in shared memory")
        self.paths = list(paths)
        context = multiprocessing.get_context("fork")
        self._tasks, self._answers = context.Queue(), context.Queue()
        arrays = [{name: buffer[name].numpy() for name in fields} for buffer in buffers]
        args = (self.paths, tuple(fields), arrays, self._tasks, self._answers, os.getpid())
        self._workers = [context.Process(target=_serve, args=args, daemon=True) for _ in range(count)]
        with warnings.catch_warnings():
            # Python 3.12+ warns on any fork of a threaded process: a child could find a lock held by another
            # thread. The workers only read files into shared memory and use no lock the parent's threads take.
            warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
            for worker in self._workers:
                worker.start()

    @property
    def pids(self) -> list[int]:
        return [worker.pid for worker in self._workers]

    def read(self, buffer: int, jobs: Sequence[tuple[int, object, int]]) -> None:
        """Do ``jobs`` into buffer number ``buffer``; return when all are done, raise if one failed."""
        for source, indices, first in jobs:
            self._tasks.put((buffer, source, indices, first))
        for _ in jobs:
            self._wait_for_answer()

    def _wait_for_answer(self) -> None:
        while True:
            try:
                failure = self._answers.get(timeout=POLL_S)
            except queue.Empty:
                for worker in self._workers:
                    if not worker.is_alive():
                        raise RuntimeError(
                            f"reader process {worker.pid} ended (exit code {worker.exitcode}) while reading "
                            f"{', '.join(self.paths)}"
                        ) from None
                continue
            if failure:
                raise RuntimeError(f"reading training batches: {failure}")
            return

    def close(self) -> None:
        for _ in self._workers:
            self._tasks.put(None)
        for worker in self._workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
                worker.join()
        self._tasks.close()
        self._answers.close()


def _serve(paths, fields, arrays, tasks, answers, parent: int) -> None:
    """A worker: open the files, then do jobs until told to stop or the training process is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the training process, which stops the workers
    try:
        files = [PackedRows(path, fields) for path in paths]
    except Exception as error:  # reported to the training process, which raises it
        answers.put(f"{type(error).__name__}: {error}")
        return
    while os.getppid() == parent:
        try:
            task = tasks.get(timeout=POLL_S)
        except queue.Empty:
            continue
        if task is None:
            break
        buffer, source, indices, first = task
        try:
            files[source].read_rows(indices, arrays[buffer], first)
            answers.put("")
        except Exception as error:
            answers.put(f"{type(error).__name__}: {error}")
    for f in files:
        f.close()
