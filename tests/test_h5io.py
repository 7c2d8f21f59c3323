"""The packed HDF5 layout on real h5py: round trips, defaults, checksum, atomic writes, clear errors, concatenation."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hand3d import __version__
from hand3d.h5io import (
    CROP_SIZE,
    FIELDS,
    LAYOUT_VERSION,
    PackedWriter,
    concat_packed,
    content_checksum,
    fields_checksum,
    open_packed,
    read_samples,
    validate_packed,
)

P = 5


def make_batch(n: int, seed: int, prefix: str = "sample", full: bool = True) -> dict:
    """n samples with distinct known values; `full` gives every field, else only the ones a batch must give."""
    rng = np.random.default_rng(seed)
    keypoints_2d = rng.uniform(0, CROP_SIZE - 1, (n, 21, 3)).astype(np.float32)
    keypoints_2d[..., 2] = rng.integers(0, 2, (n, 21))
    batch = {
        "images": rng.integers(0, 256, (n, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8),
        "keypoints_2d": keypoints_2d,
        "names": [f"{prefix}_{seed}_{i}" for i in range(n)],
    }
    if full:
        is_left = rng.integers(0, 2, n).astype(bool)
        crop_box = np.column_stack([rng.uniform(0, 500, (n, 3)), is_left]).astype(np.float32)
        batch |= {
            "keypoints_3d": rng.normal(0, 0.1, (n, 21, 3)).astype(np.float32),
            "masks": rng.integers(0, 2, (n, CROP_SIZE, CROP_SIZE), dtype=np.uint8),
            "params": rng.normal(0, 1, (n, P)).astype(np.float32),
            "has_mask": np.ones(n, bool),
            "has_3d": np.ones(n, bool),
            "has_params": np.ones(n, bool),
            "is_left": is_left,
            "crop_box": crop_box,
        }
    return batch


def write(path, *batches, **kwargs) -> None:
    with PackedWriter(path, "test", "train", kwargs.pop("num_params", P), **kwargs) as writer:
        for batch in batches:
            writer.append(batch)


def concat_batches(*batches) -> dict:
    return {key: np.concatenate([np.asarray(b[key]) for b in batches]) for key in batches[0]}


def read_all(path) -> dict:
    with open_packed(path) as f:
        return {key: (f[key].asstr()[()] if key == "names" else f[key][()]) for key in f}


def assert_fields_equal(data: dict, expected: dict) -> None:
    for key, value in expected.items():
        np.testing.assert_array_equal(data[key], np.asarray(value), err_msg=key)


def test_round_trip_two_batches(tmp_path):
    first, second = make_batch(3, seed=1), make_batch(2, seed=2)
    second["names"] = ["Ärger_ñ.jpg", "手_✋.png"]
    path = tmp_path / "out" / "test_train.h5"  # the writer creates the folder
    write(path, first, second)
    data = read_all(path)
    assert_fields_equal(data, concat_batches(first, second))
    assert list(data["names"][3:]) == ["Ärger_ñ.jpg", "手_✋.png"]
    assert {f.name for f in FIELDS if f.required} == set(data)
    with open_packed(path) as f:
        assert f["images"].chunks == (1, CROP_SIZE, CROP_SIZE, 3) and f["masks"].chunks == (1, CROP_SIZE, CROP_SIZE)
        assert f["images"].maxshape[0] is None and f["images"].compression is None


def test_optional_vertices_and_heatmaps_round_trip(tmp_path):
    batch = make_batch(2, seed=3)
    rng = np.random.default_rng(0)
    batch["vertices"] = rng.normal(0, 0.1, (2, 7, 3)).astype(np.float32)
    batch["heatmaps"] = rng.integers(0, 256, (2, 21, 8, 6), dtype=np.uint8)
    path = tmp_path / "opt.h5"
    write(path, batch, num_vertices=7, heatmap_size=(8, 6))
    assert_fields_equal(read_all(path), batch)
    summary = validate_packed(path)
    assert summary["optional"] == ["heatmaps", "vertices"]
    assert summary["num_vertices"] == 7 and summary["heatmap_size"] == (8, 6) and summary["num_samples"] == 2


def test_field_digests_follow_only_their_own_fields(tmp_path):
    """Redrawn heatmaps change the heatmaps' digest and the file's, not the digest of the other fields."""
    batch = make_batch(2, seed=3)
    batch["heatmaps"] = np.random.default_rng(0).integers(0, 256, (2, 21, 8, 6), dtype=np.uint8)
    first, second = tmp_path / "a.h5", tmp_path / "b.h5"
    write(first, batch, heatmap_size=(8, 6))
    write(second, batch | {"heatmaps": batch["heatmaps"] // 2}, heatmap_size=(8, 6))
    read = ["images", "keypoints_2d", "masks"]
    assert fields_checksum(first, read) == fields_checksum(second, read) == fields_checksum(first, read[::-1])
    assert fields_checksum(first, [*read, "heatmaps"]) != fields_checksum(second, [*read, "heatmaps"])
    assert validate_packed(first)["content_sha256"] != validate_packed(second)["content_sha256"]
    assert fields_checksum(first, ["images"]) != fields_checksum(first, ["masks"])
    with pytest.raises(ValueError, match=r"a\.h5: field_sha256 has no digest of \['vertices'\]"):
        fields_checksum(first, ["vertices"])

    with h5py.File(first, "r") as f:
        other = f.attrs["field_sha256"]
    with h5py.File(second, "r+") as f:  # digests swapped behind the writer's back are caught
        f.attrs["field_sha256"] = other
    with pytest.raises(ValueError, match=r"b\.h5: field_sha256 does not match the data"):
        validate_packed(second)
    with h5py.File(second, "r+") as f:  # a file from before the per-field digests
        del f.attrs["field_sha256"]
    assert fields_checksum(second, read) is None and validate_packed(second)["num_samples"] == 2


def test_defaults_for_absent_optional_fields(tmp_path):
    minimal = make_batch(2, seed=4, full=False)
    left_box = make_batch(2, seed=5, full=False) | {"crop_box": np.array([[1, 2, 3, 1], [4, 5, 6, 0]], np.float32)}
    path = tmp_path / "defaults.h5"
    write(path, minimal, left_box, num_vertices=4)
    data = read_all(path)
    assert np.isnan(data["keypoints_3d"]).all() and np.isnan(data["params"]).all() and np.isnan(data["vertices"]).all()
    assert not data["masks"].any()
    assert not data["has_mask"].any() and not data["has_3d"].any() and not data["has_params"].any()
    np.testing.assert_array_equal(data["is_left"], [False, False, True, False])  # from the crop_box mirrored flag
    assert np.isnan(data["crop_box"][:2, :3]).all() and (data["crop_box"][:2, 3] == 0).all()
    # given data switches its flag on by default: masks given -> has_mask, finite keypoints_3d -> has_3d
    given = make_batch(2, seed=6, full=False) | {"masks": np.zeros((2, CROP_SIZE, CROP_SIZE), bool)}
    given["keypoints_3d"] = np.stack([np.ones((21, 3)), np.full((21, 3), np.nan)])  # float64 is cast
    write(path, given)
    data = read_all(path)
    assert data["has_mask"].all() and list(data["has_3d"]) == [True, False] and data["masks"].dtype == np.uint8


def test_attributes_and_checksum(tmp_path):
    path = tmp_path / "a.h5"
    batch = make_batch(3, seed=7)
    write(path, batch)
    with open_packed(path) as f:
        attrs = dict(f.attrs)
        recomputed = content_checksum(f)
    assert attrs["layout_version"] == LAYOUT_VERSION and attrs["crop_size"] == CROP_SIZE
    assert attrs["source"] == "test" and attrs["split"] == "train" and attrs["keypoint_order"] == "openpose21"
    assert attrs["hand3d_version"] == __version__ and attrs["num_params"] == P
    assert re.fullmatch(r"[0-9a-f]{64}", attrs["content_sha256"]) and attrs["content_sha256"] == recomputed

    again = tmp_path / "b.h5"
    write(again, {k: v[:1] for k, v in batch.items()}, {k: v[1:] for k, v in batch.items()})
    assert validate_packed(again)["content_sha256"] == recomputed, "same data, other batch sizes: same checksum"

    batch["images"][2, 10, 20, 1] ^= 1
    changed = tmp_path / "c.h5"
    write(changed, batch)
    assert validate_packed(changed)["content_sha256"] != recomputed

    with h5py.File(again, "r+") as f:  # an edit behind the writer's back is caught
        f["keypoints_2d"][0, 0, 0] += 1
    with pytest.raises(ValueError, match=f"{re.escape(str(again))}: content_sha256 does not match"):
        validate_packed(again)


def test_exception_inside_the_writer_leaves_no_file(tmp_path):
    path = tmp_path / "x.h5"
    with pytest.raises(RuntimeError, match="boom"), PackedWriter(path, "test", "train", P) as writer:
        writer.append(make_batch(2, seed=8))
        assert len(list(tmp_path.iterdir())) == 1 and not path.exists()  # only the temporary file
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_append_caught_inside_the_block_still_writes_nothing(tmp_path):
    path = tmp_path / "x.h5"
    with PackedWriter(path, "test", "train", P) as writer:
        with pytest.raises(ValueError, match=r"x\.h5: field 'images': expected shape"):
            writer.append(make_batch(1, seed=9) | {"images": np.zeros((1, 3, 3, 3), np.uint8)})
        writer.append(make_batch(1, seed=9))  # a rejected batch wrote nothing, so the file stays consistent
    assert validate_packed(path)["num_samples"] == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("images", np.zeros((2, 320, 320), np.uint8)),
        ("images", np.zeros((2, 320, 320, 3), np.int64)),
        ("keypoints_2d", np.zeros((2, 20, 3), np.float32)),
        ("keypoints_2d", np.zeros((2, 21, 3), np.complex64)),
        ("masks", np.zeros((2, 320, 320), np.float32)),
        ("params", np.zeros((2, P + 1), np.float32)),
        ("is_left", np.zeros(2, np.int8)),
        ("names", ["only one"]),
        ("names", [b"bytes", b"names"]),
    ],
)
def test_wrong_shape_or_dtype_names_the_field(tmp_path, field, value):
    with PackedWriter(tmp_path / "x.h5", "test", "train", P) as writer:
        with pytest.raises(ValueError, match=f"'{field}'"):
            writer.append(make_batch(2, seed=10) | {field: value})
        writer.append(make_batch(1, seed=10))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"has_3d": np.zeros(2, bool)}, "keypoints_3d / has_3d"),
        ({"has_mask": np.zeros(2, bool)}, "masks / has_mask"),
        ({"masks": np.full((2, 320, 320), 2, np.uint8)}, "'masks'"),
        ({"is_left": np.array([True, True])}, "'crop_box'"),
        ({"vertices": np.zeros((2, 4, 3), np.float32)}, "vertices"),
        ({"colour": np.zeros(2)}, "colour"),
    ],
)
def test_inconsistent_batches_are_refused(tmp_path, change, message):
    batch = make_batch(2, seed=11)
    batch["crop_box"][:, 3] = batch["is_left"] = np.array([False, False])
    with pytest.raises(ValueError, match=re.escape(message)), PackedWriter(tmp_path / "x.h5", "t", "t", P) as w:
        w.append(batch | change)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("field", "index", "value", "message"),
    [
        ("keypoints_3d", (1, 4, 2), np.nan, "keypoints_3d / has_3d: samples with the flag true must be finite"),
        ("params", (0, 3), np.inf, "params / has_params: samples with the flag true must be finite"),
        ("keypoints_2d", (1, 7, 2), 0.5, "visibility (last column) must be 0 or 1"),
        ("keypoints_2d", (0, 0, 2), 2.0, "visibility (last column) must be 0 or 1"),
    ],
)
def test_bad_values_in_one_sample_are_refused(tmp_path, field, index, value, message):
    batch = make_batch(2, seed=11)
    batch[field][index] = value
    with pytest.raises(ValueError, match=re.escape(message)), PackedWriter(tmp_path / "x.h5", "t", "t", P) as w:
        w.append(batch)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("keypoint_order", "stb", "attribute 'keypoint_order' is 'stb', expected 'openpose21'"),
        ("crop_size", 256, "attribute 'crop_size' is 256, expected 320"),
        ("num_params", P + 1, f"attribute 'num_params' is {P + 1}, expected {P}"),
        ("source", None, "attribute 'source' missing"),
    ],
)
def test_validate_refuses_other_attributes(tmp_path, key, value, message):
    """A file in another keypoint order (STB's, say) would train on scrambled joints if it were read."""
    path = tmp_path / "a.h5"
    write(path, make_batch(2, seed=3))
    with h5py.File(path, "r+") as f:
        if value is None:
            del f.attrs[key]
        else:
            f.attrs[key] = value
    for check in (validate_packed, open_packed):  # open_packed: what training and evaluation read through
        with pytest.raises(ValueError, match=f"{re.escape(str(path))}: {re.escape(message)}"):
            check(path)


def test_open_packed_errors(tmp_path):
    missing = tmp_path / "missing.h5"
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(missing))}: packed dataset file not found$"):
        open_packed(missing)
    workflow_output = "results/datasets/no_such_set_test.h5"  # only the workflow's own outputs get the hint
    with pytest.raises(FileNotFoundError, match=f"not found; build it with snakemake {workflow_output}$"):
        open_packed(workflow_output)

    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match=f"{re.escape(str(text))}: not an HDF5 file"):
        open_packed(text)

    old = tmp_path / "old.h5"
    write(old, make_batch(1, seed=12))
    with h5py.File(old, "r+") as f:
        f.attrs["layout_version"] = LAYOUT_VERSION + 6
    expected = f"{old}: packed layout version {LAYOUT_VERSION + 6}, this hand3d reads {LAYOUT_VERSION}"
    with pytest.raises(ValueError, match=re.escape(expected) + "$"):
        open_packed(old)

    short = tmp_path / "short.h5"
    write(short, make_batch(2, seed=13))
    with h5py.File(short, "r+") as f:
        f["has_3d"].resize(1, axis=0)
    with pytest.raises(ValueError, match=f"{re.escape(str(short))}: datasets disagree"):
        open_packed(short)
    with h5py.File(short, "r+") as f:
        del f["has_3d"]
    with pytest.raises(ValueError, match=r"missing datasets \['has_3d'\]"):
        open_packed(short)

    cut = tmp_path / "cut.h5"
    write(cut, make_batch(4, seed=15))
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"{re.escape(str(cut))}: not a readable HDF5 file .*truncated"):
        open_packed(cut)


def test_validate_names_the_dataset(tmp_path):
    path = tmp_path / "v.h5"
    write(path, make_batch(2, seed=14))
    with h5py.File(path, "r+") as f:
        del f["crop_box"]
        f.create_dataset("crop_box", data=np.zeros((2, 4), np.float64))
    for check in (validate_packed, open_packed):
        with pytest.raises(ValueError, match=f"{re.escape(str(path))}: dataset 'crop_box': dtype float64"):
            check(path)
    with h5py.File(path, "r+") as f:
        del f["crop_box"], f["images"]
        f.create_dataset("crop_box", data=np.zeros((2, 4), np.float32))
        f.create_dataset("images", data=np.zeros((2, 256, 256, 3), np.uint8))
    with pytest.raises(ValueError, match=r"dataset 'images': shape \(2, 256, 256, 3\), the layout says \('N', 320"):
        open_packed(path)


def test_read_samples_any_order(tmp_path):
    batch = make_batch(4, seed=15)
    path = tmp_path / "r.h5"
    write(path, batch)
    indices = [3, 0, 3, -3]
    got = read_samples(path, indices)
    for key in batch:
        np.testing.assert_array_equal(got[key], np.asarray(batch[key])[indices], err_msg=key)
    assert read_samples(path, [1], fields=["names"]).keys() == {"names"}
    with pytest.raises(IndexError, match=re.escape(str(path))):
        read_samples(path, [4])


def test_concat_packed(tmp_path):
    batches = [make_batch(n, seed=20 + n, prefix="shard") for n in (3, 1, 2)]
    shards = []
    for i, batch in enumerate(batches):
        shards.append(tmp_path / f"shard_{i}.h5")
        write(shards[-1], batch)
    out = tmp_path / "all.h5"
    concat_packed([str(s) for s in shards], str(out), source="synthetic", split="test", block_samples=2)
    assert_fields_equal(read_all(out), concat_batches(*batches))
    summary = validate_packed(out)
    assert (summary["source"], summary["split"], summary["num_samples"]) == ("synthetic", "test", 6)

    direct = tmp_path / "direct.h5"
    write(direct, concat_batches(*batches))
    assert summary["content_sha256"] == validate_packed(direct)["content_sha256"]


def test_concat_refuses_other_num_params(tmp_path):
    good, odd = tmp_path / "good.h5", tmp_path / "odd.h5"
    write(good, make_batch(1, seed=30))
    write(odd, make_batch(1, seed=31, full=False), num_params=P + 2)
    out = tmp_path / "all.h5"
    with pytest.raises(ValueError, match=f"{re.escape(str(odd))}: num_params {P + 2}, but .*good.h5 has {P}"):
        concat_packed([good, odd], out, source="s", split="t")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["good.h5", "odd.h5"]


def test_a_packed_file_killed_mid_write_leaves_a_temporary_that_the_next_writer_removes(tmp_path):
    path = tmp_path / "x.h5"
    script = (
        "import os, signal, sys\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from test_h5io import P, make_batch\n"
        "from hand3d.h5io import PackedWriter\n"
        "with PackedWriter(sys.argv[1], 'test', 'train', P) as writer:\n"
        "    writer.append(make_batch(2, seed=8))\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path), str(Path(__file__).parent)], capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    [left] = list(tmp_path.iterdir())
    assert left.name.startswith(".x.h5~") and not path.exists()
    write(path, make_batch(3, seed=1))
    assert list(tmp_path.iterdir()) == [path] and len(read_all(path)["names"]) == 3
