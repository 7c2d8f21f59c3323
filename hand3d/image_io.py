"""Reading and writing RGB images (OpenCV stores BGR): one place for the channel order and atomic writes."""

from __future__ import annotations

import os

import cv2
import numpy as np

from hand3d.atomic import atomic_write

__all__ = ["read_rgb", "write_rgb"]


def read_rgb(path: str | os.PathLike) -> np.ndarray | None:
    """An image file as (H, W, 3) uint8 RGB; None when OpenCV cannot read it."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_rgb(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image atomically, in the format of the path's suffix (.png, .jpg, ...)."""

    def write(tmp: str) -> None:
        if not cv2.imwrite(tmp, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: OpenCV could not write the image")

    atomic_write(path, write)
