"""The paper's hand crop: a square of side 2.2x the tightest box around the visible keypoints, shifted inside the
image, resized to 320 pixels; left hands mirrored to right hands after cropping.

Conventions (DESIGN section 2): pixel centres at integers. A crop box (x0, y0, side) in original-image pixels maps an
image point x to crop pixels by `(x - x0 + 0.5) * 320 / side - 0.5`. A mirrored crop is flipped after cropping, so
crop x' = 319 - x and 3D X' = -X; `crop_box[3]` records the flip.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from hand3d.camera import mirror_camera

CROP_SIZE = 320
BOX_SCALE = 2.2
MIN_SIDE = 16


@dataclass(frozen=True)
class CropBox:
    x0: int
    y0: int
    side: int
    mirrored: bool

    def meets(self, width: int, height: int) -> bool:
        """Whether the box holds any pixel of a width x height image."""
        return self.x0 < width and self.y0 < height and self.x0 + self.side > 0 and self.y0 + self.side > 0

    def as_array(self) -> np.ndarray:
        return np.array([self.x0, self.y0, self.side, float(self.mirrored)], dtype=np.float32)


def visible_inside(keypoints_2d: np.ndarray, width: int, height: int) -> np.ndarray:
    """Annotated keypoints that lie inside the image."""
    x, y, v = keypoints_2d[:, 0], keypoints_2d[:, 1], keypoints_2d[:, 2]
    return (v > 0) & (x >= 0) & (y >= 0) & (x <= width - 1) & (y <= height - 1)


def _place(centre: float, side: int, extent: int) -> int:
    """Start of a window of `side` around `centre`, shifted inside [0, extent), centred on it when too big."""
    start = round(centre - side / 2)
    if side > extent:
        return (extent - side) // 2
    return min(max(start, 0), extent - side)


def crop_box(keypoints_2d: np.ndarray, width: int, height: int, mirrored: bool, scale: float = BOX_SCALE) -> CropBox:
    """The paper's square box around the visible keypoints (at least two must be visible)."""
    vis = keypoints_2d[visible_inside(keypoints_2d, width, height), :2]
    if len(vis) < 2:
        raise ValueError("fewer than two visible keypoints inside the image")
    lo, hi = vis.min(axis=0), vis.max(axis=0)
    side = max(MIN_SIDE, int(np.ceil(scale * (hi - lo).max())))
    centre = (lo + hi) / 2
    return CropBox(_place(centre[0], side, width), _place(centre[1], side, height), side, mirrored)


def crop_image(image: np.ndarray, box: CropBox, size: int = CROP_SIZE, interpolation: int | None = None) -> np.ndarray:
    """Cut the box out of the image (zero where it leaves the image), resize to size x size, mirror if asked."""
    h, w = image.shape[:2]
    region = np.zeros((box.side, box.side, *image.shape[2:]), dtype=image.dtype)
    xs, ys = max(box.x0, 0), max(box.y0, 0)
    xe, ye = min(box.x0 + box.side, w), min(box.y0 + box.side, h)
    if xe > xs and ye > ys:  # else the box misses the image: all black
        region[ys - box.y0 : ye - box.y0, xs - box.x0 : xe - box.x0] = image[ys:ye, xs:xe]
    if interpolation is None:
        interpolation = cv2.INTER_AREA if box.side > size else cv2.INTER_LINEAR
    out = cv2.resize(region, (size, size), interpolation=interpolation)
    return out[:, ::-1].copy() if box.mirrored else out


def to_crop(points_2d: np.ndarray, box: CropBox, size: int = CROP_SIZE) -> np.ndarray:
    """Image pixels (..., 2+) -> crop pixels, mirrored with the crop; extra columns (visibility) kept."""
    out = np.array(points_2d, dtype=np.float32, copy=True)
    k = size / box.side
    out[..., 0] = (out[..., 0] - box.x0 + 0.5) * k - 0.5
    out[..., 1] = (out[..., 1] - box.y0 + 0.5) * k - 0.5
    if box.mirrored:
        out[..., 0] = size - 1 - out[..., 0]
    return out


def from_crop(points_2d: np.ndarray, box: CropBox, size: int = CROP_SIZE) -> np.ndarray:
    """Crop pixels -> original-image pixels (undoing the mirror): the inverse of `to_crop`."""
    out = np.array(points_2d, dtype=np.float32, copy=True)
    if box.mirrored:
        out[..., 0] = size - 1 - out[..., 0]
    k = box.side / size
    out[..., 0] = (out[..., 0] + 0.5) * k - 0.5 + box.x0
    out[..., 1] = (out[..., 1] + 0.5) * k - 0.5 + box.y0
    return out


def crop_keypoints(keypoints_2d: np.ndarray, box: CropBox, width: int, height: int) -> np.ndarray:
    """(21, 3) keypoints in crop pixels; visible only if annotated, inside the image and inside the crop."""
    out = to_crop(keypoints_2d, box)
    inside_crop = np.all((out[:, :2] >= 0) & (out[:, :2] <= CROP_SIZE - 1), axis=1)
    out[:, 2] = (visible_inside(keypoints_2d, width, height) & inside_crop).astype(np.float32)
    return out


def camera_from_crop(camera: np.ndarray, box: CropBox, size: int = CROP_SIZE) -> np.ndarray:
    """A crop's weak-perspective camera [s, tx, ty] -> the camera of the original image (undoing the mirror).

    For a mirrored crop the returned camera projects the mirrored-back points (X' = -X), so that
    ``from_crop(project(P, camera), box) == project(P', camera_from_crop(camera, box))``.
    """
    s, tx, ty = np.asarray(mirror_camera(camera, size) if box.mirrored else camera, dtype=np.float64)
    k = box.side / size
    return np.array([k * s, k * (tx + 0.5) - 0.5 + box.x0, k * (ty + 0.5) - 0.5 + box.y0])


def whole_image_box(width: int, height: int, mirrored: bool = False) -> CropBox:
    """The square crop holding the whole image, centred (the shorter side padded with black)."""
    side = max(width, height)
    return CropBox((width - side) // 2, (height - side) // 2, side, mirrored)


def square_box(x: float, y: float, w: float, h: float, mirrored: bool, scale: float = BOX_SCALE) -> CropBox:
    """The square crop of side ``scale`` times the larger side of a hand box (x, y, w, h), on the box's centre.

    Unlike :func:`crop_box` it is not shifted inside the image: a user's box is kept centred (padded with black).
    """
    if not (w > 0 and h > 0):
        raise ValueError(f"a hand box needs a positive width and height, got {w} x {h}")
    side = max(MIN_SIDE, int(np.ceil(scale * max(w, h))))
    return CropBox(round(x + w / 2 - side / 2), round(y + h / 2 - side / 2), side, mirrored)
