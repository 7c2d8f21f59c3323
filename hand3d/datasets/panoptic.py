"""CMU `hand143_panopticdb`: hands from the Panoptic Studio domes of the CMU Panoptic HandDB.

Format (Simon et al., *Hand Keypoint Detection in Single Images using Multiview Bootstrapping*, CVPR 2017; CMU
Panoptic HandDB; /work/shared/guides/datasets.md section 1, DESIGN.md section 5)::

    hand143_panopticdb/hands_v143_14817.json
    hand143_panopticdb/imgs/00000000.jpg ... 00014816.jpg   (1920 x 1080)

The JSON is `{"root": [{"img_paths": "imgs/00000000.jpg", "img_width", "img_height", "objpos": [x, y],
"joint_self": 21 x [x, y, v]}, ...]}`: keypoints in full-image pixels (x = column, v = 1 valid), already in the
OpenPose order; right hands only (no `is_left`). Image paths come from `img_paths`, never from a reconstructed name.
There is no test split: the paper trains on all of it.

Skipped and counted (`ReadResult.issues`): `malformed_annotation` (an entry that is not an object, lacks
`img_paths` / `joint_self`, has an `img_paths` outside the folder, or keypoints of the wrong shape or non-finite),
`duplicate_name` (a second entry for the same image), `missing_image` (its `img_paths` file does not exist). A JSON
that does not parse, or has no `root` list, is a DatasetLayoutError: nothing of the dataset can be read.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from hand3d.atomic import atomic_write_json
from hand3d.datasets.base import DatasetLayoutError, RawSample, ReadResult, require
from hand3d.datasets.mpii_nzsl import cmu_keypoints, write_jpeg

if TYPE_CHECKING:
    from hand3d.datasets.standin import HandPhotographer

DATASET = "CMU hand143_panopticdb"
ANNOTATIONS = "hands_v143_14817.json"
IMAGES = "imgs"
SPLITS: dict[str, str | None] = {"train": None}

_SIZE = (1920, 1080)
_HAND_SIZE = (0.15, 0.35)


def _entries(path: Path) -> list:
    """The `root` list of the annotation file; DatasetLayoutError when the file is not that JSON."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetLayoutError(f"{path}: not the {DATASET} annotation file: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("root"), list):
        raise DatasetLayoutError(f"{path}: not the {DATASET} annotation file: it lacks a 'root' list")
    return data["root"]


def _parse(entry: object) -> tuple[str, np.ndarray]:
    """(img_paths, keypoints_2d) of one entry; ValueError saying what is wrong."""
    if not isinstance(entry, dict):
        raise ValueError(f"entry is {type(entry).__name__}, expected an object")
    missing = [key for key in ("img_paths", "joint_self") if key not in entry]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)}")
    image = entry["img_paths"]
    if not isinstance(image, str) or not image:
        raise ValueError(f"img_paths is {image!r}, expected a relative path")
    path = PurePosixPath(image)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"img_paths is {image!r}, expected a path inside the dataset folder")
    return image, cmu_keypoints(entry["joint_self"])


def read(root: str | Path, split: str) -> ReadResult:
    """All hands, in the file's order, named by `img_paths` without its extension (e.g. `imgs/00000000`).

    `root` is the `hand143_panopticdb` folder; DatasetLayoutError when it lacks the JSON or `imgs/`.
    """
    if split not in SPLITS:
        raise ValueError(f"{DATASET}: unknown split {split!r}; expected one of {sorted(SPLITS)}")
    root = require(root, ANNOTATIONS, IMAGES, dataset=DATASET)
    result = ReadResult(samples=[])
    names: set[str] = set()
    for index, entry in enumerate(_entries(root / ANNOTATIONS)):
        where = f"{root / ANNOTATIONS} entry {index}"
        try:
            relative, keypoints = _parse(entry)
        except ValueError as error:
            result.skip("malformed_annotation", where, str(error))
            continue
        name = str(PurePosixPath(relative).with_suffix(""))
        if name in names:
            result.skip("duplicate_name", where, f"a second entry for {relative}")
            continue
        image = root / relative
        if not image.is_file():
            result.skip("missing_image", image, f"{where} names a missing image")
            continue
        names.add(name)
        result.samples.append(RawSample(name=name, image=str(image), keypoints_2d=keypoints, is_left=False))
    return result


def _entry(index: int, keypoints: np.ndarray) -> dict:
    """The JSON entry of one stand-in hand (all keypoints valid; objpos = centre of the keypoints' box)."""
    low, high = keypoints.min(axis=0), keypoints.max(axis=0)
    return {
        "img_paths": f"{IMAGES}/{index:08d}.jpg",
        "img_width": _SIZE[0],
        "img_height": _SIZE[1],
        "objpos": [float(v) for v in (low + high) / 2],
        "joint_self": [[float(x), float(y), 1.0] for x, y in keypoints],
    }


def write_demo(root: str | Path, photographer: HandPhotographer, seed: int, train: int = 8) -> dict[str, np.ndarray]:
    """A stand-in `hand143_panopticdb` in the published layout (synthetic images, exact labels; not the dataset).

    Writes `root/hands_v143_14817.json` and `root/imgs/%08d.jpg` (1920 x 1080, right hands). Deterministic from
    `seed`. Returns each sample's name (as `read` gives it) -> the photographer's (21, 2) float64 keypoints.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / IMAGES).mkdir(parents=True, exist_ok=True)
    entries, labels = [], {}
    for index in range(train):
        shot = photographer.shoot(rng, *_SIZE, left=False, hand_size=_HAND_SIZE)
        keypoints = np.asarray(shot.keypoints_2d, dtype=np.float64)
        entry = _entry(index, keypoints)
        write_jpeg(root / entry["img_paths"], shot.image)
        entries.append(entry)
        labels[str(PurePosixPath(entry["img_paths"]).with_suffix(""))] = keypoints
    atomic_write_json(root / ANNOTATIONS, {"root": entries})
    return labels
