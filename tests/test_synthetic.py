"""The synthetic stage on real moderngl (Mesa EGL here) and real h5py: every sample's ground truth is consistent."""

from __future__ import annotations

import numpy as np
import pytest

from hand3d.h5io import open_packed
from hand3d.render import Renderer, vertex_normals
from hand3d.synthetic import (
    SamplerConfig,
    pose_batch,
    project,
    render_batch,
    render_shard,
    sample_hand_parameters,
    shard_sizes,
)

COUNT = 12


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, hand_model_path):
    from hand3d.backgrounds import build_backgrounds
    from hand3d.skin_colors import build_colors

    tmp = tmp_path_factory.mktemp("synthetic")
    colors, backgrounds = tmp / "colors.npz", tmp / "backgrounds.h5"
    build_colors(str(colors), str(hand_model_path), count=4, seed=0)
    build_backgrounds(str(backgrounds), folder=None, size=400, procedural=2, seed=0)
    return {"model": str(hand_model_path), "colors": str(colors), "backgrounds": str(backgrounds), "tmp": tmp}


def _render(inputs, out):
    """Shard 1 of the train split, 12 samples, seed 3."""
    args = (inputs["model"], inputs["colors"], inputs["backgrounds"])
    render_shard(str(out), *args, split="train", shard=1, count=COUNT, seed=3, sampler=SamplerConfig(),
                 store_vertices=True, batch_size=5)  # fmt: skip


@pytest.fixture(scope="module")
def shard(inputs):
    out = inputs["tmp"] / "shard.h5"
    _render(inputs, out)
    with open_packed(out) as f:
        data = {key: f[key][()] for key in f}
        attrs = dict(f.attrs)
    return data, attrs


def test_projected_3d_keypoints_are_the_2d_keypoints(shard):
    data, _ = shard
    params = data["params"]
    assert params.shape == (COUNT, 3 + 3 + 6 + 10) and np.isfinite(params).all()
    uv = project(data["keypoints_3d"], params[:, :3])[..., :2]
    assert np.abs(uv - data["keypoints_2d"][..., :2]).max() < 0.5
    assert np.all(data["keypoints_2d"][..., 2] == 1), "hands are placed inside the crop"


def test_the_parameters_are_the_stored_hand(shard, hand_layer):
    """Pretraining regresses ``params``: the hand layer on them must give the stored 3D keypoints and vertices."""
    import torch

    data, _ = shard
    params = torch.from_numpy(data["params"])
    with torch.no_grad():
        out = hand_layer(params[:, 3:6], params[:, 6:12], params[:, 12:])
    np.testing.assert_allclose(out.keypoints.numpy(), data["keypoints_3d"], atol=1e-5)
    np.testing.assert_allclose(out.vertices.numpy(), data["vertices"], atol=1e-5)


def test_train_and_test_shards_draw_other_hands():
    from hand3d.synthetic import shard_rng

    draws = {split: sample_hand_parameters(shard_rng(3, split, 1), 4, SamplerConfig())["pose"] for split in
             ("train", "test")}  # fmt: skip
    assert not np.allclose(draws["train"], draws["test"])
    again = sample_hand_parameters(shard_rng(3, "train", 1), 4, SamplerConfig())["pose"]
    np.testing.assert_array_equal(again, draws["train"])


def test_hand_box_fills_the_configured_share_of_the_crop(shard):
    data, _ = shard
    screen = project(data["vertices"], data["params"][:, :3])
    side = (screen[..., :2].max(axis=1) - screen[..., :2].min(axis=1)).max(axis=1)
    assert np.all((side >= 320 / 2.4 - 1e-3) & (side <= 320 / 2.0 + 1e-3)), side
    assert screen[..., :2].min() >= 0 and screen[..., :2].max() <= 319


def test_placed_hands_stay_inside_the_crop_pixels():
    """u = s*X + t lies in [0, 319] for every vertex of every placement, at the extremes of the box ratio too."""
    from hand3d.synthetic import place_in_crop

    rng = np.random.default_rng(0)
    clouds = rng.normal(0, 0.04, (2000, 50, 3)) * rng.uniform(0.3, 2, (2000, 1, 3))
    camera = place_in_crop(rng, clouds, SamplerConfig()).astype(np.float64)
    screen = project(clouds, camera)[..., :2]
    assert screen.min() >= -1e-4 and screen.max() <= 319 + 1e-4
    assert screen.max() > 318.5 and screen.min() < 0.5  # the placements reach both edges


def test_masks_cover_the_camera_facing_vertices(shard, hand_layer):
    data, _ = shard
    faces = hand_layer.faces
    for mask, verts, params in zip(data["masks"], data["vertices"], data["params"], strict=True):
        assert mask.sum() > 500, "every mask is non-empty"
        screen = project(verts[None], params[None, :3])[0]
        facing = vertex_normals(verts, faces)[:, 2] < -0.2  # z grows away from the camera
        cols, rows = np.rint(screen[facing, 0]).astype(int), np.rint(screen[facing, 1]).astype(int)
        grown = np.maximum.reduce([np.roll(mask, (dy, dx), (0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
        assert grown[rows, cols].mean() > 0.995


def background_images(path) -> np.ndarray:
    from hand3d.backgrounds import open_backgrounds

    with open_backgrounds(path) as images:
        return np.asarray(images[()])


def test_images_differ_from_background_only_on_the_hand(inputs, hand_layer):
    with np.load(inputs["colors"]) as c:
        colors = c["colors"]
    backgrounds = background_images(inputs["backgrounds"])
    rng = np.random.default_rng(5)
    cfg = SamplerConfig()
    batch = pose_batch(hand_layer, rng, 4, cfg)
    renderer = Renderer(320, 320)
    for image, mask, background in render_batch(renderer, batch, hand_layer.faces, colors, backgrounds, rng, cfg):
        diff = np.abs(image.astype(int) - background.astype(int)).sum(axis=-1)
        assert diff[mask == 1].mean() > 15, "the hand must show on its background"
        near_hand = np.maximum.reduce([np.roll(mask, (dy, dx), (0, 1)) for dy in (-2, 0, 2) for dx in (-2, 0, 2)])
        assert np.all(diff[near_hand == 0] == 0), "pixels away from the hand are the background's"
    renderer.release()


def test_masks_hold_the_pixels_the_hand_covers_by_half_or_more(inputs, hand_layer):
    """Neither grown by the edge pixels the hand barely touches nor shrunk by the ones it half covers."""
    backgrounds = background_images(inputs["backgrounds"])
    rng, cfg = np.random.default_rng(8), SamplerConfig()
    batch = pose_batch(hand_layer, rng, 3, cfg)
    renderer = Renderer(320, 320)
    colors = np.full((1, len(batch.vertices[0]), 3), 0.7)
    masks = [mask for _, mask, _ in render_batch(renderer, batch, hand_layer.faces, colors, backgrounds, rng, cfg)]
    for mask, verts in zip(masks, project(batch.vertices, batch.params[:, :3]), strict=True):
        _, coverage = renderer.render(verts, hand_layer.faces, np.ones(3))
        samples = np.rint(coverage * 4)  # of the renderer's 4 MSAA samples per pixel
        assert np.abs(samples - coverage * 4).max() < 0.02 and np.isin(samples, (1, 2, 3)).sum() > 200
        assert np.array_equal(mask == 1, samples >= 2), "half the samples or more"
    renderer.release()


def test_fields_and_attributes(shard):
    data, attrs = shard
    assert data["images"].shape == (COUNT, 320, 320, 3) and data["images"].dtype == np.uint8
    assert data["masks"].shape == (COUNT, 320, 320) and set(np.unique(data["masks"])) <= {0, 1}
    assert data["has_mask"].all() and data["has_3d"].all() and data["has_params"].all() and not data["is_left"].any()
    assert attrs["source"] == "synthetic" and attrs["split"] == "train" and attrs["keypoint_order"] == "openpose21"


def test_same_seed_same_arrays(inputs, shard):
    again = inputs["tmp"] / "again.h5"
    _render(inputs, again)
    with open_packed(again) as f:
        assert f.attrs["content_sha256"] == shard[1]["content_sha256"]
        np.testing.assert_array_equal(f["images"][()], shard[0]["images"])


def test_shard_sizes_cover_the_total():
    assert shard_sizes(10, 4) == [3, 3, 2, 2] and sum(shard_sizes(18000, 7)) == 18000


def test_sampler_ranges_come_from_the_config():
    rng = np.random.default_rng(0)
    cfg = SamplerConfig(betas_range=0.5, pose_range=0.25, max_angle=0.1)
    hand = sample_hand_parameters(rng, 2000, cfg)
    assert np.abs(hand["betas"]).max() <= 0.5 and np.abs(hand["betas"]).max() > 0.45
    assert np.abs(hand["pose"]).max() <= 0.25 and np.abs(hand["pose"]).max() > 0.24
    angles = np.linalg.norm(hand["rotation"], axis=1)
    assert angles.max() <= 0.1 + 1e-6 and angles.max() > 0.09
    axes = hand["rotation"] / angles[:, None]
    assert np.abs(axes.mean(axis=0)).max() < 0.1, "rotation axes spread over the sphere"
