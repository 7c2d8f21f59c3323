"""How much the batch readers slow the thread that launches the training work (``python benchmarks/...``).

On a GPU the training step is launch-bound unless the Python thread queueing kernels runs well ahead, and it lets go
of the GIL around every kernel launch and convolution. Reader threads in the same process take the GIL after every
row they read, so that thread waits. This measures it on any machine: a main thread runs short torch operations (each
releases the GIL, like a launch) alone, then beside the readers filling batches without pause, as threads of this
process and as reader processes (:mod:`hand3d.reader_processes`). It prints operations per second and the ratio to
running alone (the baseline).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import torch

from hand3d.bench_train import mano_sized_hand, write_bench_dataset
from hand3d.data import PRETRAIN_FIELDS, PackedBatches, Source


def short_ops_per_second(seconds: float) -> float:
    a, out = torch.randn(48, 48), torch.empty(48, 48)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, a, out=out)
        count += 1
    return count / seconds


def beside_readers(data: str, batch: int, threads: int, processes: int, seconds: float, period: float) -> float:
    stream = PackedBatches([Source(data)], batch, PRETRAIN_FIELDS, threads=threads, processes=processes)
    buffer = stream.allocate(shared=bool(processes))
    stream.start_processes()
    stop = threading.Event()

    def read() -> None:
        step, due = 0, time.perf_counter()
        while not stop.is_set():
            stream.fill(step, buffer)
            step += 1
            due += period  # one batch per training step, as the read-ahead does once its queue is full
            time.sleep(max(0.0, due - time.perf_counter()))

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.5)
    try:
        return short_ops_per_second(seconds)
    finally:
        stop.set()
        reader.join()
        stream.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, nargs="+", default=[2, 16])
    parser.add_argument("--samples", type=int, default=1024, help="samples in the packed file (320 px crops)")
    parser.add_argument("--batch", type=int, default=256, help="paper-scale GPU batch")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--step-ms", type=float, default=35.0, help="one batch read per step of this length")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        hand, data = str(Path(tmp) / "hand.npz"), str(Path(tmp) / "bench.h5")
        mano_sized_hand(hand)
        write_bench_dataset(data, hand, args.samples)
        alone = short_ops_per_second(args.seconds)
        print(f"main thread alone: {alone:,.0f} short ops/s")
        print(f"{'readers':>8} {'as threads':>12} {'ratio':>6} {'as processes':>13} {'ratio':>6}")
        for count in args.readers:
            period = args.step_ms / 1e3
            threaded = beside_readers(data, args.batch, count, 0, args.seconds, period)
            forked = beside_readers(data, args.batch, 1, count, args.seconds, period)
            print(f"{count:>8} {threaded:>12,.0f} {threaded / alone:>6.2f} {forked:>13,.0f} {forked / alone:>6.2f}")


if __name__ == "__main__":
    main()
