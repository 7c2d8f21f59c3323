"""The synthetic pretraining set: posed hands with exactly known parameters, rendered over random backgrounds.

Sampling follows the paper and the reference scripts (DESIGN section 4): shape `betas ~ U(-1, 1) * 0.03`, PCA pose
coefficients `~ U(-2, 2)`, a global rotation about a uniformly random axis by an angle in [-pi, pi], then a
weak-perspective camera that scales the hand so its 2D box is 1/2.0 to 1/2.4 of the crop and translates it at random
inside the crop. Ground truth per sample: image, mask, `params = [s, tx, ty, rot(3), pose(n), betas(10)]`,
`keypoints_2d` and `keypoints_3d` (metres, camera frame: the hand rotated about its wrist, OpenCV axes).

Every random draw comes from one generator seeded by (seed, split, shard): the same configuration renders the same
arrays.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hand3d.h5io import CROP_SIZE, PackedWriter

log = logging.getLogger(__name__)

NUM_BETAS = 10
SPLIT_CODES = {"train": 0, "test": 1}


@dataclass(frozen=True)
class SamplerConfig:
    """The ranges of the synthetic distribution (config `synthetic.sampler`)."""

    betas_range: float = 0.03
    pose_range: float = 2.0
    box_ratio: tuple[float, float] = (2.0, 2.4)  # crop side / hand box side
    ambient: tuple[float, float] = (0.3, 0.6)
    max_angle: float = np.pi  # global rotation angle ~ U(-max_angle, max_angle) about a random axis
    num_pca: int = 6


def shard_rng(seed: int, split: str, shard: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_CODES[split], shard])


def shard_sizes(total: int, num_shards: int) -> list[int]:
    """Split `total` samples over shards as evenly as possible (earlier shards take the remainder)."""
    return [total // num_shards + (i < total % num_shards) for i in range(num_shards)]


def sample_hand_parameters(rng: np.random.Generator, n: int, cfg: SamplerConfig) -> dict[str, np.ndarray]:
    """Rotation (n,3) axis-angle, PCA pose (n,num_pca), betas (n,10), as float32."""
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = rng.uniform(-cfg.max_angle, cfg.max_angle, size=(n, 1))
    return {
        "rotation": (axis * angle).astype(np.float32),
        "pose": rng.uniform(-cfg.pose_range, cfg.pose_range, size=(n, cfg.num_pca)).astype(np.float32),
        "betas": rng.uniform(-cfg.betas_range, cfg.betas_range, size=(n, NUM_BETAS)).astype(np.float32),
    }


def place_in_crop(rng: np.random.Generator, vertices: np.ndarray, cfg: SamplerConfig, crop: int = CROP_SIZE):
    """Weak-perspective cameras (n,3) = [s, tx, ty] putting each hand's 2D box of side crop/U(box_ratio) inside."""
    lo, hi = vertices[..., :2].min(axis=1), vertices[..., :2].max(axis=1)
    side = (hi - lo).max(axis=1)
    s = crop / rng.uniform(*cfg.box_ratio, size=len(vertices)) / side
    # u = s*X + t must stay within [0, crop - 1] for every vertex.
    t_lo, t_hi = -s[:, None] * lo, (crop - 1) - s[:, None] * hi
    t = t_lo + rng.uniform(size=t_lo.shape) * (t_hi - t_lo)
    return np.column_stack([s, t]).astype(np.float32)


def project(points: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Image coordinates (u, v, s*Z) of camera-frame points (n,P,3) under weak-perspective cameras (n,3)."""
    s, t = camera[:, None, :1], camera[:, None, 1:]
    return np.concatenate([s * points[..., :2] + t, s * points[..., 2:]], axis=-1)


def random_light(rng: np.random.Generator, cfg: SamplerConfig) -> tuple[np.ndarray, float]:
    """A light travelling into the scene from the camera's hemisphere, and an ambient level."""
    direction = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.5, 1.5)])
    return direction / np.linalg.norm(direction), float(rng.uniform(*cfg.ambient))


def composite(rendered: np.ndarray, coverage: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Premultiplied render over a background (both uint8 RGB)."""
    out = rendered.astype(np.float32) + background.astype(np.float32) * (1.0 - coverage[..., None])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass
class SyntheticBatch:
    params: np.ndarray  # (n, 3 + 3 + num_pca + 10)
    vertices: np.ndarray  # (n, V, 3) metres, camera frame
    keypoints_3d: np.ndarray  # (n, 21, 3)
    keypoints_2d: np.ndarray  # (n, 21, 3) with visibility


def pose_batch(layer, rng: np.random.Generator, n: int, cfg: SamplerConfig) -> SyntheticBatch:
    """Sample n hands, pose them with the hand layer, and place each in the crop."""
    import torch

    hand = sample_hand_parameters(rng, n, cfg)
    with torch.no_grad():
        out = layer(*(torch.from_numpy(hand[k]) for k in ("rotation", "pose", "betas")))
    vertices, keypoints = out.vertices.numpy(), out.keypoints.numpy()
    camera = place_in_crop(rng, vertices, cfg)
    uv = project(keypoints, camera)[..., :2]
    inside = np.all((uv >= 0) & (uv <= CROP_SIZE - 1), axis=-1)
    return SyntheticBatch(
        params=np.concatenate([camera, hand["rotation"], hand["pose"], hand["betas"]], axis=1),
        vertices=vertices,
        keypoints_3d=keypoints,
        keypoints_2d=np.concatenate([uv, inside[..., None]], axis=-1).astype(np.float32),
    )


def render_batch(renderer, batch: SyntheticBatch, faces, colors, backgrounds, rng, cfg) -> Iterator[tuple]:
    """Yield (image, mask, background) per sample: a random skin colouring, light and background for each."""
    from hand3d.backgrounds import random_background

    screen = project(batch.vertices, batch.params[:, :3])
    for verts in screen:
        light, ambient = random_light(rng, cfg)
        skin = colors[rng.integers(len(colors))]
        rendered, coverage = renderer.render(verts, faces, skin, light_dir=light, ambient=ambient)
        background = random_background(rng, backgrounds, CROP_SIZE)
        yield composite(rendered, coverage, background), (coverage > 0.5).astype(np.uint8), background


def render_shard(
    out_h5: str,
    hand_model: str,
    colors_npz: str,
    backgrounds_h5: str,
    split: str,
    shard: int,
    count: int,
    seed: int,
    sampler: SamplerConfig,
    msaa: int = 4,
    store_vertices: bool = False,
    batch_size: int = 32,
    threads: int = 1,
    device_index: int = 0,
) -> None:
    """Render `count` samples of one shard into a packed HDF5 file (DESIGN section 2 layout).

    `threads` is the job's CPU budget: torch and Mesa's llvmpipe rasteriser each get that many threads.
    """
    import torch
    from tqdm import tqdm

    torch.set_num_threads(threads)
    os.environ["LP_NUM_THREADS"] = str(threads)  # read by llvmpipe when the GL context is created

    from hand3d.backgrounds import open_backgrounds
    from hand3d.hand_layer import HandLayer
    from hand3d.render import Renderer

    rng = shard_rng(seed, split, shard)
    layer = HandLayer(hand_model, num_pca=sampler.num_pca)
    faces = layer.faces
    with np.load(colors_npz) as data:
        colors = data["colors"]
    renderer = Renderer(CROP_SIZE, CROP_SIZE, samples=msaa, device_index=device_index)
    num_params = 3 + 3 + sampler.num_pca + NUM_BETAS
    vertices_count = layer.num_vertices if store_vertices else None
    log.info("rendering %d %s samples (shard %d) on %s", count, split, shard, renderer.renderer_name)
    with (
        open_backgrounds(backgrounds_h5) as backgrounds,
        PackedWriter(out_h5, "synthetic", split, num_params, num_vertices=vertices_count) as writer,
        tqdm(total=count, desc=f"render {split} shard {shard}", unit="img") as progress,
    ):
        for start in range(0, count, batch_size):
            n = min(batch_size, count - start)
            batch = pose_batch(layer, rng, n, sampler)
            samples = render_batch(renderer, batch, faces, colors, backgrounds, rng, sampler)
            images, masks, _ = zip(*samples, strict=True)
            writer.append(_packed_fields(batch, images, masks, split, shard, start, store_vertices))
            progress.update(n)
    renderer.release()


def _packed_fields(batch: SyntheticBatch, images, masks, split, shard, start, store_vertices) -> dict:
    n = len(images)
    fields = {
        "images": np.stack(images),
        "masks": np.stack(masks),
        "keypoints_2d": batch.keypoints_2d,
        "keypoints_3d": batch.keypoints_3d.astype(np.float32),
        "params": batch.params.astype(np.float32),
        "has_mask": np.ones(n, bool),
        "has_3d": np.ones(n, bool),
        "has_params": np.ones(n, bool),
        "is_left": np.zeros(n, bool),
        "crop_box": np.tile(np.array([0, 0, CROP_SIZE, 0], np.float32), (n, 1)),
        "names": [f"synthetic_{split}_{shard:03d}_{start + i:06d}" for i in range(n)],
    }
    if store_vertices:
        fields["vertices"] = batch.vertices.astype(np.float32)
    return fields
