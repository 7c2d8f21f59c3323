"""Reading and writing RGB images (OpenCV stores BGR): one place for the channel order and atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from hand3d.atomic import atomic_write

__all__ = ["read_rgb", "truncated_jpeg", "write_rgb"]


_SOI, _EOI, _SOS = b"\xff\xd8", b"\xff\xd9", 0xDA
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length field (TEM, RST0-7)


def _first_scan(data: bytes) -> int | None:
    """Offset of the first start-of-scan segment, walking the header segments by their lengths; None if the header
    runs off the end (so an EXIF thumbnail's own markers, inside its segment, are never looked at)."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
        elif marker == _SOS:
            return at
        elif marker in _STANDALONE:
            at += 2
        else:
            at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return None


def truncated_jpeg(path: str | os.PathLike) -> bool:
    """Whether a JPEG file is cut short (an interrupted download or copy): no end-of-image marker after its first
    scan. OpenCV decodes such a file with a warning, grey below the cut, so it would pass for an image.

    The marker cannot occur inside the compressed data (every 0xFF there is followed by 0x00 or a restart marker), and
    whatever follows it (a motion photo's video) is not looked at.
    """
    with open(path, "rb") as stream:
        return _cut_short(stream.read())


def _cut_short(data: bytes) -> bool:
    if not data.startswith(_SOI):
        return False
    scan = _first_scan(data)
    return scan is None or data.find(_EOI, scan) < 0


def read_rgb(path: str | os.PathLike) -> np.ndarray | None:
    """An image file as (H, W, 3) uint8 RGB (EXIF orientation applied, as ``cv2.imread`` does); None when it is
    missing, OpenCV cannot decode it, or a JPEG is cut short. The file is read once."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None or _cut_short(data):
        return None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_rgb(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image atomically, in the format of the path's suffix (.png, .jpg, ...)."""

    def write(tmp: str) -> None:
        if not cv2.imwrite(tmp, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: OpenCV could not write the image")

    atomic_write(path, write)
