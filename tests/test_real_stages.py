"""The real-data stage functions stream shards block by block: the block size and empty shards change nothing."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
from test_real_workflow import write_hand_labels

from hand3d import real_data
from hand3d.h5io import validate_packed


def _run(tmp, index, shards: int) -> str:
    crops, masks, maps, issues = [], [], [], []
    for shard in range(shards):
        paths = [str(tmp / f"{kind}_{shard}.{ext}") for kind, ext in
                 (("crops", "h5"), ("issues", "json"), ("masks", "h5"), ("maps", "h5"))]  # fmt: skip
        real_data.crop_shard(index, shard, shards, paths[0], paths[1], num_params=22)
        real_data.segment_shard(paths[0], paths[2], {"iterations": 2})
        real_data.heatmap_shard(paths[0], index, paths[3], "annotations", 40, 6.0)
        crops.append(paths[0]), issues.append(paths[1]), masks.append(paths[2]), maps.append(paths[3])
    out = str(tmp / "packed.h5")
    real_data.pack_real(crops, masks, maps, out, "mpii_nzsl", "test", index, issues, str(tmp / "issues.json"))
    return out


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stages")
    write_hand_labels(tmp / "hand_labels")
    path = str(tmp / "index.json")
    real_data.index_dataset("mpii_nzsl", str(tmp / "hand_labels"), "test", {}, path)
    return path


def test_block_size_and_empty_shards_change_nothing(index, tmp_path, monkeypatch):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    reference = validate_packed(_run(tmp_path / "a", index, shards=1))
    monkeypatch.setattr(real_data, "BLOCK", 1)
    streamed = validate_packed(_run(tmp_path / "b", index, shards=4))  # 2 samples over 4 shards: 2 are empty
    assert reference["num_samples"] == streamed["num_samples"] == 2
    assert reference["content_sha256"] == streamed["content_sha256"]
    assert streamed["heatmap_size"] == (40, 40)


def test_stage_outputs_appear_only_when_complete(index, tmp_path, monkeypatch):
    from hand3d import segment

    crops = str(tmp_path / "crops.h5")
    real_data.crop_shard(index, 0, 1, crops, str(tmp_path / "issues.json"), num_params=22)
    with pytest.raises(TypeError, match="no_such_option"):
        real_data.segment_shard(crops, str(tmp_path / "masks.h5"), {"no_such_option": 1})
    monkeypatch.setattr(real_data, "BLOCK", 1)  # one block per sample: the first is written before the failure
    real_grabcut, calls = segment.grabcut_mask, []

    def grabcut_then_fail(*args):
        calls.append(real_grabcut(*args))
        if len(calls) == 2:
            raise RuntimeError("killed on the second sample")
        return calls[-1]

    monkeypatch.setattr(segment, "grabcut_mask", grabcut_then_fail)
    with pytest.raises(RuntimeError, match="killed on the second sample"):
        real_data.segment_shard(crops, str(tmp_path / "masks.h5"), {"iterations": 2})
    assert len(calls) == 2 and not list(tmp_path.glob("*masks*")), "nothing half-written is left"


def test_a_detection_folder_that_holds_no_result_for_the_shard_fails(index, tmp_path):
    crops = str(tmp_path / "crops.h5")
    real_data.crop_shard(index, 0, 1, crops, str(tmp_path / "issues.json"), num_params=22)
    maps = tmp_path / "maps.h5"
    with pytest.raises(FileNotFoundError, match="no_such_folder: no such folder of OpenPose results"):
        real_data.heatmap_shard(crops, index, str(maps), str(tmp_path / "no_such_folder"), 40, 6.0)
    (tmp_path / "openpose").mkdir()
    with pytest.raises(ValueError, match="openpose: no OpenPose result for any of the 2 images"):
        real_data.heatmap_shard(crops, index, str(maps), str(tmp_path / "openpose"), 40, 6.0)
    assert not list(tmp_path.glob("*maps*")), "no blank heatmaps are left as if complete"
    sample = real_data.load_index(index)[0][0]
    side = "hand_left_keypoints_2d" if sample.is_left else "hand_right_keypoints_2d"
    hands = {side: sample.keypoints_2d.ravel().tolist()}  # the detector finds the labelled keypoints
    (tmp_path / "openpose" / f"{Path(sample.image).stem}_keypoints.json").write_text(json.dumps({"people": [hands]}))
    real_data.heatmap_shard(crops, index, str(maps), str(tmp_path / "openpose"), 40, 6.0)  # one of 2 found: a warning
    with h5py.File(maps) as f:
        peaks = f["heatmaps"][:].max(axis=(1, 2, 3))
    none, found = sorted(peaks.tolist())
    assert none == 0 and found > 200  # a blank map where no result was found, Gaussian peaks where one was


def test_a_split_without_a_usable_sample_fails_naming_the_root(tmp_path):
    (tmp_path / "hand_labels" / "manual_test").mkdir(parents=True)  # the layout, with nothing in it
    out = tmp_path / "index.json"
    with pytest.raises(ValueError, match=r"hand_labels: no usable mpii_nzsl test sample \(skipped: none\)"):
        real_data.index_dataset("mpii_nzsl", str(tmp_path / "hand_labels"), "test", {}, str(out))
    assert not out.exists()


@pytest.mark.parametrize("is_left", [False, True])
def test_a_crop_keeps_its_3d_keypoints_consistent_with_its_2d_ones(tmp_path, is_left):
    """Left hands are mirrored into right ones: the crop's x axis and the 3D X axis flip together, so the cropped
    2D keypoints stay a projection of the 3D ones (a weak-perspective fit with a positive scale leaves a small
    residual; with the 3D left unmirrored it would not)."""
    from collections import Counter

    import cv2
    import numpy as np

    from hand3d.camera import fit_weak_perspective, project_perspective, project_weak_perspective
    from hand3d.datasets.base import RawSample

    rng = np.random.default_rng(4)
    points = rng.uniform(-0.06, 0.06, (21, 3)) * [1, 1, 0.2] + [0.05, -0.02, 1.0]  # hand-sized, flat, 1 m away
    K = np.array([[1200.0, 0, 320], [0, 1200.0, 240], [0, 0, 1]])
    keypoints_2d = np.concatenate([project_perspective(points, K), np.ones((21, 1))], axis=1)
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    sample = RawSample("frame", str(image), keypoints_2d, points, is_left=is_left)
    fields = real_data._crop_one(sample, Counter(), box_scale=2.2)
    crop_2d, crop_3d = fields["keypoints_2d"], fields["keypoints_3d"]
    camera = fit_weak_perspective(crop_3d, crop_2d)
    residual = np.abs(project_weak_perspective(crop_3d, camera) - crop_2d[:, :2]).max()
    spread = np.ptp(crop_2d[:, :2], axis=0).max()
    assert camera[0] > 0 and residual < 0.05 * spread, (camera, residual, spread)


def test_a_dataset_mask_not_the_size_of_its_image_is_left_out_counted_and_named(tmp_path, caplog):
    """A FreiHAND mask resized to 112x112 beside its 224x224 image would be cropped by the image's box, off the hand:
    the sample keeps its image and labels without it (GrabCut segments it later)."""
    from collections import Counter

    import cv2
    import numpy as np

    from hand3d.datasets.base import RawSample

    rng = np.random.default_rng(5)
    image, mask = tmp_path / "rgb" / "00000000.jpg", tmp_path / "mask" / "00000000.jpg"
    for path, pixels in ((image, rng.integers(0, 255, (224, 224, 3), np.uint8)), (mask, np.full((112, 112), 255))):
        path.parent.mkdir()
        cv2.imwrite(str(path), pixels.astype(np.uint8))
    keypoints_2d = np.column_stack([rng.uniform(80, 140, (21, 2)), np.ones(21)])
    sample = RawSample("training/00000000", str(image), keypoints_2d, mask=str(mask))
    issues = Counter()
    fields = real_data._crop_one(sample, issues, box_scale=2.2)
    assert not real_data._stack([fields], num_params=22)["has_mask"][0] and "images" in fields
    assert issues == {"mask_size_mismatch": 1}
    assert f"{mask} is (112, 112) pixels (height, width), its image (224, 224)" in caplog.text
    cv2.imwrite(str(mask), np.full((224, 224), 255, np.uint8))
    assert real_data._stack([real_data._crop_one(sample, issues, box_scale=2.2)], num_params=22)["has_mask"][0]
