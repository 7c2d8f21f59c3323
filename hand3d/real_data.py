"""The real-data stage, one function per rule: index -> crop (shards) -> segment, heatmaps -> pack.

Every stage counts what it skips or degrades instead of stopping: `results/real/<dataset>/issues.json` sums the
counts of the reader (malformed annotation, missing image) and of the crop stage (unreadable image, keypoints outside
the image, too few visible keypoints, ...).
"""

from __future__ import annotations

import importlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import h5py
import numpy as np

from hand3d.atomic import atomic_write_json, durable_replace, fresh_temp
from hand3d.crop import CROP_SIZE, CropBox, crop_box, crop_image, crop_keypoints, to_crop, visible_inside
from hand3d.datasets.base import RawSample
from hand3d.h5io import PackedWriter, open_packed, read_field
from hand3d.image_io import read_rgb

log = logging.getLogger(__name__)


def reader(dataset: str):
    return importlib.import_module(f"hand3d.datasets.{dataset}")


# --- demo_raw ------------------------------------------------------------------------------------------------------


# The smallest stand-ins (demo scale 1): the keyword arguments of each reader's write_demo.
DEMO_SIZES = {
    "mpii_nzsl": {"train": 12, "test": 8},
    "panoptic": {"train": 8},
    "stb": {"frames": 3},  # per sequence: B1 (2 sequences) test, B2-B6 (10) train
    "freihand": {"train": 8, "test": 4},
}


def write_demo_raw(dataset: str, out_dir: str, hand_model: str, seed: int, scale: int = 1) -> None:
    """A stand-in for `dataset` in its published layout, made of procedural-hand photographs; ``scale`` times the
    smallest size (:data:`DEMO_SIZES`)."""
    from hand3d.datasets.standin import HandPhotographer

    if scale < 1:
        raise ValueError(f"the stand-in scale must be at least 1, got {scale}")
    photographer = HandPhotographer(hand_model, seed=seed)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    sizes = {key: count * scale for key, count in DEMO_SIZES[dataset].items()}
    reader(dataset).write_demo(out_dir, photographer, seed, **sizes)
    photographer.release()


# --- index (read_annotations, stb_mm2px) -----------------------------------------------------------------------------


def index_dataset(dataset: str, root: str, split: str, options: dict, out_json: str) -> None:
    """Read a dataset split with its reader and save the samples (original-image pixels) and the reader's issues."""
    result = reader(dataset).read(root, split, **options)
    log.info("%s %s: %d samples, issues %s", dataset, split, len(result.samples), dict(result.issues))
    if not result.samples:
        raise ValueError(f"{root}: no usable {dataset} {split} sample (skipped: {dict(result.issues) or 'none'})")
    samples = [_sample_record(s) for s in result.samples]
    record = {"dataset": dataset, "split": split, "root": str(root), "issues": result.issues, "samples": samples}
    atomic_write_json(out_json, record, indent=1)


def _sample_record(s: RawSample) -> dict:
    return {
        "name": s.name,
        "image": str(s.image),
        "keypoints_2d": s.keypoints_2d.tolist(),
        "keypoints_3d": None if s.keypoints_3d is None else s.keypoints_3d.tolist(),
        "is_left": bool(s.is_left),
        "mask": None if s.mask is None else str(s.mask),
    }


def load_index(path: str) -> tuple[list[RawSample], dict]:
    data = json.loads(Path(path).read_text())
    return [RawSample(**s) for s in data["samples"]], data


def shard_slice(total: int, shard: int, num_shards: int) -> slice:
    """Contiguous block of the samples for one shard (earlier shards take the remainder)."""
    base, extra = divmod(total, num_shards)
    start = shard * base + min(shard, extra)
    return slice(start, start + base + (shard < extra))


BLOCK = 256  # samples held in memory at once: a shard of any size streams through the stages


def _blocks(f, fields) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """(start, {field: rows}) over an open HDF5 file, BLOCK samples at a time."""
    count = len(f[next(iter(fields))])
    for start in range(0, count, BLOCK):
        yield start, {k: read_field(f[k], slice(start, start + BLOCK)) for k in fields}


class _BlockWriter:
    """Per-sample arrays of one shard (masks, heatmaps) written block by block into an HDF5 file, atomically:
    the file appears under its name only when every block is in."""

    def __init__(self, path: str, count: int):
        self.path, self.count = Path(path), count
        self.tmp = fresh_temp(self.path)

    def __enter__(self) -> _BlockWriter:
        self.file = h5py.File(self.tmp, "w")
        return self

    def write(self, start: int, **arrays: np.ndarray) -> None:
        for name, rows in arrays.items():
            if name not in self.file:
                chunks = (1, *rows.shape[1:]) if rows.ndim > 1 else True
                self.file.create_dataset(name, (self.count, *rows.shape[1:]), rows.dtype, chunks=chunks,
                                         compression="lzf")  # fmt: skip
            self.file[name][start : start + len(rows)] = rows

    def __exit__(self, kind, error, traceback) -> None:
        self.file.close()
        if kind is None:
            durable_replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


# --- crop -------------------------------------------------------------------------------------------------------------


def _crop_one(sample: RawSample, issues: Counter, box_scale: float) -> dict | None:
    image = read_rgb(sample.image)
    if image is None:
        issues["unreadable_image"] += 1
        log.warning("skipped %s: unreadable image %s", sample.name, sample.image)
        return None
    h, w = image.shape[:2]
    annotated = sample.keypoints_2d[:, 2] > 0
    if (annotated & ~visible_inside(sample.keypoints_2d, w, h)).any():
        issues["keypoints_outside_image"] += 1  # kept, marked not visible
    try:
        box = crop_box(sample.keypoints_2d, w, h, mirrored=sample.is_left, scale=box_scale)
    except ValueError:
        issues["too_few_visible_keypoints"] += 1
        log.warning("skipped %s: fewer than two visible keypoints inside the image", sample.name)
        return None
    fields = {
        "images": crop_image(image, box),
        "keypoints_2d": crop_keypoints(sample.keypoints_2d, box, w, h),
        "crop_box": box.as_array(),
        "is_left": sample.is_left,
        "names": sample.name,
    }
    if sample.keypoints_3d is not None:
        mirror = np.array([-1 if sample.is_left else 1, 1, 1], np.float32)  # X' = -X for mirrored left hands
        fields["keypoints_3d"] = sample.keypoints_3d * mirror
    mask = _dataset_mask(sample, box, (h, w), issues)
    if mask is not None:
        fields["masks"] = mask
    return fields


def _dataset_mask(sample: RawSample, box: CropBox, image_size: tuple[int, int], issues: Counter) -> np.ndarray | None:
    """The dataset's mask in the crop; None (the sample kept, GrabCut to segment it) where it is missing, unreadable
    or not the size (height, width) of its image: cropped by the image's box, it would not lie on the hand."""
    if sample.mask is None:
        return None
    mask = cv2.imread(str(sample.mask), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        issues["unreadable_mask"] += 1
        log.warning("%s: unreadable mask %s, not used", sample.name, sample.mask)
        return None
    if mask.shape != image_size:
        issues["mask_size_mismatch"] += 1
        why = "%s: mask %s is %s pixels (height, width), its image %s; not used"
        log.warning(why, sample.name, sample.mask, mask.shape, image_size)
        return None
    return (crop_image(mask, box, interpolation=cv2.INTER_LINEAR) > 127).astype(np.uint8)


def _stack(rows: list[dict], num_params: int) -> dict:
    n = len(rows)
    nan3d = np.full((21, 3), np.nan, np.float32)
    batch = {
        "images": np.stack([r["images"] for r in rows]),
        "keypoints_2d": np.stack([r["keypoints_2d"] for r in rows]),
        "keypoints_3d": np.stack([r.get("keypoints_3d", nan3d) for r in rows]).astype(np.float32),
        "has_3d": np.array(["keypoints_3d" in r for r in rows]),
        "masks": np.stack([r.get("masks", np.zeros((CROP_SIZE, CROP_SIZE), np.uint8)) for r in rows]),
        "has_mask": np.array(["masks" in r for r in rows]),
        "params": np.full((n, num_params), np.nan, np.float32),
        "has_params": np.zeros(n, bool),
        "is_left": np.array([r["is_left"] for r in rows]),
        "crop_box": np.stack([r["crop_box"] for r in rows]),
        "names": [r["names"] for r in rows],
    }
    return batch


def crop_shard(index_json: str, shard: int, num_shards: int, out_h5: str, out_issues: str, num_params: int,
               box_scale: float = 2.2) -> None:  # fmt: skip
    """Crop one shard of an indexed split into a packed file (masks only where the dataset ships them)."""
    from tqdm import tqdm

    samples, meta = load_index(index_json)
    samples = samples[shard_slice(len(samples), shard, num_shards)]
    issues: Counter = Counter()
    rows: list[dict] = []
    with PackedWriter(out_h5, meta["dataset"], meta["split"], num_params) as writer:
        for sample in tqdm(samples, desc=f"crop {meta['dataset']} {meta['split']}", unit="img"):
            if (row := _crop_one(sample, issues, box_scale)) is not None:
                rows.append(row)
            if len(rows) == BLOCK:
                writer.append(_stack(rows, num_params))
                rows = []
        if rows:
            writer.append(_stack(rows, num_params))
    atomic_write_json(out_issues, dict(issues), indent=1)


# --- segment ------------------------------------------------------------------------------------------------------


def segment_shard(crops_h5: str, out_h5: str, grabcut: dict) -> None:
    """Masks for one shard: the dataset's own where it has them, else GrabCut seeded with the skeleton."""
    from tqdm import tqdm

    from hand3d.segment import GrabCutConfig, grabcut_mask

    cfg = GrabCutConfig(**grabcut)
    with open_packed(crops_h5) as f, _BlockWriter(out_h5, len(f["images"])) as out:
        progress = tqdm(total=len(f["images"]), desc="segment", unit="img")
        for start, block in _blocks(f, ("images", "keypoints_2d", "masks", "has_mask")):
            masks, has_mask = block["masks"], block["has_mask"]
            for i in np.flatnonzero(~has_mask):
                mask = grabcut_mask(block["images"][i], block["keypoints_2d"][i], cfg)
                if mask is not None and mask.any():
                    masks[i], has_mask[i] = mask, True
            out.write(start, masks=masks, has_mask=has_mask)
            progress.update(len(masks))


# --- heatmaps -----------------------------------------------------------------------------------------------------


def heatmap_shard(crops_h5: str, index_json: str, out_h5: str, source: str, size: int, sigma: float) -> None:
    """Keypoint heatmaps for one shard, from the annotations or an OpenPose-format detection folder."""
    from hand3d.heatmaps import gaussian_heatmaps

    detections = None if source == "annotations" else _Detections(index_json, source)
    with open_packed(crops_h5) as f, _BlockWriter(out_h5, len(f["images"])) as out:
        for start, block in _blocks(f, ("keypoints_2d", "crop_box", "names")):
            keypoints = block["keypoints_2d"]
            if detections is not None:
                keypoints = detections.in_crops(list(block["names"]), block["crop_box"])
            out.write(start, heatmaps=np.stack([gaussian_heatmaps(k, size, sigma) for k in keypoints]))
        if detections is not None:
            detections.check_found(crops_h5)


class _Detections:
    """OpenPose-format detections of a split's images, looked up by sample name."""

    def __init__(self, index_json: str, folder: str):
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{folder}: no such folder of OpenPose results (real.heatmaps.source)")
        samples, meta = load_index(index_json)
        self.by_name, self.root, self.folder = {s.name: s for s in samples}, meta["root"], folder
        self.images = self.files = 0

    def check_found(self, crops_h5: str) -> None:
        """Fail where no image of the shard has a result file (a wrong folder would give blank heatmaps)."""
        if self.images and not self.files:
            raise ValueError(
                f"{self.folder}: no OpenPose result for any of the {self.images} images of {crops_h5} (looked for "
                "<image stem>_keypoints.json under the images' sub-folders relative to the dataset root, then at "
                "the top)"
            )
        if self.files < self.images:
            log.warning(
                "%s: no OpenPose result for %d of %d images", self.folder, self.images - self.files, self.images
            )

    def in_crops(self, names: list[str], boxes: np.ndarray) -> np.ndarray:
        """Detected keypoints mapped into each crop; zero confidence where the detector found nothing."""
        from hand3d.heatmaps import detected_hand, openpose_json

        out = np.zeros((len(names), 21, 3), np.float32)
        for i, (name, box) in enumerate(zip(names, boxes, strict=True)):
            sample = self.by_name[name]
            path = openpose_json(self.folder, sample.image, self.root)
            self.images, self.files = self.images + 1, self.files + (path is not None)
            near = sample.keypoints_2d[sample.keypoints_2d[:, 2] > 0, :2].mean(axis=0)
            hand = detected_hand(path, sample.is_left, near) if path else None
            if hand is not None:
                out[i] = to_crop(hand, CropBox(int(box[0]), int(box[1]), int(box[2]), bool(box[3])))
        return out


# --- pack ---------------------------------------------------------------------------------------------------------


def pack_real(crops: list[str], masks: list[str], heatmaps: list[str], out_h5: str, dataset: str, split: str,
              index_json: str, crop_issues: list[str], out_issues: str) -> None:  # fmt: skip
    """Gather a split's shards into results/datasets/<dataset>_<split>.h5 and sum its issue counts."""
    with open_packed(crops[0]) as f:
        num_params = int(f.attrs["num_params"])
    size = None  # shards left empty by the crop stage hold no heatmaps
    for path in heatmaps:
        with h5py.File(path, "r") as h:
            size = h["heatmaps"].shape[-1] if "heatmaps" in h else size
    with PackedWriter(out_h5, dataset, split, num_params, heatmap_size=size) as writer:
        for crop_file, mask_file, map_file in zip(crops, masks, heatmaps, strict=True):
            _append_shard(writer, crop_file, mask_file, map_file)
    issues = Counter(json.loads(Path(index_json).read_text())["issues"])
    for path in crop_issues:
        issues.update(json.loads(Path(path).read_text()))
    atomic_write_json(out_issues, dict(sorted(issues.items())), indent=1)


def _append_shard(writer: PackedWriter, crop_file: str, mask_file: str, map_file: str) -> None:
    with open_packed(crop_file) as f, h5py.File(mask_file, "r") as m, h5py.File(map_file, "r") as h:
        for start, batch in _blocks(f, list(f)):
            stop = start + len(batch["images"])
            batch["masks"], batch["has_mask"] = m["masks"][start:stop], m["has_mask"][start:stop]
            batch["heatmaps"] = h["heatmaps"][start:stop]
            writer.append(batch)


def merge_issues(split_files: dict[str, str], out_json: str) -> None:
    """Per-dataset issues.json: each split's counts and their total."""
    per_split = {split: json.loads(Path(path).read_text()) for split, path in split_files.items()}
    total: Counter = Counter()
    for counts in per_split.values():
        total.update(counts)
    atomic_write_json(out_json, {**per_split, "total": dict(sorted(total.items()))}, indent=1)
