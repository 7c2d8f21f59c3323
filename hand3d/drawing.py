"""Overlays on images: the 21-keypoint skeleton (one colour per finger) and mask outlines."""

from __future__ import annotations

import cv2
import numpy as np

from hand3d.keypoints import BONES, FINGERS

# RGB per finger, thumb to little; the wrist takes the first.
FINGER_COLORS = ((230, 60, 60), (240, 180, 40), (60, 200, 80), (50, 150, 240), (190, 80, 230))


def _finger_of(keypoint: int) -> int:
    for i, ids in enumerate(FINGERS.values()):
        if keypoint in ids:
            return i
    return 0


def draw_skeleton(image: np.ndarray, keypoints: np.ndarray, thickness: int = 2) -> np.ndarray:
    """Draw bones and joints of the visible keypoints (21,2) or (21,3) with visibility on a copy of an RGB image."""
    out = image.copy()
    visible = keypoints[:, 2] > 0 if keypoints.shape[1] > 2 else np.ones(len(keypoints), bool)
    pts = np.rint(keypoints[:, :2]).astype(int)
    for parent, child in BONES:
        if visible[parent] and visible[child]:
            color = FINGER_COLORS[_finger_of(child)]
            cv2.line(out, tuple(pts[parent]), tuple(pts[child]), color, thickness, cv2.LINE_AA)
    for k in np.flatnonzero(visible):
        cv2.circle(out, tuple(pts[k]), thickness + 1, FINGER_COLORS[_finger_of(k)], -1, cv2.LINE_AA)
    return out


def draw_mask_outline(image: np.ndarray, mask: np.ndarray, color=(255, 255, 255)) -> np.ndarray:
    """Outline the mask's regions on a copy of an RGB image."""
    out = image.copy()
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, color, 1, cv2.LINE_AA)
    return out


def tile(images: list[np.ndarray], columns: int) -> np.ndarray:
    """Arrange equally sized images in a grid, row by row (missing cells black)."""
    h, w = images[0].shape[:2]
    rows = -(-len(images) // columns)
    grid = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = img
    return grid
