"""Augmentation on the device: one warp that resizes the 320 crop to the network input and jitters it, colour jitter,
noise, and heatmaps warped or rendered at the network input, with every label moved consistently.

Geometry. A sample's augmentation maps crop pixels ``p`` (320 frame, pixel centres at integers, centre
``c = 159.5``) to ``p' = a (p - c) + c + d``: a zoom by ``a`` about the crop centre and a shift ``d`` (pixels).
The augmented sample is still a 320-frame crop; only its pixels are sampled at the network's ``size``. So:

- images, heatmaps: ``grid_sample`` (bilinear, ``align_corners=False``) straight to ``size x size`` (with ``a = 1``,
  ``d = 0`` this is exactly a bilinear resize of the crop);
- masks: ``grid_sample`` (nearest) at 320, where the mask loss samples them;
- 2D keypoints: ``p'``; a keypoint that leaves the crop becomes invisible;
- camera ``[s, tx, ty]`` (synthetic ground truth): ``s' = a s``, ``t' = a (t - c) + c + d``;
- 3D keypoints: unchanged (camera frame; weak perspective ignores depth).

Colour (after the warp, values 0-255): brightness ``x *= b``; contrast about the image's mean grey; saturation
about each pixel's grey (ITU-R BT.601 weights); Gaussian noise of a per-sample standard deviation; clamped to
[0, 255].

The random numbers come with the batch (:func:`draw_augmentation`, drawn in the loader from the step's generator);
the pixel noise is drawn on the device from a generator seeded with the step (:func:`unit_noise`), so the whole stream
is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from hand3d.h5io import CROP_SIZE

__all__ = ["AUGMENT_COLUMNS", "AugmentConfig", "augment_batch", "draw_augmentation", "render_heatmaps", "unit_noise"]

AUGMENT_COLUMNS = ("zoom", "shift_x", "shift_y", "brightness", "contrast", "saturation", "noise")
CENTRE = (CROP_SIZE - 1) / 2.0
GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation; ``enabled=False`` gives the identity (evaluation)."""

    enabled: bool = True
    zoom: float = 0.15  # a ~ U(1 - zoom, 1 + zoom)
    shift: float = 0.08  # d ~ U(-shift, shift) * 320 per axis
    brightness: float = 0.3  # factor ~ U(1 - brightness, 1 + brightness)
    contrast: float = 0.3
    saturation: float = 0.3
    noise: float = 4.0  # per-sample std ~ U(0, noise), in 0-255 units


def draw_augmentation(rng: np.random.Generator, n: int, config: AugmentConfig) -> np.ndarray:
    """Per-sample parameters (n, 7) float32 in :data:`AUGMENT_COLUMNS` order."""
    out = np.zeros((n, len(AUGMENT_COLUMNS)), dtype=np.float32)
    out[:, [0, 3, 4, 5]] = 1.0
    if not config.enabled:
        return out
    out[:, 0] = rng.uniform(1 - config.zoom, 1 + config.zoom, n)
    out[:, 1:3] = rng.uniform(-config.shift, config.shift, (n, 2)) * CROP_SIZE
    for column, spread in ((3, config.brightness), (4, config.contrast), (5, config.saturation)):
        out[:, column] = rng.uniform(1 - spread, 1 + spread, n)
    out[:, 6] = rng.uniform(0, config.noise, n)
    return out


def _theta(augment: torch.Tensor) -> torch.Tensor:
    """Affine matrices (B, 2, 3) for ``affine_grid``: output normalised coordinates -> input normalised ones."""
    zoom, shift = augment[:, 0], augment[:, 1:3]
    theta = augment.new_zeros(augment.shape[0], 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / zoom
    theta[:, :, 2] = -shift / (CROP_SIZE / 2) / zoom[:, None]
    return theta


def _warp(x: torch.Tensor, theta: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    grid = F.affine_grid(theta, [x.shape[0], 1, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def move_points(points: torch.Tensor, augment: torch.Tensor) -> torch.Tensor:
    """Crop-pixel points (B, K, 2) after the zoom and shift."""
    zoom, shift = augment[:, None, 0:1], augment[:, None, 1:3]
    return zoom * (points - CENTRE) + CENTRE + shift


def _move_keypoints(keypoints: torch.Tensor, augment: torch.Tensor) -> torch.Tensor:
    xy = move_points(keypoints[..., :2], augment)
    inside = ((xy > -0.5) & (xy < CROP_SIZE - 0.5)).all(dim=-1)
    visible = (keypoints[..., 2] > 0) & inside
    return torch.cat([xy, visible[..., None].to(xy.dtype)], dim=-1)


def _move_camera(params: torch.Tensor, augment: torch.Tensor) -> torch.Tensor:
    zoom, shift = augment[:, 0:1], augment[:, 1:3]
    moved = params.clone()
    moved[:, 0:1] = zoom * params[:, 0:1]
    moved[:, 1:3] = zoom * (params[:, 1:3] - CENTRE) + CENTRE + shift
    return moved


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma of RGB (B, 3, H, W); weights as Python floats (a tensor of them would be a copy to the
    device every call)."""
    return GREY[0] * x[:, 0:1] + GREY[1] * x[:, 1:2] + GREY[2] * x[:, 2:3]


def _colour(images: torch.Tensor, augment: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
    brightness, contrast, saturation = (augment[:, i, None, None, None] for i in (3, 4, 5))
    x = images * brightness
    grey = _grey(x)
    x = (x - grey.mean(dim=(2, 3), keepdim=True)) * contrast + grey.mean(dim=(2, 3), keepdim=True)
    grey = _grey(x)
    x = (x - grey) * saturation + grey
    if noise is not None:
        x = x + augment[:, 6, None, None, None] * noise
    return x.clamp(0, 255)


def unit_noise(batch_size: int, size: int, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """Standard normal pixel noise (B, 3, size, size) for :func:`augment_batch`, from ``generator``."""
    return torch.randn((batch_size, 3, size, size), device=device, generator=generator)


def render_heatmaps(keypoints_2d: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Gaussian heatmaps (B, 21, size, size), 0-255, of crop-pixel keypoints (B, 21, 3) sampled at ``size``.

    ``sigma`` in crop pixels (320 frame); invisible keypoints give empty maps (as the packed heatmaps do).
    """
    centres = (torch.arange(size, device=keypoints_2d.device, dtype=torch.float32) + 0.5) * CROP_SIZE / size - 0.5
    visible = keypoints_2d[..., 2] > 0
    xy = torch.where(visible[..., None], keypoints_2d[..., :2], torch.zeros_like(keypoints_2d[..., :2]))
    gx = torch.exp(-((centres - xy[..., 0:1]) ** 2) / (2 * sigma**2))  # (B, 21, size)
    gy = torch.exp(-((centres - xy[..., 1:2]) ** 2) / (2 * sigma**2))
    maps = 255.0 * gy[..., :, None] * gx[..., None, :]
    return maps * visible[..., None, None].to(maps.dtype)


def augment_batch(
    batch: dict[str, torch.Tensor],
    size: int,
    heatmaps: str | None = None,
    sigma: float = 6.0,
    noise: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The batch as the network and losses see it, on the batch's device.

    ``batch``: ``images`` (B, 320, 320, 3) uint8, ``augment`` (B, 7) and any of ``keypoints_2d``, ``params``,
    ``masks``, ``heatmaps`` (B, 21, h, w) uint8. Returns ``images`` (B, 3, size, size) float 0-255, the moved
    ``keypoints_2d`` and ``params``, ``masks`` (B, 320, 320) float, and ``heatmaps`` (B, 21, size, size) float 0-255
    when ``heatmaps`` is ``"stored"`` (warped from the batch) or ``"render"`` (drawn at the moved keypoints);
    other fields pass through. ``noise``: standard normal (B, 3, size, size) (:func:`unit_noise`), scaled by each
    sample's noise level; None adds none. It is drawn outside so that the function is one graph under
    ``torch.compile`` (a generator argument splits it).
    """
    augment = batch["augment"].float()
    theta = _theta(augment)
    out = {k: v for k, v in batch.items() if k != "augment"}
    images = batch["images"].permute(0, 3, 1, 2).float()
    out["images"] = _colour(_warp(images, theta, size, "bilinear"), augment, noise)
    if "keypoints_2d" in batch:
        out["keypoints_2d"] = _move_keypoints(batch["keypoints_2d"].float(), augment)
    if "params" in batch:
        out["params"] = _move_camera(batch["params"].float(), augment)
    if "masks" in batch:
        out["masks"] = _warp(batch["masks"][:, None].float(), theta, CROP_SIZE, "nearest")[:, 0]
    if heatmaps == "stored":
        out["heatmaps"] = _warp(batch["heatmaps"].float(), theta, size, "bilinear")
    elif heatmaps == "render":
        out["heatmaps"] = render_heatmaps(out["keypoints_2d"], size, sigma)
    elif heatmaps is not None:
        raise ValueError(f"heatmaps must be 'stored', 'render' or None, got {heatmaps!r}")
    return out
