"""Keypoint heatmaps: 21 Gaussian maps per crop, from the annotations or from an external 2D detector.

The detector source is a folder of OpenPose-format JSON results (`<image stem>_keypoints.json` with
`people[i].hand_right_keypoints_2d` / `hand_left_keypoints_2d` = 63 numbers x, y, confidence in the original
image's pixels), as the paper used OpenPose. Maps are stored as uint8 0-255 at a configurable resolution; a
keypoint's peak is 255 times its confidence (1 for annotations); keypoints without a detection give empty maps.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from hand3d.crop import CROP_SIZE

log = logging.getLogger(__name__)


def gaussian_heatmaps(keypoints: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """(21, size, size) uint8 maps of crop keypoints (21, 3): x, y in crop pixels, third column the peak height."""
    k = size / CROP_SIZE
    grid = np.arange(size, dtype=np.float32)
    x = (keypoints[:, 0] + 0.5) * k - 0.5
    y = (keypoints[:, 1] + 0.5) * k - 0.5
    s = sigma * k
    gx = np.exp(-((grid[None, :] - x[:, None]) ** 2) / (2 * s * s))
    gy = np.exp(-((grid[None, :] - y[:, None]) ** 2) / (2 * s * s))
    maps = gy[:, :, None] * gx[:, None, :] * np.clip(keypoints[:, 2], 0, 1)[:, None, None]
    return np.rint(255 * maps).astype(np.uint8)


def openpose_json(folder: str | Path, image: str | Path, root: str | Path | None) -> Path | None:
    """The detector's JSON for an image: mirrored sub-folders first (`<folder>/<rel dir>/<stem>_keypoints.json`)."""
    folder, image = Path(folder), Path(image)
    candidates = []
    if root is not None and image.is_relative_to(root):
        candidates.append(folder / image.relative_to(root).parent / f"{image.stem}_keypoints.json")
    candidates.append(folder / f"{image.stem}_keypoints.json")
    return next((c for c in candidates if c.exists()), None)


def openpose_hands(path: Path) -> list[tuple[np.ndarray, bool]]:
    """Every hand of an OpenPose JSON with some confidence: ``(keypoints (21, 3) x, y, confidence, is_left)``.

    ValueError naming the file when it is not an OpenPose result.
    """
    try:
        people = json.loads(Path(path).read_text())["people"]
        hands = []
        for person in people:
            for key, is_left in (("hand_right_keypoints_2d", False), ("hand_left_keypoints_2d", True)):
                values = person.get(key) or []
                if len(values) == 63:
                    hands.append((np.asarray(values, dtype=np.float32).reshape(21, 3), is_left))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path}: not an OpenPose keypoints JSON ({error})") from error
    return [(kp, is_left) for kp, is_left in hands if (kp[:, 2] > 0).any()]


def detected_hand(path: Path, is_left: bool, near: np.ndarray) -> np.ndarray | None:
    """(21, 3) x, y, confidence of the detected hand of that side closest to `near` (image pixels), or None."""
    try:
        found = openpose_hands(path)
    except ValueError as error:
        log.warning("%s", error)
        return None
    hands = [kp for kp, left in found if left == is_left]
    if not hands:
        return None
    distance = [np.linalg.norm(h[h[:, 2] > 0, :2].mean(axis=0) - near) for h in hands]
    return hands[int(np.argmin(distance))]
