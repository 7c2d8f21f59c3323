"""How long opening a packed file for training takes to find its rows (``python benchmarks/chunk_offsets.py``).

Training reads each image, mask and heatmap row at its chunk's file offset (:mod:`hand3d.packed_rows`), and finds
those offsets when it opens the file, in every reader process. This times that scan on files laid out as
:class:`hand3d.h5io.PackedWriter` writes them (one row a chunk, unfiltered, appended in blocks of 128, default file
format) against the baseline, asking HDF5 for the chunks one by one, which is quadratic in their count. The chunk
index does not depend on a row's size, so the rows here are 64 bytes and the files stay small.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py

from hand3d.packed_rows import _chunk_infos_one_by_one, _chunk_offsets

ROW = (64,)
BLOCK = 128


def write_rows(path: Path, count: int) -> None:
    with h5py.File(path, "w") as f:
        dataset = f.create_dataset("images", shape=(0, *ROW), maxshape=(None, *ROW), chunks=(1, *ROW), dtype="u1")
        for start in range(0, count, BLOCK):
            dataset.resize(min(count, start + BLOCK), axis=0)
            dataset[start:] = start % 251


def seconds(scan, path: Path) -> float:
    with h5py.File(path, "r") as f:
        start = time.perf_counter()
        scan(f["images"])
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[2000, 8000, 32000], help="rows per file")
    parser.add_argument("--one-by-one-up-to", type=int, default=32000, help="time the baseline up to this many rows")
    args = parser.parse_args()
    print(f"{'rows':>8} {'one pass s':>11} {'one by one s':>13} {'ratio':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.rows:
            path = Path(tmp) / f"rows_{count}.h5"
            write_rows(path, count)
            fast = seconds(_chunk_offsets, path)
            if count > args.one_by_one_up_to:
                print(f"{count:>8} {fast:>11.3f} {'-':>13} {'-':>8}")
                continue
            slow = seconds(lambda dataset: _chunk_infos_one_by_one(dataset.id), path)
            print(f"{count:>8} {fast:>11.3f} {slow:>13.3f} {slow / fast:>8.0f}")


if __name__ == "__main__":
    main()
