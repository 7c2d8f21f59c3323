"""Training batches from packed files and the on-device augmentation: determinism, mixing, label consistency."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
import torch
import torch.nn.functional as F

from hand3d.augment import AugmentConfig, augment_batch, render_heatmaps, unit_noise
from hand3d.camera import project_weak_perspective
from hand3d.data import PRETRAIN_FIELDS, TRAIN_FIELDS, PackedBatches, Source, device_batches, page_locked
from hand3d.h5io import PackedWriter, read_samples

OFF = AugmentConfig(enabled=False)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_batch_is_a_function_of_the_step_whatever_the_readers(synthetic_packed, device):
    """On CUDA the batches are read ahead into pinned (threads) or page-locked shared (processes) buffers and copied
    on a side stream."""
    source = [Source(str(synthetic_packed))]
    expected = [PackedBatches(source, 6, TRAIN_FIELDS, seed=3).batch(step) for step in range(5, 10)]
    for threads, processes in ((1, 0), (3, 0), (1, 2)):
        stream = PackedBatches(source, 6, TRAIN_FIELDS, seed=3, start_step=5, threads=threads, processes=processes)
        batches = device_batches(stream, torch.device(device))
        got = [{k: v.cpu() for k, v in batch.items()} for batch, _ in zip(batches, range(4), strict=False)]
        assert len(stream.reader_pids) == processes
        got.append(stream.batch(9))  # a buffer the reader processes do not share: read in this process
        batches.close()
        stream.close()
        for want, have in zip(expected, got, strict=True):
            for name in (*TRAIN_FIELDS, "augment"):
                assert torch.equal(want[name], have[name]), (threads, processes, name)
    assert not torch.equal(expected[0]["images"], expected[1]["images"])


@pytest.mark.cuda
def test_shared_buffers_are_page_locked_while_copied_from():
    buffer = {"images": torch.zeros(4, 8, 8, 3, dtype=torch.uint8).share_memory_(), "empty": torch.zeros(0)}
    side = torch.cuda.Stream()
    with page_locked([buffer], side):
        assert buffer["images"].is_pinned()
        with torch.cuda.stream(side):
            copied = buffer["images"].add_(7).to("cuda", non_blocking=True)
    assert not buffer["images"].is_pinned()
    assert int(copied.sum()) == 7 * buffer["images"].numel()


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, ended but not yet reaped by whoever adopted it, does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _started_reader_processes(path, count: int) -> tuple[PackedBatches, dict]:
    stream = PackedBatches([Source(str(path))], 4, TRAIN_FIELDS, processes=count)
    buffer = stream.allocate(shared=True)
    stream.start_processes()
    return stream, buffer


def test_reader_processes_report_a_bad_file_by_name_and_stop_on_close(synthetic_packed, tmp_path):
    copy = tmp_path / "copy.h5"
    copy.write_bytes(synthetic_packed.read_bytes())
    stream, buffer = _started_reader_processes(copy, 2)
    stream.fill(0, buffer)
    with open(copy, "r+b") as f:
        f.truncate(copy.stat().st_size // 2)
    with pytest.raises(RuntimeError, match=r"copy\.h5: (images|masks) row \d+ is cut short"):
        for step in range(1, 10):
            stream.fill(step, buffer)
    workers = stream.reader_pids
    stream.close()
    assert not [pid for pid in workers if _running(pid)]


def test_a_killed_reader_process_is_an_error_not_a_hang(synthetic_packed):
    stream, buffer = _started_reader_processes(synthetic_packed, 2)
    for pid in stream.reader_pids:
        os.kill(pid, signal.SIGKILL)
    raised = []

    def fill() -> None:
        try:
            stream.fill(0, buffer)
        except RuntimeError as error:
            raised.append(str(error))

    filling = threading.Thread(target=fill, daemon=True)  # a regression would wait forever: fail instead
    filling.start()
    filling.join(timeout=30)
    assert not filling.is_alive(), "fill still waiting 30 s after its readers were killed"
    assert re.fullmatch(r"reader process \d+ ended \(exit code -9\) while reading .*synthetic_train\.h5", raised[0])
    stream.close()


def test_reader_processes_end_with_a_killed_training_process(synthetic_packed, tmp_path):
    script = (
        "import os, signal, sys\n"
        "from hand3d.data import PackedBatches, Source, TRAIN_FIELDS\n"
        "stream = PackedBatches([Source(sys.argv[1])], 4, TRAIN_FIELDS, processes=2)\n"
        "buffer = stream.allocate(shared=True)\n"
        "stream.start_processes()\n"
        "stream.fill(0, buffer)\n"
        "print(*stream.reader_pids, file=open(sys.argv[2], 'w'), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    pids, log = tmp_path / "pids.txt", tmp_path / "log.txt"
    with open(log, "w") as output:  # a file: a pipe would stay open as long as the orphaned readers live
        command = [sys.executable, "-c", script, str(synthetic_packed), str(pids)]
        code = subprocess.run(command, stdout=output, stderr=output)
    assert code.returncode == -signal.SIGKILL, log.read_text()
    workers = [int(pid) for pid in pids.read_text().split()]
    assert len(workers) == 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_running(pid) for pid in workers):
        time.sleep(0.1)
    assert not any(_running(pid) for pid in workers)


def test_rows_read_by_offset_equal_h5py_and_other_layouts_fall_back(synthetic_packed, tmp_path):
    import h5py

    from hand3d.packed_rows import PackedRows

    rows = PackedRows(synthetic_packed, ["images", "masks", "keypoints_2d"])
    assert set(rows.offsets) == {"images", "masks"} and set(rows.arrays) == {"keypoints_2d"}
    compressed = tmp_path / "compressed.h5"
    with h5py.File(synthetic_packed) as f, h5py.File(compressed, "w") as g:
        g.create_dataset("images", data=f["images"][:], chunks=(1, 320, 320, 3), compression="gzip")
        stored = f["images"][[3, 9, 30]]
    fallback = PackedRows(compressed, ["images"])
    assert not fallback.offsets and "images" in fallback.arrays
    for reader in (rows, fallback):
        out = np.empty((3, 320, 320, 3), np.uint8)
        reader.read("images", np.array([3, 9, 30]), out)
        np.testing.assert_array_equal(out, stored)
        reader.close()


def test_chunk_offsets_come_from_one_pass_over_the_index_and_locate_every_row(tmp_path):
    """``chunk_iter`` gives what ``get_chunk_info`` gives chunk by chunk, and each offset holds its row's bytes; the
    last block written first, so the chunks are not in row order in the file."""
    import h5py

    from hand3d.packed_rows import _chunk_infos, _chunk_infos_one_by_one, _chunk_offsets

    rows = np.random.default_rng(0).integers(0, 256, (300, 4, 5), dtype=np.uint8)
    path = tmp_path / "rows.h5"
    with h5py.File(path, "w") as f:
        dataset = f.create_dataset("x", shape=(300, 4, 5), maxshape=(None, 4, 5), chunks=(1, 4, 5), dtype="u1")
        for start in (256, 0, 128):
            dataset[start : start + 128] = rows[start : start + 128]
    with h5py.File(path) as f:
        dataset = f["x"]
        assert hasattr(dataset.id, "chunk_iter")  # the h5py this project installs has it
        assert sorted(_chunk_infos(dataset.id)) == sorted(_chunk_infos_one_by_one(dataset.id))
        offsets = _chunk_offsets(dataset)
    data = path.read_bytes()
    assert len(offsets) == 300 and offsets[256] < offsets[0]
    for row, offset in enumerate(offsets):
        assert data[offset : offset + 20] == rows[row].tobytes()


def test_rows_are_the_stored_samples(synthetic_packed):
    stream = PackedBatches([Source(str(synthetic_packed))], 5, PRETRAIN_FIELDS, seed=0)
    rng = np.random.default_rng([0, 0, 7])  # the stream's own draw for step 7
    rng.multinomial(5, [1.0])
    picks = np.sort(rng.choice(32, size=5, replace=False))
    stored = read_samples(synthetic_packed, picks, PRETRAIN_FIELDS)
    batch = stream.batch(7)
    for name in PRETRAIN_FIELDS:
        np.testing.assert_array_equal(batch[name].numpy(), stored[name])


def test_each_process_of_a_ddp_run_draws_its_own_samples(synthetic_packed):
    """Rank r draws from the seed (seed, r, step): two ranks training on the same rows would halve the batch."""
    source = [Source(str(synthetic_packed))]
    names = {}
    for rank in (0, 1):
        stream = PackedBatches(source, 8, PRETRAIN_FIELDS, seed=0, rank=rank)
        rng = np.random.default_rng([0, rank, 3])
        rng.multinomial(8, [1.0])
        names[rank] = np.sort(rng.choice(32, size=8, replace=False))
        stored = read_samples(synthetic_packed, names[rank], ["params"])["params"]
        np.testing.assert_array_equal(stream.batch(3)["params"].numpy(), stored)
    assert not np.array_equal(names[0], names[1])


def _copy_with_params_removed(src, dst):
    data = read_samples(src, range(8), ["images", "keypoints_2d", "names"])
    data["keypoints_2d"][..., 0] += 0.25  # told apart from the source's rows
    with PackedWriter(dst, source="other", split="train", num_params=22) as writer:
        writer.append(data)


def test_sources_are_mixed_by_weight(synthetic_packed, tmp_path):
    other = tmp_path / "other.h5"
    _copy_with_params_removed(synthetic_packed, other)
    stream = PackedBatches([Source(str(synthetic_packed), 3.0), Source(str(other), 1.0)], 40, ["keypoints_2d"])
    from_first = []
    for step in range(50):
        batch = stream.batch(step)
        rows = batch["keypoints_2d"].numpy()
        first = read_samples(synthetic_packed, range(32), ["keypoints_2d"])["keypoints_2d"]
        from_first.append(sum(any(np.array_equal(r, f) for f in first) for r in rows))
    assert 0.70 < np.mean(from_first) / 40 < 0.80  # 3:1


def test_bad_sources_are_named(synthetic_packed, tmp_path):
    with pytest.raises(ValueError, match="weight must be > 0"):
        PackedBatches([Source(str(synthetic_packed), 0.0)], 4, ["images"])
    other = tmp_path / "other.h5"
    _copy_with_params_removed(synthetic_packed, other)
    with pytest.raises(KeyError, match="other.h5.*heatmaps"):
        PackedBatches([Source(str(other))], 4, ["images", "heatmaps"])


def _batch(packed, augment: AugmentConfig, n: int = 8) -> dict:
    fields = (*TRAIN_FIELDS, "params")
    return PackedBatches([Source(str(packed))], n, fields, seed=1, augment=augment).batch(0)


def test_identity_augmentation_is_a_plain_resize(synthetic_packed):
    batch = _batch(synthetic_packed, OFF)
    out = augment_batch(batch, 96)
    resized = F.interpolate(batch["images"].permute(0, 3, 1, 2).float(), size=(96, 96), mode="bilinear")
    torch.testing.assert_close(out["images"], resized, atol=0.01, rtol=0)  # float rounding of 0-255 values
    torch.testing.assert_close(out["keypoints_2d"], batch["keypoints_2d"])
    torch.testing.assert_close(out["params"], batch["params"])
    torch.testing.assert_close(out["masks"], batch["masks"].float())


def test_zoom_and_shift_move_pixels_labels_and_camera_together(synthetic_packed):
    batch = _batch(synthetic_packed, AugmentConfig(brightness=0, contrast=0, saturation=0, noise=0))
    assert (batch["augment"][:, 0] != 1).all()
    out = augment_batch(batch, 320)
    # The camera moved with the pixels: the moved params project the 3D keypoints onto the moved 2D keypoints.
    projected = project_weak_perspective(batch["keypoints_3d"], out["params"][:, :3])
    visible = out["keypoints_2d"][..., 2] > 0
    assert visible.sum() > 0.8 * visible.numel()
    torch.testing.assert_close(projected[visible], out["keypoints_2d"][..., :2][visible], atol=1e-3, rtol=0)
    # The mask moved with the image: the moved visible keypoints of the fingertips' base lie on the moved mask.
    for i in range(len(out["masks"])):
        xy = out["keypoints_2d"][i, :, :2].round().long()
        ok = visible[i] & (xy >= 0).all(-1) & (xy < 320).all(-1)
        on_mask = out["masks"][i][xy[ok, 1], xy[ok, 0]]
        assert on_mask.mean() > 0.7, i
    # And the image: the hand (mask) differs from what was outside it before.
    assert not torch.equal(out["masks"], batch["masks"].float())


def test_keypoints_pushed_out_of_the_crop_become_invisible():
    batch = {
        "images": torch.zeros(1, 320, 320, 3, dtype=torch.uint8),
        "keypoints_2d": torch.tensor([[[10.0, 160.0, 1.0], [300.0, 160.0, 1.0], [160.0, 160.0, 0.0]]]),
        "augment": torch.tensor([[1.5, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]]),
    }
    out = augment_batch(batch, 64)["keypoints_2d"][0]
    assert out[:, 2].tolist() == [0.0, 0.0, 0.0]
    assert out[0, 0].item() == pytest.approx(1.5 * (10 - 159.5) + 159.5)


def test_rendered_heatmaps_peak_at_the_keypoints():
    keypoints = torch.zeros(1, 21, 3)
    keypoints[0, :, 0] = torch.linspace(20, 300, 21)
    keypoints[0, :, 1] = 100.0
    keypoints[0, :, 2] = 1.0
    keypoints[0, 5, 2] = 0.0
    maps = render_heatmaps(keypoints, 160, sigma=6.0)
    assert maps.shape == (1, 21, 160, 160)
    assert maps[0, 5].max() == 0
    for k in (0, 10, 20):
        row, col = divmod(int(maps[0, k].argmax()), 160)
        assert abs((col + 0.5) * 2 - 0.5 - keypoints[0, k, 0]) <= 1.0
        assert abs((row + 0.5) * 2 - 0.5 - 100.0) <= 1.0
        assert 240 < maps[0, k].max() <= 255


def test_rendered_heatmaps_are_centred_on_the_map_pixels():
    """A keypoint on a map pixel's centre (crop x = 2c + 0.5 at 160 px) peaks there, its two neighbours equal."""
    keypoints = torch.tensor([[[80.5, 120.5, 1.0]] * 21])
    maps = render_heatmaps(keypoints, 160, sigma=6.0)[0, 0]
    assert divmod(int(maps.argmax()), 160) == (60, 40)
    torch.testing.assert_close(maps[60, 39], maps[60, 41])
    torch.testing.assert_close(maps[59, 40], maps[61, 40])


def test_stored_heatmaps_move_with_the_image():
    """Packed heatmaps are warped by the sample's zoom and shift, as the image and keypoints are."""
    keypoints = torch.zeros(1, 21, 3)
    keypoints[0, :, 0] = torch.linspace(60, 260, 21)
    keypoints[0, :, 1] = torch.linspace(220, 90, 21)
    keypoints[0, :, 2] = 1.0
    batch = {
        "images": torch.zeros(1, 320, 320, 3, dtype=torch.uint8),
        "keypoints_2d": keypoints,
        "heatmaps": render_heatmaps(keypoints, 160, sigma=6.0).round().to(torch.uint8),
        "augment": torch.tensor([[1.2, 20.0, -10.0, 1.0, 1.0, 1.0, 0.0]]),
    }
    out = augment_batch(batch, 160, "stored")
    moved = out["keypoints_2d"][0]
    assert (moved[:, 2] > 0).sum() >= 15
    for k in torch.nonzero(moved[:, 2] > 0)[:, 0].tolist():
        row, col = divmod(int(out["heatmaps"][0, k].argmax()), 160)
        peak = torch.tensor([(col + 0.5) * 2 - 0.5, (row + 0.5) * 2 - 0.5])
        assert (peak - moved[k, :2]).abs().max() <= 2.0, (k, peak, moved[k])  # within a map pixel


def test_colour_jitter_stays_in_range_and_changes_the_image(synthetic_packed):
    batch = _batch(synthetic_packed, AugmentConfig(zoom=0, shift=0))
    plain = augment_batch({**batch, "augment": _batch(synthetic_packed, OFF)["augment"]}, 128)["images"]
    noise = unit_noise(len(batch["images"]), 128, torch.device("cpu"), torch.Generator().manual_seed(0))
    jittered = augment_batch(batch, 128, noise=noise)["images"]
    assert jittered.min() >= 0 and jittered.max() <= 255
    assert (jittered - plain).abs().mean() > 2


def test_noise_is_scaled_by_each_samples_level(synthetic_packed):
    batch = _batch(synthetic_packed, OFF)
    batch["augment"][:, 6] = torch.arange(len(batch["augment"]), dtype=torch.float32)  # sample i: std i
    batch["images"][:] = 128  # mid-grey: no clamping, colour ops are the identity
    noise = unit_noise(len(batch["images"]), 64, torch.device("cpu"), torch.Generator().manual_seed(1))
    images = augment_batch(batch, 64, noise=noise)["images"]
    assert torch.allclose(images - 128, batch["augment"][:, 6, None, None, None] * noise, atol=1e-3)
    assert torch.equal(augment_batch(batch, 64)["images"], torch.full_like(images, 128))


@pytest.mark.parametrize("heatmaps", [None, "render"])
def test_augmentation_compiles_to_one_graph(synthetic_packed, heatmaps):
    """A graph break costs the host a guard check and a launch per piece on every step (see :mod:`hand3d.train`)."""
    batch = _batch(synthetic_packed, AugmentConfig())
    noise = unit_noise(len(batch["images"]), 64, torch.device("cpu"), torch.Generator().manual_seed(0))
    explained = torch._dynamo.explain(augment_batch)(batch, 64, heatmaps, 6.0, noise)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons[:2]
