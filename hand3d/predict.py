"""``hand3d predict``: a trained model on your images, one mesh, JSON record and overlay per hand.

Where the hands are:
- by default each image is one right hand filling it: the crop is the whole image (padded to a square);
- ``boxes``: a JSON file ``{"<image file name>": [{"box": [x, y, w, h], "hand": "left" | "right"}, ...], ...}``
  (original-image pixels; the crop is ``box_scale`` times the larger side of the box, on its centre);
- ``openpose``: a folder of OpenPose results, ``<image stem>_keypoints.json`` with ``people[i].hand_right_keypoints_2d``
  / ``hand_left_keypoints_2d`` (21 x [x, y, confidence]): every detected hand with at least two keypoints above
  ``min_confidence``, cropped as in training (2.2 x the keypoints' box). These also give the 21 heatmaps that
  RGB+2D models take (peaks = the detector's confidences, as in training with an OpenPose source).

Left hands are mirrored into the right-hand model and their outputs mirrored back (3D X -> -X, 2D in the original
image). Outputs per hand ``<stem>_<k>.obj`` (metres, camera axes, the hand model's origin) and
``<stem>_<k>.json``; per image ``<stem>_overlay.png``. See :func:`hand_record` for the JSON's fields.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hand3d.atomic import atomic_write_json
from hand3d.crop import (
    CropBox,
    camera_from_crop,
    crop_box,
    crop_image,
    from_crop,
    square_box,
    to_crop,
    whole_image_box,
)
from hand3d.drawing import draw_skeleton
from hand3d.hand_model import write_obj
from hand3d.heatmaps import gaussian_heatmaps, openpose_hands
from hand3d.image_io import read_rgb, write_rgb
from hand3d.inference import open_model, predict_crops
from hand3d.json_input import read_json
from hand3d.keypoints import mirror_keypoints_3d
from hand3d.overlay import MeshOverlay, screen_vertices

__all__ = [
    "IMAGE_SUFFIXES",
    "HandLocator",
    "Predictor",
    "find_images",
    "hand_record",
    "load_boxes",
    "predict",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
HEATMAP_SIZE, HEATMAP_SIGMA = 80, 6.0  # the pipeline's defaults (config real.heatmaps); the model's sigma wins


def find_images(paths: list[str | Path]) -> list[Path]:
    """Image files among ``paths`` (files, or folders searched recursively), sorted within each folder."""
    images = []
    for path in map(Path, paths):
        if path.is_dir():
            images += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            images.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such image or folder")
    if not images:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {[str(p) for p in paths]}")
    _check_distinct_stems(images)
    return images


def _check_distinct_stems(images: list[Path]) -> None:
    """Outputs are named after the image's stem, in one folder: two images of one stem would overwrite."""
    seen: dict[str, Path] = {}
    for image in images:
        if (other := seen.setdefault(image.stem, image)) != image:
            raise ValueError(
                f"{other} and {image} would write the same outputs ({image.stem}_<k>.obj, ...): "
                "predict them into separate --out folders"
            )


def _hand_side(entry: dict, where: str) -> bool:
    side = entry.get("hand", "right")
    if side not in ("left", "right"):
        raise ValueError(f"{where}: 'hand' must be 'left' or 'right', got {side!r}")
    return side == "left"


def _is_finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def load_boxes(path: str | Path) -> dict[str, list[tuple[list[float], bool]]]:
    """``{image name: [(box [x, y, w, h], is_left), ...]}`` from a boxes JSON, every entry checked."""
    data = read_json(path, "boxes JSON", dict, "an object mapping image names to lists of hands was expected")
    boxes = {}
    for name, hands in data.items():
        if not isinstance(hands, list):
            raise ValueError(f"{path}: {name!r} must map to a list of hands")
        boxes[name] = []
        for i, hand in enumerate(hands):
            where = f"{path}: {name!r} hand {i}"
            box = hand.get("box") if isinstance(hand, dict) else None
            if not (isinstance(box, list) and len(box) == 4 and all(_is_finite_number(v) for v in box)):
                raise ValueError(f"{where}: 'box' must be [x, y, w, h], finite numbers of pixels")
            if not (box[2] > 0 and box[3] > 0):
                raise ValueError(f"{where}: the box needs a positive width and height, got {box[2]} x {box[3]}")
            boxes[name].append(([float(v) for v in box], _hand_side(hand, where)))
    return boxes


@dataclass
class Hand:
    """One hand to predict: its crop box in the image and, from a detector, its keypoints (image pixels)."""

    box: CropBox
    keypoints: np.ndarray | None = None


class HandLocator:
    """Where the hands of an image are: the whole image, a boxes file, or OpenPose detections."""

    def __init__(
        self,
        boxes: str | None = None,
        openpose: str | None = None,
        left: bool = False,
        box_scale: float = 2.2,
        min_confidence: float = 0.1,
    ):
        if boxes and openpose:
            raise ValueError("give either boxes or OpenPose detections, not both")
        if not box_scale > 0:
            raise ValueError(f"the box scale (crop side / box side) must be positive, got {box_scale}")
        self.boxes = load_boxes(boxes) if boxes else None
        self.openpose = Path(openpose) if openpose else None
        if self.openpose is not None and not self.openpose.is_dir():
            raise FileNotFoundError(f"{openpose}: OpenPose folder not found")
        self.left, self.box_scale, self.min_confidence = left, box_scale, min_confidence

    @property
    def gives_keypoints(self) -> bool:
        return self.openpose is not None

    def hands(self, image_path: Path, width: int, height: int) -> list[Hand]:
        if self.boxes is not None:
            entries = self.boxes.get(image_path.name, [])
            return [Hand(square_box(*box, mirrored=left, scale=self.box_scale)) for box, left in entries]
        if self.openpose is not None:
            path = self.openpose / f"{image_path.stem}_keypoints.json"
            if not path.exists():
                return []
            found = openpose_hands(path)
            return [Hand(box, kp) for kp, left in found if (box := self._detection_box(kp, left, width, height))]
        return [Hand(whole_image_box(width, height, self.left))]

    def _detection_box(self, kp: np.ndarray, left: bool, width: int, height: int) -> CropBox | None:
        """The training crop around a detection; None when fewer than two confident keypoints lie in the image."""
        visible = kp.copy()
        visible[:, 2] = kp[:, 2] > self.min_confidence
        try:
            return crop_box(visible, width, height, mirrored=left)
        except ValueError:
            return None


def _heatmaps(hand: Hand, size: int, sigma: float) -> np.ndarray:
    """The detector's keypoints as heatmaps of the (mirrored, for a left hand) crop, peaks at their confidence."""
    return gaussian_heatmaps(to_crop(hand.keypoints, hand.box), size, sigma)


def _mano_pose(model, params: np.ndarray) -> dict:
    layout = model.layout
    mano = model.hand.mano
    pca = params[layout.pose]
    components = mano.hand_components.detach().cpu().numpy().astype(np.float64)
    mean = mano.hand_mean.detach().cpu().numpy().astype(np.float64)
    return {
        "global_orient": params[layout.rotation].tolist(),
        "hand_pose_pca": pca.tolist(),
        "hand_pose": (pca @ components + mean).reshape(15, 3).tolist(),
        "betas": params[layout.betas].tolist(),
    }


def _unmirrored(points: np.ndarray, mirrored: bool) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return mirror_keypoints_3d(points) if mirrored else points


def hand_record(model, pred: dict, box: CropBox, image: str, index: int) -> dict:
    """The JSON record of one predicted hand.

    ``mano``: the right-hand model's parameters as predicted in the (for a left hand: mirrored) crop:
    ``global_orient`` (3) axis-angle about the wrist, ``hand_pose_pca`` (num_pca) coefficients, ``hand_pose``
    (15 x 3) the finger joints' axis-angles they give (MANO's PCA components times the coefficients plus its
    ``hands_mean``, i.e. absolute rotations as with smplx's ``flat_hand_mean=True``), ``betas`` (10).
    ``camera``: weak perspective [s, tx, ty] in the crop (``crop``) and in the original image (``image``, applying
    to ``keypoints_3d`` and the mesh as written, mirrored back). ``keypoints_2d``: original-image pixels.
    ``keypoints_3d``: metres, OpenCV camera axes, about the hand model's origin (weak perspective has no depth).
    """
    params = pred["params"].astype(np.float64)
    return {
        "image": image,
        "hand_index": index,
        "hand": "left" if box.mirrored else "right",
        "crop_box": {"x0": box.x0, "y0": box.y0, "side": box.side, "mirrored": box.mirrored},
        "mano": _mano_pose(model, params),
        "camera": {"crop": params[:3].tolist(), "image": camera_from_crop(params[:3], box).tolist()},
        "keypoints_2d": from_crop(pred["keypoints_2d"], box).astype(np.float64).tolist(),
        "keypoints_3d": _unmirrored(pred["keypoints_3d"], box.mirrored).tolist(),
        "keypoint_order": "openpose21",
        "units": {"keypoints_2d": "px", "keypoints_3d": "m", "camera": "px per m, px"},
    }


@dataclass
class _Image:
    path: Path
    pixels: np.ndarray
    hands: list[Hand]


class Predictor:
    """A model and how to find and write hands; :meth:`run` does a list of images in batches."""

    def __init__(self, model, locator: HandLocator, out_dir: str | Path, batch_size: int = 16):
        if model.uses_heatmaps and not locator.gives_keypoints:
            raise ValueError("this model takes 2D keypoint heatmaps (rgb+2d): give OpenPose detections (--openpose)")
        if batch_size < 1:
            raise ValueError(f"the batch size must be at least 1, got {batch_size}")
        self.model, self.locator, self.batch_size = model, locator, batch_size
        self.out_dir = Path(out_dir)
        self.issues: Counter = Counter()
        self.hands = 0

    def _load(self, paths: list[Path]) -> Iterator[_Image]:
        for path in paths:
            pixels = read_rgb(path)
            if pixels is None:
                log.warning("%s: not a readable image, skipped", path)
                self.issues["unreadable image"] += 1
                continue
            try:
                located = self.locator.hands(path, pixels.shape[1], pixels.shape[0])
            except ValueError as error:  # a damaged detections file: this image only
                log.warning("%s; %s skipped", error, path)
                self.issues["unreadable detections"] += 1
                continue
            hands = [hand for hand in located if hand.box.meets(pixels.shape[1], pixels.shape[0])]
            if len(hands) < len(located):
                log.warning("%s: %d box(es) outside the image, skipped", path, len(located) - len(hands))
                self.issues["box outside the image"] += len(located) - len(hands)
            elif not hands:
                self.issues["no hand found"] += 1
            yield _Image(path, pixels, hands)

    def _chunks(self, paths: list[Path]) -> Iterator[list[_Image]]:
        chunk, count = [], 0
        for image in self._load(paths):
            chunk.append(image)
            count += len(image.hands)
            if count >= self.batch_size:
                yield chunk
                chunk, count = [], 0
        if chunk:
            yield chunk

    def _predict(self, images: list[_Image]) -> list[dict]:
        hands = [(image, hand) for image in images for hand in image.hands]
        if not hands:
            return []
        crops = np.stack([crop_image(image.pixels, hand.box) for image, hand in hands])
        maps = None
        if self.model.uses_heatmaps:
            sigma = float(self.model.meta.get("heatmap_sigma", HEATMAP_SIGMA))  # as the model was trained
            maps = np.stack([_heatmaps(hand, HEATMAP_SIZE, sigma) for _, hand in hands])
        pred = predict_crops(self.model, crops, maps, batch_size=self.batch_size)
        return [{key: value[i] for key, value in pred.items()} for i in range(len(hands))]

    def run(self, paths: list[Path]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        faces = self.model.hand.faces
        with MeshOverlay(faces) as overlay, tqdm(total=len(paths), desc="predict", unit="image") as bar:
            for chunk in self._chunks(paths):
                preds = iter(self._predict(chunk))
                for image in chunk:
                    self._write(image, [next(preds) for _ in image.hands], overlay, faces)
                    bar.update()

    def _write(self, image: _Image, preds: list[dict], overlay: MeshOverlay, faces: np.ndarray) -> None:
        if not image.hands:  # skipped and counted: no overlay of a picture with nothing on it
            return
        meshes, mirrored, keypoints = [], [], []
        for k, (hand, pred) in enumerate(zip(image.hands, preds, strict=True)):
            record = hand_record(self.model, pred, hand.box, str(image.path), k)
            stem = self.out_dir / f"{image.path.stem}_{k}"
            vertices = _unmirrored(pred["vertices"], hand.box.mirrored)
            write_obj(f"{stem}.obj", vertices, faces[:, ::-1] if hand.box.mirrored else faces)
            atomic_write_json(f"{stem}.json", record, indent=1)
            meshes.append(screen_vertices(vertices, record["camera"]["image"]))
            mirrored.append(hand.box.mirrored)
            keypoints.append(np.asarray(record["keypoints_2d"]))
            self.hands += 1
        picture = overlay.draw(image.pixels, meshes, mirrored)
        for kp in keypoints:
            picture = draw_skeleton(picture, kp, thickness=max(1, round(max(picture.shape[:2]) / 320)))
        write_rgb(self.out_dir / f"{image.path.stem}_overlay.png", picture)


def predict(
    inputs: list[str],
    model_path: str,
    out_dir: str,
    boxes: str | None = None,
    openpose: str | None = None,
    left: bool = False,
    box_scale: float = 2.2,
    batch_size: int = 16,
    device: str = "auto",
    hand_model: str | None = None,
) -> Predictor:
    """Predict every hand of ``inputs`` (images or folders) into ``out_dir``; returns the finished predictor (its
    ``hands`` count and ``issues``)."""
    paths = find_images(inputs)
    model = open_model(model_path, hand_model, device)
    predictor = Predictor(model, HandLocator(boxes, openpose, left, box_scale), out_dir, batch_size)
    predictor.run(paths)
    return predictor
