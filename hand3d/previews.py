"""Preview pictures of packed datasets: crops with their 2D skeleton and mask outline."""

from __future__ import annotations

import cv2
import numpy as np

from hand3d.drawing import draw_mask_outline, draw_skeleton, tile
from hand3d.h5io import open_packed, read_field
from hand3d.image_io import write_rgb


def packed_preview(h5_path: str, out_png: str, count: int = 16, columns: int = 4) -> np.ndarray:
    """Save a grid of `count` evenly spaced samples of a packed file, annotated; returns the RGB grid."""
    if count < 1:
        raise ValueError(f"a preview needs at least one sample, got count {count}")
    with open_packed(h5_path) as f:
        n = len(f["images"])
        if n == 0:
            raise ValueError(f"{h5_path}: no samples to preview")
        indices = np.unique(np.linspace(0, n - 1, min(count, n)).astype(int))
        images, keypoints = f["images"][indices], f["keypoints_2d"][indices]
        masks, has_mask, names = f["masks"][indices], f["has_mask"][indices], read_field(f["names"], indices)
    tiles = []
    for img, kp, mask, with_mask, name in zip(images, keypoints, masks, has_mask, names, strict=True):
        annotated = draw_mask_outline(img, mask) if with_mask else img
        annotated = draw_skeleton(annotated, kp)
        cv2.putText(annotated, name[-28:], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(annotated)
    grid = tile(tiles, columns)
    write_rgb(out_png, grid)
    return grid
