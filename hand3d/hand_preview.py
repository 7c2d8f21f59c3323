"""A picture of a hand model: the template, the mean pose and the leading PCA poses, seen from two sides."""

from __future__ import annotations

import cv2
import numpy as np

from hand3d.image_io import write_rgb

SKIN = np.array([0.86, 0.66, 0.56])
TILE = 240
# Camera rotations: the template's +x (fingers) points up the image, the back of the hand faces the camera.
DORSAL = np.array([[0, -1, 0], [-1, 0, 0], [0, 0, -1]], dtype=float).T
SIDE = cv2.Rodrigues(np.array([0.0, np.pi / 2, 0.0]))[0] @ DORSAL
VIEWS = {"back": DORSAL, "thumb side": SIDE}


def preview_poses(num_pca: int) -> list[tuple[str, np.ndarray | None]]:
    """(label, PCA coefficients) for each column; None is the flat template without the mean pose."""
    poses: list[tuple[str, np.ndarray | None]] = [("template", None), ("mean pose", np.zeros(num_pca))]
    for k in range(min(3, num_pca)):
        for c in (2.0, -2.0):
            coeffs = np.zeros(num_pca)
            coeffs[k] = c
            poses.append((f"pca{k + 1} {c:+.0f}", coeffs))
    return poses


def _fit_tile(points: np.ndarray, scale: float, center: np.ndarray) -> np.ndarray:
    return (points - center) * scale + np.array([TILE / 2, TILE / 2, 0.0])


def render_preview(model_path: str, out_png: str, num_pca: int = 6) -> np.ndarray:
    """Render the grid (rows: views, columns: poses) to `out_png`; returns the RGB image."""
    import torch

    from hand3d.hand_layer import HandLayer
    from hand3d.render import Renderer

    layer = HandLayer(model_path, num_pca=num_pca)
    faces = layer.faces
    template = layer.mano.v_template.numpy()
    meshes = []
    with torch.no_grad():
        for label, coeffs in preview_poses(num_pca):
            if coeffs is None:
                meshes.append((label, template))
                continue
            out = layer(torch.zeros(1, 3), torch.as_tensor(coeffs, dtype=torch.float32)[None], torch.zeros(1, 10))
            meshes.append((label, out.vertices[0].numpy()))
    extent = np.ptp(template, axis=0).max()
    scale = 0.85 * TILE / extent
    renderer = Renderer(TILE, TILE)
    rows = []
    for view_name, rotation in VIEWS.items():
        tiles = []
        for label, vertices in meshes:
            p = vertices @ rotation.T
            image, _ = renderer.render(_fit_tile(p, scale, p.mean(axis=0)), faces, SKIN, light_dir=(0.3, 0.5, 1.0))
            cv2.putText(image, f"{label} / {view_name}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
            tiles.append(image)
        rows.append(np.concatenate(tiles, axis=1))
    renderer.release()
    grid = np.concatenate(rows, axis=0)
    write_rgb(out_png, grid)
    return grid
