"""Hand masks by GrabCut seeded with the skeleton, the paper's method (Boukhayma et al. 2019, section 4).

Bones of the visible keypoints drawn thick and the palm polygons are sure hand; a wider band around them is probably
hand; the rest of the crop is probably background, and the crop's border (further than `background_margin` from the
skeleton) is sure background. `cv2.grabCut` then fits colour models and labels every pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from hand3d.keypoints import BONES

# Palm triangles in OpenPose order: wrist with the knuckles, and the thumb's base.
PALM_POLYGONS = ((0, 1, 5), (0, 5, 9), (0, 9, 13), (0, 13, 17), (1, 2, 5))


@dataclass(frozen=True)
class GrabCutConfig:
    iterations: int = 5
    bone_width: int = 12  # sure-hand stroke width, crop pixels
    probable_width: int = 40  # probably-hand band width
    background_margin: int = 60  # sure background further than this from the skeleton


def _draw_skeleton(mask: np.ndarray, keypoints: np.ndarray, value: int, width: int) -> None:
    pts = np.rint(keypoints[:, :2]).astype(np.int32)
    visible = keypoints[:, 2] > 0
    for a, b in BONES:
        if visible[a] and visible[b]:
            cv2.line(mask, tuple(pts[a]), tuple(pts[b]), value, width)
    for polygon in PALM_POLYGONS:
        if visible[list(polygon)].all():
            cv2.fillConvexPoly(mask, pts[list(polygon)], value)


def seed_mask(shape: tuple[int, int], keypoints: np.ndarray, cfg: GrabCutConfig) -> np.ndarray:
    """GrabCut's initial labels (GC_BGD, GC_PR_BGD, GC_PR_FGD, GC_FGD) from the skeleton."""
    near = np.zeros(shape, np.uint8)
    _draw_skeleton(near, keypoints, 1, 2 * cfg.background_margin)
    mask = np.where(near > 0, cv2.GC_PR_BGD, cv2.GC_BGD).astype(np.uint8)
    _draw_skeleton(mask, keypoints, cv2.GC_PR_FGD, cfg.probable_width)
    _draw_skeleton(mask, keypoints, cv2.GC_FGD, cfg.bone_width)
    return mask


def grabcut_mask(image: np.ndarray, keypoints: np.ndarray, cfg: GrabCutConfig = GrabCutConfig()) -> np.ndarray | None:
    """(H, W) uint8 hand mask of an RGB crop, or None when fewer than two keypoints are visible."""
    if (keypoints[:, 2] > 0).sum() < 2:
        return None
    mask = seed_mask(image.shape[:2], keypoints, cfg)
    if not (mask == cv2.GC_BGD).any() or not (mask == cv2.GC_PR_BGD).any():
        mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = cv2.GC_BGD  # GrabCut needs some background
    background, foreground = np.zeros((1, 65)), np.zeros((1, 65))
    # GrabCut seeds its colour models from OpenCV's global RNG: reset it so that a mask depends on its crop alone,
    # not on how many masks the process made before (shard sizes, sample order).
    cv2.setRNGSeed(0)
    cv2.grabCut(np.ascontiguousarray(image[..., ::-1]), mask, None, background, foreground, cfg.iterations,
                cv2.GC_INIT_WITH_MASK)  # fmt: skip
    return ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
