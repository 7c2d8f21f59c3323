"""CMU `hand_labels`: the MPII + NZSL manual hand annotations of the CMU Panoptic HandDB.

Format (Simon et al., *Hand Keypoint Detection in Single Images using Multiview Bootstrapping*, CVPR 2017; CMU
Panoptic HandDB; /work/shared/guides/datasets.md section 1, DESIGN.md section 5)::

    hand_labels/manual_train/  <stem>.jpg + <stem>.json   (1912 hands)
    hand_labels/manual_test/   <stem>.jpg + <stem>.json   (846 hands)

One file pair per hand (the full image is duplicated for a person's `_l` and `_r` hands). Stems: MPII
`{9-digit image id}_{2-digit person}_{l|r}`, NZSL `{video}.flv_{6-digit frame}_{l|r}`. JSON: `hand_pts` 21 x [x, y, v]
in full-image pixels (x = column, v = 1 valid), already in the OpenPose order; `is_left` 0/1 (left hands are NOT
mirrored in the files); `hand_box_center` [cx, cy]; other keys (`head_size`, `mpii_body_pts`, ...) are ignored.

Skipped and counted (`ReadResult.issues`): `malformed_annotation` (unparseable JSON, missing `hand_pts` / `is_left`,
wrong shape, non-finite numbers), `missing_image` (no `<stem>.jpg` beside the JSON).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hand3d.atomic import atomic_write, atomic_write_json
from hand3d.datasets.base import RawSample, ReadResult, require
from hand3d.keypoints import NUM_KEYPOINTS

if TYPE_CHECKING:
    from hand3d.datasets.standin import HandPhotographer, Shot

DATASET = "CMU hand_labels (MPII+NZSL)"
SPLITS: dict[str, str] = {"train": "manual_train", "test": "manual_test"}

# Stand-in frames: MPII-like photos are large with smallish hands; NZSL-like video frames are small.
_MPII_SIZE = (1280, 720)
_NZSL_SIZES = ((400, 300), (640, 360))
_MPII_HAND_SIZE = (0.12, 0.3)
_NZSL_HAND_SIZE = (0.25, 0.45)
_NZSL_VIDEOS = ("Berry_roof_story", "Ricki_unit_8", "Kiwi_ski_trip", "Aroha_garden_talk")


def cmu_keypoints(points: object) -> np.ndarray:
    """CMU 21 x [x, y, v] -> (21, 3) float32 [x, y, visibility], visibility 1 where v == 1 else 0.

    Raises ValueError on non-numbers, a shape other than (21, 3) or non-finite values. Coordinates are kept as
    given, also outside the image (the crop stage marks those).
    """
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"keypoints are not numbers ({error})") from None
    if array.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints have shape {array.shape}, expected ({NUM_KEYPOINTS}, 3)")
    out = np.column_stack([array[:, :2], array[:, 2] == 1]).astype(np.float32)
    if not np.isfinite(out).all():
        raise ValueError("keypoints hold non-finite values")
    return out


def _flag(value: object) -> bool:
    """`is_left` as a bool: 0/1 (or false/true); anything else is malformed."""
    if isinstance(value, bool) or (isinstance(value, int | float) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"is_left is {value!r}, expected 0 or 1")


def _parse(json_path: Path) -> tuple[np.ndarray, bool]:
    """(keypoints_2d, is_left) from one annotation file; ValueError saying what is wrong."""
    try:
        annotation = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"unreadable JSON ({error})") from None
    if not isinstance(annotation, dict):
        raise ValueError(f"top level is {type(annotation).__name__}, expected an object")
    missing = [key for key in ("hand_pts", "is_left") if key not in annotation]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)}")
    return cmu_keypoints(annotation["hand_pts"]), _flag(annotation["is_left"])


def read(root: str | Path, split: str) -> ReadResult:
    """The hands of one split, sorted by name (`"<split folder>/<stem>"`); bad pairs skipped and counted.

    `root` is the `hand_labels` folder; DatasetLayoutError when it lacks the split's folder.
    """
    if split not in SPLITS:
        raise ValueError(f"{DATASET}: unknown split {split!r}; expected one of {sorted(SPLITS)}")
    folder = SPLITS[split]
    directory = require(root, folder, dataset=DATASET) / folder
    result = ReadResult(samples=[])
    for json_path in sorted(directory.glob("*.json")):
        try:
            keypoints, is_left = _parse(json_path)
        except ValueError as error:
            result.skip("malformed_annotation", json_path, str(error))
            continue
        image = json_path.with_suffix(".jpg")
        if not image.is_file():
            result.skip("missing_image", image, "no image beside the annotation")
            continue
        name = f"{folder}/{json_path.stem}"
        result.samples.append(RawSample(name=name, image=str(image), keypoints_2d=keypoints, is_left=is_left))
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Stand-in


def _stem(rng: np.random.Generator, nzsl: bool, left: bool, used: set[str]) -> str:
    """A new MPII-style or NZSL-style stem, unique within `used`."""
    side = "l" if left else "r"
    while True:
        if nzsl:
            video = _NZSL_VIDEOS[rng.integers(len(_NZSL_VIDEOS))]
            stem = f"{video}.flv_{rng.integers(1, 5000):06d}_{side}"
        else:
            stem = f"{rng.integers(10**9):09d}_{rng.integers(1, 4):02d}_{side}"
        if stem not in used:
            used.add(stem)
            return stem


def _annotation(shot: Shot, rng: np.random.Generator) -> dict:
    """The JSON of one stand-in hand: exact keypoints (all valid), box centre and a plausible head size."""
    points = np.asarray(shot.keypoints_2d, dtype=np.float64)
    low, high = points.min(axis=0), points.max(axis=0)
    return {
        "hand_pts": [[float(x), float(y), 1.0] for x, y in points],
        "is_left": int(shot.is_left),
        "hand_box_center": [float(v) for v in (low + high) / 2],
        "head_size": float(np.ptp(points, axis=0).max() * rng.uniform(1.1, 1.6)),
    }


def write_jpeg(path: Path, image: np.ndarray) -> None:
    """Write an RGB (H, W, 3) or grey (H, W) image as a quality-95 JPEG (BGR for OpenCV), atomically."""
    import cv2

    pixels = np.ascontiguousarray(image[..., ::-1] if image.ndim == 3 else image)

    def write(tmp: str) -> None:
        if not cv2.imwrite(tmp, pixels, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"{path}: could not write the JPEG")

    atomic_write(path, write)


def _write_split(
    root: Path, folder: str, count: int, photographer: HandPhotographer, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """`count` stand-in hands in `root/folder`: about a third NZSL-like, half of them left hands."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    labels: dict[str, np.ndarray] = {}
    used: set[str] = set()
    lefts = rng.permutation(np.arange(count) < count // 2)
    for index, left in enumerate(lefts):
        nzsl = index % 3 == 2
        width, height = _NZSL_SIZES[rng.integers(len(_NZSL_SIZES))] if nzsl else _MPII_SIZE
        hand_size = _NZSL_HAND_SIZE if nzsl else _MPII_HAND_SIZE
        shot = photographer.shoot(rng, width, height, left=bool(left), hand_size=hand_size)
        stem = _stem(rng, nzsl, bool(left), used)
        write_jpeg(root / folder / f"{stem}.jpg", shot.image)
        atomic_write_json(root / folder / f"{stem}.json", _annotation(shot, rng))
        labels[f"{folder}/{stem}"] = np.asarray(shot.keypoints_2d, dtype=np.float64)
    return labels


def write_demo(
    root: str | Path, photographer: HandPhotographer, seed: int, train: int = 12, test: int = 8
) -> dict[str, np.ndarray]:
    """A stand-in `hand_labels` in the published layout (synthetic images, exact labels; not the dataset).

    Writes `root/manual_train/` and `root/manual_test/` with `<stem>.jpg` + `<stem>.json` pairs; left hands are
    rendered as left hands and not mirrored, as in the real files. Deterministic from `seed`. Returns each sample's
    name (as `read` gives it) -> the photographer's (21, 2) float64 keypoints.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    labels = _write_split(root, SPLITS["train"], train, photographer, rng)
    labels.update(_write_split(root, SPLITS["test"], test, photographer, rng))
    return labels
