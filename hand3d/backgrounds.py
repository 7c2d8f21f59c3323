"""Background photos the synthetic hands are composited over (DESIGN section 4, rule `backgrounds`).

A background set is an (N, size, size, 3) uint8 RGB array stored in HDF5 (`images`, chunked one image per chunk,
`names` UTF-8, attribute `skipped`). Sources: a user's folder of photos (every .jpg/.jpeg/.png below it, any case),
or, without one, the photos scikit-image ships (they load offline) plus procedural textures generated from a seed.
Each image is resized so its shorter side is `size` (cv2.INTER_AREA) and centre-cropped to a square.

The set is written one image at a time and a large one is read one image a draw (`open_backgrounds`), so a folder of
thousands of photos fits the rules' memory. At render time `random_background` draws a random crop (0.5-1.0 of the
side), resizes it to the crop size, flips it and jitters its colours, every draw from the caller's
np.random.Generator.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import h5py

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# scikit-image's bundled photos (no download). `skimage.data.cat()` is the same image as `chelsea()` (checked with
# scikit-image 0.26), so it is listed once.
SKIMAGE_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "retina",
    "rocket",
)
CROP_FRACTION = (0.5, 1.0)
JITTER = (0.7, 1.3)  # brightness, contrast and saturation factors
HUE_SHIFT_DEG = 10.0
IN_MEMORY_BYTES = 512 << 20  # a set up to this size is read whole; a larger one, an image a draw


# ----------------------------------------------------------------------------------------------- image preparation


def to_rgb(image: np.ndarray) -> np.ndarray:
    """RGB uint8 from what cv2.imread(IMREAD_UNCHANGED) returns: gray, BGR or BGRA, 8 or 16 bit."""
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[..., 2::-1])  # BGR(A) -> RGB, alpha dropped


def square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the shorter side is `size` (cv2.INTER_AREA), then centre-crop to (size, size)."""
    height, width = image.shape[:2]
    scale = size / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.ascontiguousarray(resized[top : top + size, left : left + size])


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: background folder not found")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_image(path: Path) -> np.ndarray | None:
    """RGB uint8, or None when OpenCV cannot decode the file."""
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    return None if image is None else to_rgb(image)


def folder_backgrounds(folder: str | os.PathLike, size: int) -> Iterator[tuple[np.ndarray | None, str]]:
    """(image squared to `size`, name) for every .jpg/.jpeg/.png below `folder` (recursive, any case, sorted paths).

    Names are paths relative to `folder`. An unreadable file gives None, with a warning; a folder with no usable
    image is an error naming it.
    """
    from tqdm import tqdm

    folder = Path(folder)
    usable = skipped = 0
    for path in tqdm(_image_files(folder), desc="backgrounds", unit="img"):
        try:
            image = _read_image(path)
        except (OSError, ValueError) as error:
            log.warning("skipping unreadable background %s: %s", path, error)
            image = None
        else:
            if image is None:
                log.warning("skipping unreadable background %s", path)
        usable, skipped = usable + (image is not None), skipped + (image is None)
        yield (None if image is None else square(image, size)), path.relative_to(folder).as_posix()
    if not usable:
        raise ValueError(f"{folder}: no usable background image (.jpg, .jpeg, .png; {skipped} unreadable)")


def skimage_backgrounds(size: int) -> tuple[list[np.ndarray], list[str]]:
    """scikit-image's bundled photos (SKIMAGE_PHOTOS), RGB, squared to `size`; names `skimage:<name>`."""
    import skimage.data

    images = [square(_skimage_rgb(getattr(skimage.data, name)()), size) for name in SKIMAGE_PHOTOS]
    return images, [f"skimage:{name}" for name in SKIMAGE_PHOTOS]


def _skimage_rgb(image: np.ndarray) -> np.ndarray:
    """skimage.data images are already RGB (or gray) uint8: gray becomes RGB, alpha is dropped."""
    image = np.asarray(image, dtype=np.uint8)
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else np.ascontiguousarray(image[..., :3])


# ----------------------------------------------------------------------------------------------- procedural textures


def _random_colors(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0, 1, size=(n, 3))


def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size] / size
    return x, y


def color_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour noise: random grids of 2, 4, 8, ... cells upsampled (bicubic) and summed with halving weights."""
    out, weight, total = np.zeros((size, size, 3)), 1.0, 0.0
    for cells in 2 ** np.arange(1, rng.integers(4, 7)):
        grid = rng.uniform(-1, 1, size=(cells, cells, 3)).astype(np.float32)
        out += weight * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        total += weight
        weight *= rng.uniform(0.4, 0.7)
    base = _random_colors(rng, 1)[0]
    return base + rng.uniform(0.2, 0.5) * out / total


def stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    """Stripes (or checkers) of two random colours at a random orientation, period and edge softness."""
    x, y = _coords(size)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(0.03, 0.3)
    u = (np.cos(angle) * x + np.sin(angle) * y) / period
    wave = np.sin(2 * np.pi * u)
    if rng.random() < 0.5:  # checkers: the product of two perpendicular waves
        wave = wave * np.sin(2 * np.pi * (-np.sin(angle) * x + np.cos(angle) * y) / period)
    mix = 0.5 + 0.5 * np.tanh(rng.uniform(1, 20) * wave)
    first, second = _random_colors(rng, 2)
    return first + mix[..., None] * (second - first)


def gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    """A linear or radial gradient through three random colours."""
    x, y = _coords(size)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        t = np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5) + 0.5
    else:
        cx, cy = rng.uniform(0, 1, size=2)
        t = np.hypot(x - cx, y - cy) / np.sqrt(2)
    t = np.clip(t, 0, 1)[..., None]
    colors = _random_colors(rng, 3)
    return np.where(
        t < 0.5, colors[0] + 2 * t * (colors[1] - colors[0]), colors[1] + (2 * t - 1) * (colors[2] - colors[1])
    )


def blurred_shapes(rng: np.random.Generator, size: int) -> np.ndarray:
    """Random filled circles, rectangles and triangles in random colours on a random colour, Gaussian-blurred."""
    image = np.ones((size, size, 3), np.float32) * _random_colors(rng, 1)[0].astype(np.float32)
    for _ in range(rng.integers(8, 30)):
        color = tuple(float(c) for c in _random_colors(rng, 1)[0])
        kind = rng.integers(3)
        if kind == 0:
            center = tuple(int(c) for c in rng.integers(0, size, size=2))
            cv2.circle(image, center, int(rng.uniform(0.02, 0.25) * size), color, -1, cv2.LINE_AA)
        elif kind == 1:
            corners = rng.integers(0, size, size=(2, 2))
            cv2.rectangle(image, tuple(int(c) for c in corners[0]), tuple(int(c) for c in corners[1]), color, -1)
        else:
            cv2.fillPoly(image, [rng.integers(0, size, size=(3, 2)).astype(np.int32)], color, cv2.LINE_AA)
    sigma = rng.uniform(0.5, 4.0) * size / 100
    return cv2.GaussianBlur(image, (0, 0), sigma).astype(np.float64)


TEXTURES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "noise": color_noise,
    "stripes": stripes,
    "gradient": gradient,
    "shapes": blurred_shapes,
}


def procedural_backgrounds(count: int, size: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    """`count` procedural textures (size, size, 3) uint8, deterministic from `seed`, the kinds in equal shares.

    Each is one of TEXTURES, or (one in three) an even blend of two, plus faint pixel noise.
    """
    rng = np.random.default_rng(seed)
    kinds = list(TEXTURES)
    order = rng.permutation(np.arange(count) % len(kinds))
    images, names = [], []
    for i, k in enumerate(order):
        texture, name = TEXTURES[kinds[k]](rng, size), kinds[k]
        if rng.random() < 1 / 3:
            other = kinds[rng.integers(len(kinds))]
            texture, name = 0.5 * (texture + TEXTURES[other](rng, size)), f"{name}+{other}"
        texture = texture + rng.normal(0, 0.01, size=texture.shape)
        images.append((np.clip(texture, 0, 1) * 255).round().astype(np.uint8))
        names.append(f"procedural:{i:04d}:{name}")
    return images, names


def background_sources(
    folder: str | os.PathLike | None, size: int, procedural: int, seed: int
) -> Iterator[tuple[np.ndarray | None, str]]:
    """(image (size, size, 3) uint8 RGB or None where unreadable, name), one at a time.

    With `folder`: its photos only (see `folder_backgrounds`; `procedural` is not used). Without: scikit-image's
    photos (SKIMAGE_PHOTOS) followed by `procedural` textures from `seed`.
    """
    if folder is not None:
        yield from folder_backgrounds(folder, size)
        return
    for images, names in (skimage_backgrounds(size), procedural_backgrounds(procedural, size, seed)):
        yield from zip(images, names, strict=True)


# ----------------------------------------------------------------------------------------------- storage


def write_backgrounds(path: str | os.PathLike, sources: Iterable[tuple[np.ndarray | None, str]], size: int) -> int:
    """Write the set to HDF5 atomically, an image at a time: `images` (N, S, S, 3) uint8 chunked per image, `names`,
    attr `skipped` (the sources given as None). Returns N."""
    import h5py

    from hand3d.atomic import atomic_write

    count = 0

    def write(tmp: str) -> None:
        nonlocal count
        names, skipped = [], 0
        with h5py.File(tmp, "w") as f:
            shape = (size, size, 3)
            images = f.create_dataset(
                "images", (0, *shape), np.uint8, maxshape=(None, *shape), chunks=(1, *shape), compression="gzip"
            )
            for image, name in sources:
                if image is None:
                    skipped += 1
                    continue
                if image.shape != shape:
                    raise ValueError(f"background {name}: shape {image.shape}, expected {shape}")
                images.resize(len(names) + 1, axis=0)
                images[len(names)] = image
                names.append(name)
            f.create_dataset("names", data=names, dtype=h5py.string_dtype("utf-8"))
            f.attrs["skipped"] = skipped
        count = len(names)

    atomic_write(path, write)
    return count


@contextmanager
def open_backgrounds(path: str | os.PathLike) -> Iterator[np.ndarray | h5py.Dataset]:
    """The (N, S, S, 3) uint8 RGB images of a set written by `write_backgrounds`, indexable by image: an array when
    the set is at most IN_MEMORY_BYTES, else the open HDF5 dataset, which reads (and decompresses) one image a draw."""
    import h5py

    with h5py.File(path, "r") as f:
        if "images" not in f:
            raise ValueError(f"{path}: no 'images' dataset (not a background set; rule `backgrounds` writes one)")
        images = f["images"]
        yield images[()] if images.nbytes <= IN_MEMORY_BYTES else images


# ----------------------------------------------------------------------------------------------- sampling


def random_background(
    rng: np.random.Generator, backgrounds: np.ndarray | h5py.Dataset, out_size: int = 320
) -> np.ndarray:
    """(out_size, out_size, 3) uint8: a random crop of a random background, flipped and colour-jittered.

    Draws, all from `rng` in this order: the image; the crop side (uniform in 0.5-1.0 of the stored side) and its
    corner; horizontal and vertical flips (each with probability 1/2); hue shift (+-10 degrees), saturation,
    brightness and contrast factors (each in 0.7-1.3; contrast about the mean grey level). Jitter is in float,
    clipped to [0, 1].
    """
    image = backgrounds[rng.integers(len(backgrounds))]
    side = image.shape[0]
    crop = int(round(rng.uniform(*CROP_FRACTION) * side))
    top, left = rng.integers(0, side - crop + 1, size=2)
    patch = image[top : top + crop, left : left + crop]
    interpolation = cv2.INTER_AREA if crop > out_size else cv2.INTER_LINEAR
    patch = cv2.resize(patch, (out_size, out_size), interpolation=interpolation)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if rng.random() < 0.5:
        patch = patch[::-1]
    return color_jitter(rng, patch)


def color_jitter(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Hue shift, saturation, brightness, contrast (see `random_background`) of an RGB uint8 image."""
    hue = rng.uniform(-HUE_SHIFT_DEG, HUE_SHIFT_DEG)
    saturation, brightness, contrast = rng.uniform(*JITTER, size=3)
    hsv = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.float32) / 255, cv2.COLOR_RGB2HSV)  # H in degrees
    hsv[..., 0] = (hsv[..., 0] + hue) % 360
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 1)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * brightness
    gray = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    rgb = (rgb - gray.mean()) * contrast + gray.mean()
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def build_backgrounds(
    out_h5: str | os.PathLike, folder: str | os.PathLike | None, size: int, procedural: int, seed: int
) -> None:
    """Rule `backgrounds`: the set (`background_sources`) written to `out_h5` atomically, an image at a time."""
    count = write_backgrounds(out_h5, background_sources(folder, size, procedural, seed), size)
    log.info("wrote %d backgrounds (%d x %d) to %s", count, size, size, out_h5)
