"""STB, the Stereo Hand Pose Tracking Benchmark: reader for its published layout, and a stand-in writer.

Layout (guides/datasets.md section 2; DESIGN.md section 5)::

    <root>/labels/B{1..6}{Counting,Random}_{BB,SK}.mat    variable handPara, 3 x 21 x 1500 float64, mm
    <root>/images/<seq>/SK_color_{i}.png SK_depth_{i}.png BB_left_{i}.png BB_right_{i}.png    (640 x 480)

`handPara.transpose(2, 1, 0)` is (frames, 21, 3); frame i is image index i. The labels are in STB's joint order
(0 palm centre; 1-4 little MCP..tip; 5-8 ring; 9-12 middle; 13-16 index; 17-20 thumb), in millimetres, in the frame of
the .mat's camera: `_BB.mat` in the Bumblebee2 LEFT camera's frame, `_SK.mat` in the RealSense F200 DEPTH camera's
frame (mapped to the colour camera by `X_color = R^T (X - T)`). Only left hands.

The reader projects each label into each requested camera (`stb_mm2px`), gathers it into the OpenPose order and
replaces the palm centre by the wrist estimate `wrist = ringMCP + factor * (palm - ringMCP)` in 3D, then projects that
3D wrist for 2D. The stand-in (`write_demo`) writes photographs of the procedural hand in this exact layout, with
labels converted to STB's conventions; its images are synthetic, not STB.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hand3d.camera import project_perspective, rodrigues
from hand3d.datasets.base import DatasetLayoutError, RawSample, ReadResult, finite_as_float32, require
from hand3d.keypoints import STB_TO_OPENPOSE, stb_palm_to_wrist, to_openpose

if TYPE_CHECKING:
    from hand3d.datasets.standin import HandPhotographer, Shot

__all__ = [
    "BB_BASELINE_MM",
    "CAMERAS",
    "CAMERA_SPECS",
    "IMAGE_SIZE",
    "K_BB",
    "K_SK_COLOR",
    "SEQUENCES",
    "SK_R",
    "SK_T_MM",
    "SPLITS",
    "StbCamera",
    "color_to_sk_depth",
    "read",
    "sk_depth_to_color",
    "stb_mm2px",
    "write_demo",
]

DATASET = "STB"


def _frozen(values) -> np.ndarray:
    """A read-only float64 array."""
    arr = np.array(values, dtype=np.float64)
    arr.flags.writeable = False
    return arr


# --------------------------------------------------------------------------------------------------------- cameras
# Calibration of the STB rigs, as given with the dataset and collected in guides/datasets.md section 2 (Zhang et al.,
# "3D Hand Pose Tracking and Estimation Using Stereo Matching", arXiv 1610.07214, 2016). Intrinsics in pixels,
# translations in millimetres.

#: Image size (width, height) of every STB camera.
IMAGE_SIZE = (640, 480)
#: RealSense F200 colour camera intrinsics.
K_SK_COLOR = _frozen([[607.92271, 0.0, 314.78337], [0.0, 607.88192, 236.42484], [0.0, 0.0, 1.0]])
#: Depth -> colour extrinsics of the F200: X_depth = R X_color + T, i.e. X_color = R^T (X_depth - T).
SK_RVEC = _frozen([0.00531, -0.01196, 0.00301])
SK_R = _frozen(rodrigues(SK_RVEC))
SK_T_MM = _frozen([-24.0381, -0.4563, -1.2326])
#: Bumblebee2 stereo pair (both cameras): fx = fy, principal point; the right camera sits at +baseline along x.
K_BB = _frozen([[822.79041, 0.0, 318.47345], [0.0, 822.79041, 250.31296], [0.0, 0.0, 1.0]])
BB_BASELINE_MM = 120.054


def sk_depth_to_color(points_mm: np.ndarray) -> np.ndarray:
    """F200 depth-camera frame -> colour-camera frame, millimetres: ``X_color = R^T (X - T)``; (..., 3)."""
    return (np.asarray(points_mm, dtype=np.float64) - SK_T_MM) @ SK_R  # row vectors: (R^T x)^T = x^T R


def color_to_sk_depth(points_mm: np.ndarray) -> np.ndarray:
    """F200 colour-camera frame -> depth-camera frame, millimetres: ``X_depth = R X + T`` (inverse of the above)."""
    return np.asarray(points_mm, dtype=np.float64) @ SK_R.T + SK_T_MM


def _bb_left(points_mm: np.ndarray) -> np.ndarray:
    """The BB labels are already in the left camera's frame."""
    return np.asarray(points_mm, dtype=np.float64)


def _bb_right(points_mm: np.ndarray) -> np.ndarray:
    """BB left-camera frame -> right-camera frame: ``X - [baseline, 0, 0]``."""
    return np.asarray(points_mm, dtype=np.float64) - np.array([BB_BASELINE_MM, 0.0, 0.0])


@dataclass(frozen=True)
class StbCamera:
    """One STB camera: its intrinsics, its image files, and how its rig's labels map into its frame."""

    name: str
    K: np.ndarray  # (3, 3) pixels
    labels: str  # which .mat holds its labels: "SK" or "BB" (labels/<seq>_<labels>.mat)
    image_pattern: str  # file name in images/<seq>/, formatted with i = frame index
    to_camera: Callable[[np.ndarray], np.ndarray]  # (..., 3) mm in the .mat's frame -> mm in this camera's frame


CAMERAS: tuple[str, ...] = ("SK", "BB_left", "BB_right")
CAMERA_SPECS: dict[str, StbCamera] = {
    "SK": StbCamera("SK", K_SK_COLOR, "SK", "SK_color_{i}.png", sk_depth_to_color),
    "BB_left": StbCamera("BB_left", K_BB, "BB", "BB_left_{i}.png", _bb_left),
    "BB_right": StbCamera("BB_right", K_BB, "BB", "BB_right_{i}.png", _bb_right),
}
SK_DEPTH_PATTERN = "SK_depth_{i}.png"

# ---------------------------------------------------------------------------------------------------------- splits

SEQUENCES: tuple[str, ...] = tuple(f"B{k}{kind}" for k in range(1, 7) for kind in ("Counting", "Random"))
SPLITS: dict[str, list[str]] = {
    "train": [f"B{k}{kind}" for k in range(2, 7) for kind in ("Counting", "Random")],
    "test": ["B1Counting", "B1Random"],
}


# ------------------------------------------------------------------------------------------------------ projection


def _camera(camera: str | StbCamera) -> StbCamera:
    """The StbCamera for a name of CAMERAS (or the camera itself)."""
    if isinstance(camera, StbCamera):
        return camera
    if camera not in CAMERA_SPECS:
        raise ValueError(f"unknown STB camera {camera!r}; expected one of {CAMERAS}")
    return CAMERA_SPECS[camera]


def stb_mm2px(hand_para_mm: np.ndarray, camera: str | StbCamera) -> tuple[np.ndarray, np.ndarray]:
    """STB labels (N, 21, 3) in mm in the .mat's own frame -> (2D (N, 21, 2) pixels, 3D (N, 21, 3) metres).

    Both in `camera`'s frame (the 3D of "BB_right" is in the right camera's frame); still in STB's joint order.
    """
    spec = _camera(camera)
    points_mm = spec.to_camera(hand_para_mm)
    return project_perspective(points_mm, spec.K), points_mm / 1000.0


# ------------------------------------------------------------------------------------------------------------ read


def _load_hand_para(path: Path) -> np.ndarray:
    """`handPara` of one .mat as (frames, 21, 3) float64 mm; DatasetLayoutError naming the file otherwise."""
    import scipy.io
    from scipy.io.matlab import MatReadError

    try:
        mat = scipy.io.loadmat(path, variable_names=["handPara"])
    except (OSError, ValueError, TypeError, NotImplementedError, MatReadError) as err:
        raise DatasetLayoutError(f"{path}: not a readable STB label file ({err})") from err
    if "handPara" not in mat:
        raise DatasetLayoutError(f"{path}: has no variable 'handPara' (STB labels are handPara, 3 x 21 x frames)")
    para = np.asarray(mat["handPara"])
    if para.ndim == 2:  # MATLAB drops a trailing singleton dimension: one frame
        para = para[..., None]
    if para.ndim != 3 or para.shape[:2] != (3, 21) or not np.issubdtype(para.dtype, np.number):
        raise DatasetLayoutError(f"{path}: handPara has shape {para.shape} ({para.dtype}); expected 3 x 21 x frames")
    return para.astype(np.float64).transpose(2, 1, 0)


def _gather_with_wrist(kp2d: np.ndarray, kp3d: np.ndarray, K: np.ndarray, factor: float):
    """STB-order (N, 21, 2|3) -> OpenPose order with the palm replaced by the wrist (3D rule, 2D its projection)."""
    kp3d = stb_palm_to_wrist(to_openpose(kp3d, "stb"), factor)
    kp2d = to_openpose(kp2d, "stb")  # fancy indexing: a copy
    kp2d[:, 0] = project_perspective(kp3d[:, 0], K)
    return kp2d, kp3d


def _usable(kp2d: np.ndarray, kp3d: np.ndarray) -> np.ndarray:
    """(N,) True where a frame's labels are finite (also as float32) and in front of the camera."""
    finite = finite_as_float32(kp2d).all(axis=(1, 2)) & finite_as_float32(kp3d).all(axis=(1, 2))
    with np.errstate(invalid="ignore"):
        return finite & (kp3d[..., 2] > 0).all(axis=1)


def _label_file(root: Path, seq: str, labels: str) -> Path:
    return root / "labels" / f"{seq}_{labels}.mat"


def _read_sequence(root: Path, seq: str, spec: StbCamera, para: np.ndarray, factor: float, result: ReadResult):
    """Append one sequence's samples seen by one camera to `result`, skipping and counting bad frames."""
    image_dir = root / "images" / seq
    present = set(os.listdir(image_dir)) if image_dir.is_dir() else set()
    kp2d, kp3d = _gather_with_wrist(*stb_mm2px(para, spec), spec.K, factor)
    usable = _usable(kp2d, kp3d)
    for i in range(len(para)):
        name, file = f"{seq}/{spec.name}_{i}", spec.image_pattern.format(i=i)
        if file not in present:
            result.skip("missing_image", image_dir / file, "no image file")
        elif not usable[i]:
            why = "a label non-finite (also as float32) or behind the camera"
            result.skip("malformed_annotation", name, f"{_label_file(root, seq, spec.labels)} frame {i}: {why}")
        else:
            keypoints_2d = np.column_stack([kp2d[i], np.ones(21)])
            result.samples.append(RawSample(name, str(image_dir / file), keypoints_2d, kp3d[i], is_left=True))


def read(
    root: str | Path, split: str, cameras: tuple[str, ...] | list[str] = ("SK",), palm_to_wrist: float = 2.0
) -> ReadResult:
    """The hands of one split of STB, seen by each of `cameras` (names of CAMERAS), in the OpenPose order.

    Keypoint 0 is the wrist estimated from STB's palm centre: ``ringMCP + palm_to_wrist * (palm - ringMCP)``.
    Raises DatasetLayoutError when `root` lacks labels/ or images/, or a label file of the split is missing or
    unreadable. Skips and counts: "missing_image", "malformed_annotation" (labels non-finite also as float32, a point
    at z <= 0).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown STB split {split!r}; expected one of {sorted(SPLITS)}")
    specs = [_camera(c) for c in cameras]
    root = require(root, "labels", "images", dataset=DATASET)
    label_files = {(seq, spec.labels): _label_file(root, seq, spec.labels) for seq in SPLITS[split] for spec in specs}
    missing = [str(path) for path in label_files.values() if not path.is_file()]
    if missing:
        raise DatasetLayoutError(f"{root}: not the {DATASET} layout: missing label file(s) {', '.join(missing)}")
    paras = {key: _load_hand_para(path) for key, path in label_files.items()}
    result = ReadResult(samples=[])
    for seq in SPLITS[split]:
        for spec in specs:
            _read_sequence(root, seq, spec, paras[(seq, spec.labels)], palm_to_wrist, result)
    return result


# ------------------------------------------------------------------------------------------------------- stand-in


def _stb_labels_mm(keypoints_3d_openpose_m: np.ndarray) -> np.ndarray:
    """OpenPose-order 3D keypoints (21, 3) in metres -> STB order in mm, joint 0 = palm = (wrist + ringMCP) / 2.

    With that palm the factor-2 rule gives back the wrist: ringMCP + 2 (palm - ringMCP) = wrist.
    """
    openpose = np.asarray(keypoints_3d_openpose_m, dtype=np.float64)
    stb = openpose[STB_TO_OPENPOSE].copy()  # the gather is its own inverse
    stb[0] = (openpose[0] + openpose[13]) / 2
    return stb * 1000.0


def _hand_para(labels_mm: list[np.ndarray]) -> np.ndarray:
    """Per-frame (21, 3) labels -> handPara, 3 x 21 x frames float64."""
    return np.ascontiguousarray(np.stack(labels_mm).transpose(2, 1, 0), dtype=np.float64)


def _depth_png(shot: Shot, far_mm: int = 2000) -> np.ndarray:
    """A plausible SK depth image (H, W, 3) uint8 RGB, depth_mm = R + 256 G: the hand's depth on its mask.

    Depth of a mask pixel = Z of the nearest projected mesh vertex (front-most per pixel); `far_mm` elsewhere. It is
    registered to the colour image, a simplification (the real depth camera sits T mm away).
    """
    from scipy.ndimage import distance_transform_edt

    height, width = shot.mask.shape
    uv = np.rint(project_perspective(shot.vertices, shot.K)).astype(int)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    zbuf = np.full((height, width), np.inf)
    np.minimum.at(zbuf, (uv[inside, 1], uv[inside, 0]), shot.vertices[inside, 2] * 1000.0)
    depth = np.full((height, width), float(far_mm))
    if np.isfinite(zbuf).any() and shot.mask.any():
        rows, cols = distance_transform_edt(~np.isfinite(zbuf), return_distances=False, return_indices=True)
        nearest = zbuf[rows, cols]
        depth[shot.mask > 0] = nearest[shot.mask > 0]
    depth = np.clip(np.rint(depth), 0, 65535).astype(np.uint16)
    return np.stack([depth % 256, depth // 256, np.zeros_like(depth)], axis=-1).astype(np.uint8)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG (atomically)."""
    from hand3d.image_io import write_rgb

    write_rgb(path, rgb)


# A MAT 5 file opens with 116 bytes of free text; scipy writes the time there, so each rebuild would differ.
MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, STB stand-in written by hand3d"


def _write_mat(path: Path, labels_mm: list[np.ndarray]) -> None:
    """Write labels as handPara (3 x 21 x frames float64) in a .mat file (atomically, the same labels to the same
    bytes)."""
    import io

    import scipy.io

    from hand3d.atomic import atomic_write

    stream = io.BytesIO()
    scipy.io.savemat(stream, {"handPara": _hand_para(labels_mm)})
    data = MAT_HEADER_TEXT.ljust(116) + stream.getvalue()[116:]
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_demo(root: str | Path, photographer: HandPhotographer, seed: int, frames: int = 3) -> dict[str, list[Shot]]:
    """Write a stand-in in STB's published layout: all 12 sequences x `frames` frames of one left hand each.

    Per frame: one shot with the SK colour intrinsics (SK_color_i.png, SK_depth_i.png, labels in the depth frame) and
    another with the BB intrinsics and the right camera at +baseline (BB_left_i.png, BB_right_i.png, labels in the
    left frame). Returns the shots, keyed by label-file stem ("B1Counting_SK", "B1Counting_BB", ...), frame order.
    Deterministic from `seed`.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    width, height = IMAGE_SIZE
    bb_right = [(np.array(K_BB), np.array([BB_BASELINE_MM / 1000.0, 0.0, 0.0]))]
    shots: dict[str, list[Shot]] = {}
    for seq in SEQUENCES:
        image_dir = root / "images" / seq
        sk, bb = shots.setdefault(f"{seq}_SK", []), shots.setdefault(f"{seq}_BB", [])
        for i in range(frames):
            sk.append(photographer.shoot(rng, width, height, K=np.array(K_SK_COLOR), left=True))
            _write_png(image_dir / CAMERA_SPECS["SK"].image_pattern.format(i=i), sk[-1].image)
            _write_png(image_dir / SK_DEPTH_PATTERN.format(i=i), _depth_png(sk[-1]))
            bb.append(photographer.shoot(rng, width, height, K=np.array(K_BB), left=True, extra_cameras=bb_right))
            _write_png(image_dir / CAMERA_SPECS["BB_left"].image_pattern.format(i=i), bb[-1].image)
            _write_png(image_dir / CAMERA_SPECS["BB_right"].image_pattern.format(i=i), bb[-1].extra_images[0])
        _write_mat(root / "labels" / f"{seq}_SK.mat", [color_to_sk_depth(_stb_labels_mm(s.keypoints_3d)) for s in sk])
        _write_mat(root / "labels" / f"{seq}_BB.mat", [_stb_labels_mm(s.keypoints_3d) for s in bb])
    return shots
