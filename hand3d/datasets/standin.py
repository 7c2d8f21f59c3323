"""Photographs of the procedural hand for stand-in datasets: full-size frames with exactly known labels.

The stand-ins (`demo_raw`) exercise the real-data stage on machines without the datasets. A `HandPhotographer` poses
a hand (natural poses: a narrower PCA range than the synthetic set), places it in front of a pinhole camera so that
its projection has a chosen size and place in the frame, and renders it over a photo. Labels are exact: 2D keypoints
are `K @ X / Z` of the 3D keypoints (metres, camera frame, OpenCV axes); the rasteriser receives those same projected
vertex positions. Left hands are the right hand reflected through the camera's y-z plane (X -> -X) before placement.
These images are synthetic; they are not the datasets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hand3d.synthetic import SamplerConfig, sample_hand_parameters

NATURAL_POSES = SamplerConfig(pose_range=1.0, betas_range=0.5)


@dataclass
class Shot:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    keypoints_2d: np.ndarray  # (21, 2) pixels, OpenPose order
    keypoints_3d: np.ndarray  # (21, 3) metres, camera frame
    vertices: np.ndarray  # (V, 3) metres, camera frame
    mask: np.ndarray  # (H, W) uint8, 1 on the hand
    K: np.ndarray  # (3, 3)
    is_left: bool
    extra_images: list[np.ndarray] = field(default_factory=list)  # the same hand seen by the extra cameras


def default_intrinsics(width: int, height: int) -> np.ndarray:
    """A plausible pinhole camera: focal length 1.1 x the larger side, principal point at the centre."""
    f = 1.1 * max(width, height)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])


def perspective(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N, 3) camera-frame points -> (N, 3) of (u, v, Z) for the rasteriser."""
    uvw = points @ K.T
    return np.column_stack([uvw[:, :2] / uvw[:, 2:], points[:, 2]])


class HandPhotographer:
    """Renders posed procedural (or MANO) hands into frames of any size; one renderer per frame size."""

    def __init__(self, hand_model: str, seed: int = 0, colorings: int = 8):
        from hand3d.backgrounds import procedural_backgrounds, skimage_backgrounds
        from hand3d.hand_layer import HandLayer
        from hand3d.hand_model import load_hand_model_arrays
        from hand3d.skin_colors import procedural_skin_colors

        self.layer = HandLayer(hand_model, num_pca=NATURAL_POSES.num_pca)
        self.faces = self.layer.faces
        self.colors = procedural_skin_colors(load_hand_model_arrays(hand_model), colorings, seed)
        photos, _ = skimage_backgrounds(512)
        textures, _ = procedural_backgrounds(4, 512, seed)
        self.backgrounds = np.stack(photos + textures)
        self._renderers: dict[tuple[int, int], object] = {}

    def _renderer(self, width: int, height: int):
        from hand3d.render import Renderer

        if (width, height) not in self._renderers:
            self._renderers[(width, height)] = Renderer(width, height)
        return self._renderers[(width, height)]

    def _posed_hand(self, rng: np.random.Generator, left: bool) -> tuple[np.ndarray, np.ndarray]:
        import torch

        hand = sample_hand_parameters(rng, 1, NATURAL_POSES)
        with torch.no_grad():
            out = self.layer(*(torch.from_numpy(hand[k]) for k in ("rotation", "pose", "betas")))
        vertices, keypoints = out.vertices[0].double().numpy(), out.keypoints[0].double().numpy()
        if left:
            vertices, keypoints = vertices * [-1, 1, 1], keypoints * [-1, 1, 1]
        return vertices, keypoints

    def _place(self, rng, vertices, K, width, height, hand_size) -> np.ndarray:
        """Translation putting the hand at a random depth and place, its image box hand_size x min(W, H)."""
        centred = vertices - vertices.mean(axis=0)
        extent = np.ptp(centred[:, :2], axis=0).max()
        side_px = rng.uniform(*hand_size) * min(width, height)
        depth = K[0, 0] * extent / side_px
        margin = side_px / 2 + 2
        u, v = rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)
        centre = np.array([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth])
        return centre - vertices.mean(axis=0)

    def _draw(self, vertices_cam, K, width, height, skin, light, background, left):
        from hand3d.render import vertex_normals

        faces = self.faces[:, ::-1] if left else self.faces  # a reflection turns the winding inside out
        normals = vertex_normals(vertices_cam, faces)  # in metres: (u, v, Z) has pixels on two axes only
        renderer = self._renderer(width, height)
        rendered, coverage = renderer.render(perspective(vertices_cam, K), faces, skin, light, normals=normals)
        out = rendered.astype(np.float32) + background.astype(np.float32) * (1 - coverage[..., None])
        return np.clip(np.rint(out), 0, 255).astype(np.uint8), coverage

    def shoot(
        self,
        rng: np.random.Generator,
        width: int,
        height: int,
        K: np.ndarray | None = None,
        left: bool = False,
        hand_size: tuple[float, float] = (0.2, 0.45),
        extra_cameras: list[tuple[np.ndarray, np.ndarray]] = (),
    ) -> Shot:
        """One frame with one hand. `extra_cameras` are (K, t) seeing the same scene from X_cam' = X_cam - t."""
        import cv2

        K = default_intrinsics(width, height) if K is None else np.asarray(K, dtype=float)
        vertices, keypoints = self._posed_hand(rng, left)
        shift = self._place(rng, vertices, K, width, height, hand_size)
        vertices, keypoints = vertices + shift, keypoints + shift
        skin = self.colors[rng.integers(len(self.colors))]
        light = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), 1.0])
        photo = self.backgrounds[rng.integers(len(self.backgrounds))]
        background = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)
        image, coverage = self._draw(vertices, K, width, height, skin, light, background, left)
        extra = [
            self._draw(vertices - t, K2, width, height, skin, light, background, left)[0] for K2, t in extra_cameras
        ]
        return Shot(
            image=image,
            keypoints_2d=perspective(keypoints, K)[:, :2],
            keypoints_3d=keypoints,
            vertices=vertices,
            mask=(coverage > 0.5).astype(np.uint8),
            K=K,
            is_left=left,
            extra_images=extra,
        )

    def release(self) -> None:
        for renderer in self._renderers.values():
            renderer.release()
        self._renderers.clear()
