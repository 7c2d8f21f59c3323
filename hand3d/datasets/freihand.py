"""FreiHAND v2 (Zimmermann et al., "FreiHAND: A Dataset for Markerless Capture of Hand Pose and Shape from Single
RGB Images", ICCV 2019) in its published layout, and a stand-in written in that layout.

Layout (as published, and as read by the dataset's own loader, lmb-freiburg/freihand `utils/fh_utils.py`)::

    FreiHAND_pub_v2/training/rgb/%08d.jpg        224x224; 4 versions of each sample: id + N*k, k = 0 gs (green
                                                 screen), 1 hom (homogenized), 2 sample, 3 auto (colourisations)
    FreiHAND_pub_v2/training/mask/%08d.jpg       ids 0..N-1: one hand mask shared by the 4 versions
    FreiHAND_pub_v2/evaluation/rgb/%08d.jpg
    FreiHAND_pub_v2/training_{K,mano,xyz,verts,scale}.json, evaluation_{K,scale}.json
    FreiHAND_pub_v2_eval/evaluation_{xyz,verts,mano,K,scale}.json   (the evaluation labels, released later)

N is the number of annotation entries: 32560 for the real training set, the `fh_utils.db_size("training")`
that the version offsets use; the annotation index of image id is id % N. `*_K.json` is N x 3 x 3, `*_xyz.json`
N x 21 x 3 in metres in the camera frame (OpenCV axes) with uv = (K xyz)[:2] / z, `*_verts.json` N x 778 x 3,
`*_mano.json` N x 1 x 61 ([0:48] axis-angle pose relative to MANO's hands_mean: global 3 + 15 x 3, [48:58] betas,
[58:60] uv_root, [60] scale), `*_scale.json` N values ||xyz[9] - xyz[10]|| (the middle finger's MCP-PIP bone).
Keypoints are already in the OpenPose-21 order; all hands are right hands.
"""

from __future__ import annotations

import logging
import numbers
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from hand3d.atomic import atomic_write_json
from hand3d.datasets.base import DatasetLayoutError, RawSample, ReadResult, finite_as_float32, require
from hand3d.datasets.mpii_nzsl import write_jpeg  # the stand-ins' atomic JPEG writer
from hand3d.json_input import read_json
from hand3d.keypoints import to_openpose

log = logging.getLogger(__name__)

DATASET = "FreiHAND v2"
VERSIONS = ("gs", "hom", "sample", "auto")
NUM_TRAIN_IDS = 32560  # unique training samples of the real dataset (each stored in the 4 VERSIONS)
SPLITS = {"train": "training", "test": "evaluation"}
MAIN_FOLDER = "FreiHAND_pub_v2"
EVAL_FOLDER = "FreiHAND_pub_v2_eval"
IMAGE_SIZE = 224

# ------------------------------------------------------------------------------------------------------- reading


def read_annotation_file(path: Path) -> list:
    """One annotation file as parsed JSON (a list with one entry per sample); DatasetLayoutError if it is not."""
    return read_json(path, f"{DATASET} annotation file", list, "a list per sample was expected", DatasetLayoutError)


def _load_annotations(folder: Path, prefix: str) -> tuple[list, list]:
    """`<prefix>_K.json` and `<prefix>_xyz.json` from folder, each loaded once; their lengths must agree."""
    k_name, xyz_name = f"{prefix}_K.json", f"{prefix}_xyz.json"
    Ks, xyzs = read_annotation_file(folder / k_name), read_annotation_file(folder / xyz_name)
    if len(Ks) != len(xyzs):
        raise DatasetLayoutError(
            f"{folder}: {k_name} has {len(Ks)} entries but {xyz_name} has {len(xyzs)}; they must agree one to one"
        )
    return Ks, xyzs


def _parse_entry(K: object, xyz: object) -> tuple[np.ndarray, np.ndarray] | str:
    """(uv 21x2 pixels, xyz 21x3 metres) of one entry in the OpenPose order, or why the entry is unusable."""
    try:
        K, xyz = np.asarray(K, dtype=np.float64), np.asarray(xyz, dtype=np.float64)
    except (TypeError, ValueError) as e:
        return f"not numeric: {e}"
    if K.shape != (3, 3) or xyz.shape != (21, 3):
        return f"K shape {K.shape}, xyz shape {xyz.shape}; expected (3, 3) and (21, 3)"
    if not (np.isfinite(K).all() and np.isfinite(xyz).all()):
        return "non-finite values"
    if not (xyz[:, 2] > 0).all():
        return "keypoints at or behind the camera (z <= 0)"
    xyz = to_openpose(xyz, "freihand")
    uv = project(xyz, K)
    if not (finite_as_float32(xyz).all() and finite_as_float32(uv).all()):
        return "keypoints beyond the float32 range they are kept in"
    return uv, xyz


def project(xyz: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(21, 3) camera-frame points -> (21, 2) pixels: uv = (K xyz)[:2] / z, as fh_utils.projectPoints."""
    uvw = xyz @ K.T
    return uvw[:, :2] / uvw[:, 2:]


def _sample(name: str, image: Path, uv: np.ndarray, xyz: np.ndarray, mask: Path | None) -> RawSample:
    """One right hand; visibility 1 everywhere (the crop stage marks points outside the image)."""
    return RawSample(
        name=name,
        image=str(image),
        keypoints_2d=np.column_stack([uv, np.ones(21)]),
        keypoints_3d=xyz,
        is_left=False,
        mask=None if mask is None else str(mask),
    )


def _version_index(version: int | str) -> int | None:
    """0 gs, 1 hom, 2 sample, 3 auto, from a number or a name; None for anything else."""
    if isinstance(version, str):
        return VERSIONS.index(version) if version in VERSIONS else None
    if isinstance(version, numbers.Integral) and not isinstance(version, bool) and 0 <= version < len(VERSIONS):
        return int(version)
    return None


def _version_indices(versions: Iterable[int | str]) -> list[int]:
    """Version numbers from numbers or names; ValueError on an unknown one, a repeat, or none."""
    versions = tuple(versions)
    out = [_version_index(v) for v in versions]
    if not out or None in out or len(set(out)) != len(out):
        raise ValueError(f"versions must be distinct numbers 0-3 or names from {VERSIONS}, got {versions}")
    return out


def _mask(path: Path) -> Path | None:
    return path if path.is_file() else None


def _parse_annotations(folder: Path, prefix: str) -> list[tuple[np.ndarray, np.ndarray] | str]:
    """Each entry of `<prefix>_{K,xyz}.json` in folder: its (uv, xyz), or why it is unusable, naming the files."""
    Ks, xyzs = _load_annotations(folder, prefix)
    entries = [_parse_entry(K, xyz) for K, xyz in zip(Ks, xyzs, strict=True)]
    files = f"{folder / prefix}_{{K,xyz}}.json"
    return [f"{files} entry {i}: {e}" if isinstance(e, str) else e for i, e in enumerate(entries)]


def _read_split(root: Path, folder: str, parsed: list, versions: Sequence[int], with_masks: bool) -> ReadResult:
    """Samples of one split: image id = index + len(annotations) * version (the published offset rule)."""
    result = ReadResult(samples=[])
    offset = len(parsed)  # 32560 for the real training set; the stand-in writes its own, smaller count
    masks = [_mask(root / folder / "mask" / f"{i:08d}.jpg") if with_masks else None for i in range(offset)]
    for version in versions:
        for index, entry in enumerate(parsed):
            image_id = index + offset * version
            name = f"{folder}/{image_id:08d}"
            if isinstance(entry, str):
                result.skip("malformed_annotation", name, entry)
                continue
            image = root / folder / "rgb" / f"{image_id:08d}.jpg"
            if not image.is_file():
                result.skip("missing_image", image, "no such file")
                continue
            result.samples.append(_sample(name, image, *entry, masks[index]))
    return result


def eval_folder(root: str | Path, eval_root: str | Path | None = None) -> Path:
    """The evaluation annotations' folder: `eval_root` when given, else the sibling `<root>_eval`, i.e.
    FreiHAND_pub_v2_eval beside FreiHAND_pub_v2."""
    if eval_root is not None:
        return Path(eval_root)
    root = Path(os.path.abspath(root))  # not resolve(): beside a symlinked root, not beside its target
    return root.parent / f"{root.name}_eval"


def _require_eval(root: Path, eval_root: str | Path | None) -> Path:
    """The folder with evaluation_{xyz,K}.json; DatasetLayoutError explaining where they come from if absent."""
    eval_root = eval_folder(root, eval_root)
    missing = [n for n in ("evaluation_xyz.json", "evaluation_K.json") if not (eval_root / n).is_file()]
    if missing:
        raise DatasetLayoutError(
            f"{eval_root}: lacks {', '.join(missing)}. The {DATASET} test split needs the evaluation annotations, "
            f"published separately from {MAIN_FOLDER} as {EVAL_FOLDER} (evaluation_{{xyz,verts,mano,K,scale}}.json); "
            f"place that folder beside {root} or pass its path as eval_root"
        )
    return eval_root


def read(
    root: str | Path, split: str, versions: Iterable[int | str] = (0,), eval_root: str | Path | None = None
) -> ReadResult:
    """Read one split of FreiHAND v2 from `root`, the `FreiHAND_pub_v2` folder.

    train: annotations `training_{K,xyz}.json`, images `training/rgb/%08d.jpg` with id = index + N * k for each k in
    `versions` (numbers 0-3 or names from VERSIONS; N = the number of entries, 32560 for the real data), masks
    `training/mask/%08d.jpg` (index) where present. test: images `evaluation/rgb/%08d.jpg` (one version only;
    `versions` is ignored), annotations `evaluation_{xyz,K}.json` from `eval_root` (default: `<root>_eval`).
    Skipped and counted per sample: "malformed_annotation" (wrong shape, non-finite also as float32, z <= 0; counted
    once per requested version), "missing_image". Names are "<training|evaluation>/<id:08d>".
    """
    if split not in SPLITS:
        raise ValueError(f"{DATASET} split must be one of {sorted(SPLITS)}, got {split!r}")
    folder = SPLITS[split]
    if split == "train":
        root = require(root, "training_K.json", "training_xyz.json", "training/rgb", dataset=DATASET)
        parsed = _parse_annotations(root, "training")
        result = _read_split(root, folder, parsed, _version_indices(versions), with_masks=True)
    else:
        root = require(root, "evaluation/rgb", dataset=DATASET)
        parsed = _parse_annotations(_require_eval(root, eval_root), "evaluation")
        result = _read_split(root, folder, parsed, [0], with_masks=False)
    log.info("%s %s: %d samples, skipped %s", DATASET, split, len(result.samples), dict(result.issues))
    return result


# ------------------------------------------------------------------------------------------------------ stand-in


def demo_intrinsics(rng: np.random.Generator) -> np.ndarray:
    """A FreiHAND-like camera for 224x224 images: f in [480, 600] px, principal point within 4 px of 112."""
    f = rng.uniform(480.0, 600.0)
    cx, cy = IMAGE_SIZE / 2 + rng.uniform(-4.0, 4.0, size=2)
    return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])


def _demo_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, list(SPLITS).index(split), index, stream])


def demo_shot(photographer, seed: int, split: str, index: int):
    """The stand-in's sample `index` of `split` (a `Shot`): a right hand at 224x224, FreiHAND-like camera.

    Deterministic from (seed, split, index), so tests can shoot it again and compare with what `read` returns.
    """
    rng = _demo_rng(seed, split, index, 0)
    K = demo_intrinsics(rng)
    return photographer.shoot(rng, IMAGE_SIZE, IMAGE_SIZE, K=K, hand_size=(0.45, 0.75))


def _other_versions(photographer, shot, rng: np.random.Generator) -> list[np.ndarray]:
    """Stand-ins for hom, sample and auto: the hand over another background, colour-jittered, or both."""
    import cv2

    hand = shot.mask[..., None].astype(bool)

    def background() -> np.ndarray:
        photo = photographer.backgrounds[rng.integers(len(photographer.backgrounds))]
        return cv2.resize(photo, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)

    def jitter(image: np.ndarray) -> np.ndarray:
        gain = rng.uniform(0.7, 1.3, size=3)
        return np.clip(np.rint(image.astype(np.float32) * gain), 0, 255).astype(np.uint8)

    hom = np.where(hand, shot.image, background())
    sample = np.where(hand, jitter(shot.image), shot.image)
    auto = np.where(hand, jitter(shot.image), jitter(background()))
    return [hom, sample, auto]


def _annotation(shot) -> dict[str, list]:
    """One sample's entries of the *_{K,xyz,verts,mano,scale}.json files.

    verts are the stand-in hand model's vertices (the procedural hand's V, not MANO's 778). The mano entry's pose
    and betas are written as zeros (the Shot does not carry its hand parameters); uv_root is the projected root
    keypoint and its last value the scale, ||xyz[9] - xyz[10]||, as in scale.json.
    """
    xyz = np.asarray(shot.keypoints_3d, dtype=np.float64)
    scale = float(np.linalg.norm(xyz[9] - xyz[10]))
    uv_root = project(xyz, shot.K)[0]
    mano = [[0.0] * 58 + [float(uv_root[0]), float(uv_root[1]), scale]]
    return {"K": shot.K.tolist(), "xyz": xyz.tolist(), "verts": shot.vertices.tolist(), "mano": mano, "scale": scale}


def _shoot_split(photographer, seed: int, main: Path, split: str, count: int) -> dict[str, list]:
    """Shoot `count` hands of one split, write their images (and masks), return the annotation lists."""
    folder = main / SPLITS[split]
    lists: dict[str, list] = {key: [] for key in ("K", "xyz", "verts", "mano", "scale")}
    for index in range(count):
        shot = demo_shot(photographer, seed, split, index)
        variations = _other_versions(photographer, shot, _demo_rng(seed, split, index, 1)) if split == "train" else []
        images = [shot.image, *variations]
        for version, image in enumerate(images):
            write_jpeg(folder / "rgb" / f"{index + count * version:08d}.jpg", image)
        if split == "train":
            write_jpeg(folder / "mask" / f"{index:08d}.jpg", shot.mask * np.uint8(255))
        for key, value in _annotation(shot).items():
            lists[key].append(value)
    return lists


def write_demo(root: str | Path, photographer, seed: int, train: int = 8, test: int = 4) -> Path:
    """Write a FreiHAND v2 stand-in under `root` (`FreiHAND_pub_v2/` and `FreiHAND_pub_v2_eval/`); return the first.

    The published layout with photographs of the stand-in hand (`HandPhotographer`; synthetic images, not FreiHAND)
    and a small id space: the version offset is `train` in place of 32560 (image id = index + train * k), which is
    what `read` uses since it takes the offset from the number of annotation entries. Deterministic from `seed`.
    """
    main, evaluation = Path(root) / MAIN_FOLDER, Path(root) / EVAL_FOLDER
    for key, values in _shoot_split(photographer, seed, main, "train", train).items():
        atomic_write_json(main / f"training_{key}.json", values)
    labels = _shoot_split(photographer, seed, main, "test", test)
    for key in ("K", "scale"):
        atomic_write_json(main / f"evaluation_{key}.json", labels[key])
    for key, values in labels.items():
        atomic_write_json(evaluation / f"evaluation_{key}.json", values)
    log.info("%s stand-in in %s: %d training ids x %d versions, %d test", DATASET, main, train, len(VERSIONS), test)
    return main
