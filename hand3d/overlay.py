"""Predicted meshes drawn over images: the weak-perspective camera is an orthographic view of (u, v, s*Z).

One :class:`MeshOverlay` keeps a renderer per image size (the EGL context is made once), so a folder of images of
different sizes, or a grid of 320-pixel crops, renders without setting up GL for each picture.
"""

from __future__ import annotations

import numpy as np

from hand3d.render import Renderer

__all__ = ["MESH_COLOR", "MeshOverlay", "screen_vertices"]

MESH_COLOR = (0.55, 0.75, 0.95)  # light blue: stands out on skin and on the skeleton colours


def screen_vertices(vertices: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """(V, 3) renderer coordinates of a hand (V, 3) metres under ``camera`` [s, tx, ty]: (s*X + tx, s*Y + ty, s*Z)."""
    s, tx, ty = (float(c) for c in camera)
    return np.column_stack([s * vertices[:, 0] + tx, s * vertices[:, 1] + ty, s * vertices[:, 2]])


class MeshOverlay:
    """Renders meshes in image pixels and blends them over images."""

    def __init__(self, faces: np.ndarray, alpha: float = 0.7, samples: int = 4):
        self.faces = np.asarray(faces, dtype=np.int64)
        self.alpha = float(alpha)
        self.samples = samples
        self._renderers: dict[tuple[int, int], Renderer] = {}

    def _renderer(self, width: int, height: int) -> Renderer:
        key = (width, height)
        if key not in self._renderers:
            self._renderers[key] = Renderer(width, height, samples=self.samples)
        return self._renderers[key]

    def draw(
        self, image: np.ndarray, meshes: list[np.ndarray], mirrored: list[bool] | None = None, color=MESH_COLOR
    ) -> np.ndarray:
        """A copy of the RGB ``image`` with each mesh (V, 3) in renderer coordinates (see :func:`screen_vertices`).

        ``mirrored[i]``: mesh i was mirrored (a left hand drawn from a right-hand model), so its triangles wind the
        other way and are flipped to keep the normals pointing out.
        """
        out = image.astype(np.float32)
        height, width = image.shape[:2]
        renderer = self._renderer(width, height)
        for vertices, flip in zip(meshes, mirrored or [False] * len(meshes), strict=True):
            faces = self.faces[:, ::-1] if flip else self.faces
            rgb, coverage = renderer.render(vertices, faces, np.asarray(color, np.float32))
            weight = self.alpha * coverage[..., None]
            out = out * (1 - weight) + rgb.astype(np.float32) * self.alpha
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def release(self) -> None:
        for renderer in self._renderers.values():
            renderer.release()
        self._renderers.clear()

    def __enter__(self) -> MeshOverlay:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
