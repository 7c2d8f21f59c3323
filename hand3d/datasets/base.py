"""Types shared by the dataset readers: one annotated hand, a reader's result, and layout errors.

Readers return keypoints in the canonical OpenPose-21 order (`hand3d.keypoints`), 2D in the ORIGINAL image's pixels
(x = column, y = row), 3D in metres in that image's camera frame (OpenCV axes). They do not open images: image
problems (missing, corrupt, keypoints outside the frame) are found and counted when the crop stage reads them.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class DatasetLayoutError(ValueError):
    """The root given for a dataset is not that dataset's published layout."""


@dataclass
class RawSample:
    """One annotated hand."""

    name: str  # unique within the dataset and split, e.g. the image's path relative to the root
    image: str  # path of the full image file
    keypoints_2d: np.ndarray  # (21, 3) float32: x, y in original-image pixels, visibility 0/1
    keypoints_3d: np.ndarray | None = None  # (21, 3) float32 metres, camera frame; None where the dataset has none
    is_left: bool = False
    mask: str | None = None  # path of a hand mask the dataset ships (same size as the image), if any

    def __post_init__(self) -> None:
        self.keypoints_2d = np.asarray(self.keypoints_2d, dtype=np.float32).reshape(21, 3)
        if self.keypoints_3d is not None:
            self.keypoints_3d = np.asarray(self.keypoints_3d, dtype=np.float32).reshape(21, 3)


def finite_as_float32(values: np.ndarray) -> np.ndarray:
    """Elementwise: True where a value stays finite as float32, the type RawSample keeps keypoints in.

    Readers check with this, not with np.isfinite on their float64 values: 1e39 is finite in float64 but inf in
    float32, and would only fail later, for its whole shard, in the crop stage.
    """
    with np.errstate(over="ignore"):
        return np.isfinite(np.asarray(values, dtype=np.float32))


@dataclass
class ReadResult:
    """What a reader found: the usable samples and a count of each kind of problem it skipped."""

    samples: list[RawSample]
    issues: Counter = field(default_factory=Counter)

    def skip(self, kind: str, where: str | Path, why: str) -> None:
        """Count a skipped sample and log where and why."""
        self.issues[kind] += 1
        log.warning("skipped %s: %s (%s)", where, why, kind)


def require(root: str | Path, *relative: str, dataset: str) -> Path:
    """The root as a Path, after checking that each of `relative` exists in it; else DatasetLayoutError."""
    root = Path(root)
    missing = [r for r in relative if not (root / r).exists()]
    if not root.is_dir() or missing:
        what = "is not a directory" if not root.is_dir() else f"lacks {', '.join(missing)}"
        raise DatasetLayoutError(f"{root}: not the {dataset} layout: it {what}")
    return root
