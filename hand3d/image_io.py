"""Reading and writing RGB images (OpenCV stores BGR): one place for the channel order and atomic writes."""

from __future__ import annotations

import os

import cv2
import numpy as np

from hand3d.atomic import atomic_write

__all__ = ["read_rgb", "truncated_jpeg", "write_rgb"]


_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_JPEG_TAIL = 4096  # bytes searched for the end marker (encoders may append a little after it)


def truncated_jpeg(path: str | os.PathLike) -> bool:
    """Whether a JPEG file lacks its end-of-image marker: cut short (an interrupted download or copy).

    OpenCV decodes such a file with a warning, grey below the cut, so it would pass for an image. The marker cannot
    occur inside the compressed data (every 0xFF there is followed by 0x00 or a restart marker).
    """
    with open(path, "rb") as stream:
        if stream.read(2) != _JPEG_START:
            return False
        stream.seek(0, os.SEEK_END)
        stream.seek(max(0, stream.tell() - _JPEG_TAIL))
        return _JPEG_END not in stream.read()


def read_rgb(path: str | os.PathLike) -> np.ndarray | None:
    """An image file as (H, W, 3) uint8 RGB; None when OpenCV cannot read it or a JPEG is cut short."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None or truncated_jpeg(path):
        return None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_rgb(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image atomically, in the format of the path's suffix (.png, .jpg, ...)."""

    def write(tmp: str) -> None:
        if not cv2.imwrite(tmp, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: OpenCV could not write the image")

    atomic_write(path, write)
