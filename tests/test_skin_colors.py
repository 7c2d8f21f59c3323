"""Skin colourings: procedural tones, nails, creases and palm on the procedural hand; scan colour transfer from OBJ."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from hand3d.skin_colors import (
    build_colors,
    dorsal_direction,
    model_joints,
    procedural_skin_colors,
    read_colored_obj,
    read_obj_vertices,
    scan_colors,
    transfer_colors,
)

LUMA = np.array([0.2126, 0.7152, 0.0722])
# MANO order: (proximal, middle, distal joint) and the finger's row in tip_vertex_ids, for the four fingers.
FINGERS = {"index": ((1, 2, 3), 1), "middle": ((4, 5, 6), 2), "ring": ((10, 11, 12), 3), "little": ((7, 8, 9), 4)}


@pytest.fixture(scope="module")
def colors(procedural_arrays) -> np.ndarray:
    return procedural_skin_colors(procedural_arrays, count=8, seed=0)


def _luma(colors: np.ndarray) -> np.ndarray:
    return colors @ LUMA


def test_shape_dtype_and_range(procedural_arrays, colors):
    assert colors.shape == (8, len(procedural_arrays["v_template"]), 3) and colors.dtype == np.float32
    assert colors.min() >= 0 and colors.max() <= 1


def test_deterministic_from_the_seed(procedural_arrays, colors):
    np.testing.assert_array_equal(procedural_skin_colors(procedural_arrays, 8, seed=0), colors)
    assert not np.allclose(procedural_skin_colors(procedural_arrays, 8, seed=1), colors)


def test_tones_span_light_to_dark(colors):
    mean_luma = _luma(colors).mean(axis=1)
    assert mean_luma.max() - mean_luma.min() > 0.35


def test_colours_vary_smoothly_over_the_hand(procedural_arrays, colors):
    """The colours vary over the hand, and neighbours differ far less than the same colours put at random places."""
    luma = _luma(colors)
    assert np.all(luma.std(axis=1) > 0.005)
    faces = procedural_arrays["f"]
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    shuffled = luma[:, np.random.default_rng(0).permutation(luma.shape[1])]
    across = np.abs(luma[:, edges[:, 0]] - luma[:, edges[:, 1]]).mean(axis=1)
    across_shuffled = np.abs(shuffled[:, edges[:, 0]] - shuffled[:, edges[:, 1]]).mean(axis=1)
    assert np.all(across < 0.5 * across_shuffled), (across, across_shuffled)


def test_dorsal_direction_points_out_of_the_back(procedural_arrays):
    joints = model_joints(procedural_arrays)
    assert dorsal_direction(joints) @ np.array([0.0, 0.0, 1.0]) > 0.95
    mirrored = joints * np.array([-1.0, 1.0, 1.0])  # a left hand: the right-hand formula points out of the palm
    assert dorsal_direction(mirrored) @ np.array([0.0, 0.0, 1.0]) < -0.95


def _distal_frame(arrays: dict, chain: tuple[int, int, int], row: int):
    """(tip position, unit distal axis DIP -> tip) of a finger."""
    vertices = arrays["v_template"]
    tip = vertices[arrays["tip_vertex_ids"][row]]
    axis = tip - model_joints(arrays)[chain[2]]
    return tip, axis / np.linalg.norm(axis)


def test_nails_are_lighter_than_the_finger_behind_them(procedural_arrays, colors):
    vertices = procedural_arrays["v_template"]
    luma = _luma(colors)
    for name, (chain, row) in FINGERS.items():
        tip, axis = _distal_frame(procedural_arrays, chain, row)
        behind = (tip - vertices) @ axis
        offset = vertices - tip - np.outer((vertices - tip) @ axis, axis)
        dorsal = offset[:, 2] > 0.8 * np.linalg.norm(offset, axis=1)  # the procedural hand's back faces +z
        near = np.linalg.norm(offset, axis=1) < 0.012
        nail = dorsal & near & (behind > 0.001) & (behind < 0.006)
        skin = dorsal & near & (behind > 0.014) & (behind < 0.020)
        assert nail.sum() >= 3 and skin.sum() >= 3, name
        lighter = luma[:, nail].mean(axis=1) - luma[:, skin].mean(axis=1)
        # Near-white tones leave little room: there the +-5-8 % spatial variation can outweigh the nail.
        not_white = luma.mean(axis=1) < 0.8
        assert np.all(lighter[not_white] > 0.02) and lighter.mean() > 0.05, (name, lighter)


def test_creases_are_darker_than_skin_5_mm_along_the_finger(procedural_arrays, colors):
    vertices = procedural_arrays["v_template"]
    joints = model_joints(procedural_arrays)
    luma = _luma(colors)
    for name, (chain, row) in FINGERS.items():
        points = [*joints[list(chain)], vertices[procedural_arrays["tip_vertex_ids"][row]]]
        for k, side in ((1, 1), (1, -1), (2, 1), (2, -1)):  # PIP, DIP; back (+z), palm side (-z)
            axis = (points[k + 1] - points[k]) / np.linalg.norm(points[k + 1] - points[k])
            along = (vertices - points[k]) @ axis
            offset = vertices - points[k] - np.outer(along, axis)
            radial = np.linalg.norm(offset, axis=1)
            on_side = (radial < 0.010) & (side * offset[:, 2] > 0.7 * radial)  # one side: the palm is lighter
            crease = on_side & (np.abs(along) < 0.001)
            before = on_side & (np.abs(along + 0.005) < 0.001)
            after = on_side & (np.abs(along - 0.005) < 0.001)
            assert crease.sum() >= 2 and before.sum() >= 2 and after.sum() >= 2, (name, k)
            away = (luma[:, before].mean(axis=1) + luma[:, after].mean(axis=1)) / 2  # cancels smooth gradients
            darker = 1 - luma[:, crease].mean(axis=1) / away
            assert np.all(darker > 0.03) and np.all(darker < 0.2), (name, k, side, darker)


def test_palm_is_lighter_than_the_back_on_dark_skin(procedural_arrays):
    from hand3d.render import vertex_normals

    colors = procedural_skin_colors(procedural_arrays, count=8, seed=0)
    darkest = colors[_luma(colors).mean(axis=1).argmin()]
    normals = vertex_normals(procedural_arrays["v_template"], procedural_arrays["f"].astype(np.int64))
    palm, back = normals[:, 2] < -0.8, normals[:, 2] > 0.8
    assert _luma(darkest[palm]).mean() > 1.05 * _luma(darkest[back]).mean()
    redness = darkest[:, 0] / darkest[:, 1]
    assert redness[palm].mean() > redness[back].mean()


# ------------------------------------------------------------------------------------------------ scans


def _write_obj(path, vertices, colors=None, faces=True) -> None:
    with open(path, "w") as out:
        out.write("# test mesh\n")
        rows = vertices if colors is None else np.hstack([vertices, colors])
        for row in rows:
            out.write("v " + " ".join(f"{x:.6f}" for x in row) + "\n")
        if faces:
            out.write("f 1 2 3\n")


def _scan_case(registered: np.ndarray, seed: int = 0):
    """A scan per registered vertex: a point 0.1 mm away (its colour) and two distractors 3 mm away."""
    rng = np.random.default_rng(seed)
    near = registered + 1e-4 * rng.normal(size=registered.shape)
    far = np.concatenate([registered + 0.003, registered - 0.003])
    colors = rng.integers(0, 256, size=(3 * len(registered), 3))
    points = np.concatenate([far[: len(registered)], near, far[len(registered) :]])
    expected = colors[len(registered) : 2 * len(registered)] / 255.0
    return points, colors, expected


def test_transfer_takes_the_nearest_scan_colour():
    registered = np.random.default_rng(0).uniform(-0.05, 0.05, size=(20, 3))
    points, colors, expected = _scan_case(registered)
    np.testing.assert_array_equal(transfer_colors(registered, points, colors / 255.0), expected)


def test_scan_folders_pair_identical_names_and_skip_bad_files(tmp_path, caplog):
    registered_dir, scans_dir = tmp_path / "meshes_registered", tmp_path / "meshes_unregistered"
    registered_dir.mkdir()
    scans_dir.mkdir()
    rng = np.random.default_rng(1)
    expected = {}
    for name in ("01_01r.obj", "04_01r.obj"):
        registered = rng.uniform(-0.05, 0.05, size=(12, 3))
        points, colors, expected[name] = _scan_case(registered, seed=len(expected))
        _write_obj(registered_dir / name, registered)
        _write_obj(scans_dir / name, points, colors)  # 0-255 colours
    _write_obj(registered_dir / "06_01r.obj", rng.uniform(size=(12, 3)))
    (scans_dir / "06_01r.obj").write_bytes(rng.integers(0, 256, size=2000, dtype=np.uint8).tobytes())  # corrupt
    _write_obj(registered_dir / "09_01r.obj", rng.uniform(size=(12, 3)))  # no scan of that name
    _write_obj(registered_dir / "13_01r.obj", rng.uniform(size=(11, 3)))  # wrong vertex count
    _write_obj(scans_dir / "13_01r.obj", rng.uniform(size=(11, 3)), rng.uniform(size=(11, 3)))

    with caplog.at_level(logging.WARNING, logger="hand3d.skin_colors"):
        colors, skipped = scan_colors(registered_dir, scans_dir, num_vertices=12)
    assert skipped == 3 and colors.shape == (2, 12, 3) and colors.dtype == np.float32
    np.testing.assert_allclose(colors[0], expected["01_01r.obj"], atol=1e-7)
    np.testing.assert_allclose(colors[1], expected["04_01r.obj"], atol=1e-7)
    assert all(name in caplog.text for name in ("06_01r.obj", "09_01r.obj", "13_01r.obj"))


def test_no_usable_pair_is_an_error_naming_the_folder(tmp_path):
    (tmp_path / "reg").mkdir()
    (tmp_path / "scans").mkdir()
    _write_obj(tmp_path / "reg" / "01_01r.obj", np.zeros((4, 3)))
    with pytest.raises(ValueError, match="reg"):
        scan_colors(tmp_path / "reg", tmp_path / "scans", num_vertices=4)
    with pytest.raises(FileNotFoundError, match="missing"):
        scan_colors(tmp_path / "missing", tmp_path / "scans", num_vertices=4)


def test_scan_line_without_colour_names_file_and_line(tmp_path):
    path = tmp_path / "01_01r.obj"
    path.write_text("# scan\nv 0 0 0 0.5 0.5 0.5\nv 1 0 0\nf 1 2 1\n")
    with pytest.raises(ValueError, match=r"01_01r\.obj:3: vertex line has no colour"):
        read_colored_obj(path)


def test_colours_in_unit_range_are_kept_and_vertex_normals_ignored(tmp_path):
    path = tmp_path / "scan.obj"
    path.write_text("vn 0 0 1\nv 0 0 0 0.25 0.5 1.0\nv 1 2 3 0 0 0\n")
    points, colors = read_colored_obj(path)
    np.testing.assert_array_equal(points, [[0, 0, 0], [1, 2, 3]])
    np.testing.assert_array_equal(colors, [[0.25, 0.5, 1.0], [0, 0, 0]])
    np.testing.assert_array_equal(read_obj_vertices(path), points)


# ------------------------------------------------------------------------------------------------ entry point


def test_build_colors_procedural(tmp_path, hand_model_path, procedural_arrays):
    out = tmp_path / "colors.npz"
    result = build_colors(out, hand_model_path, count=3, seed=5)
    with np.load(out) as data:
        assert str(data["source"]) == "procedural" and int(data["skipped"]) == 0
        assert data["colors"].shape == (3, len(procedural_arrays["v_template"]), 3)
        np.testing.assert_array_equal(data["colors"], result["colors"])


def test_build_colors_from_scans(tmp_path, hand_model_path, procedural_arrays):
    registered = procedural_arrays["v_template"]
    colors = np.random.default_rng(2).integers(0, 256, size=registered.shape)
    for folder in ("reg", "scans"):
        (tmp_path / folder).mkdir()
    _write_obj(tmp_path / "reg" / "01_01r.obj", registered)
    _write_obj(tmp_path / "scans" / "01_01r.obj", registered, colors)
    out = tmp_path / "colors.npz"
    build_colors(out, hand_model_path, count=3, seed=0, registered_dir=tmp_path / "reg", scans_dir=tmp_path / "scans")
    with np.load(out) as data:
        assert str(data["source"]) == "scans" and int(data["skipped"]) == 0
        np.testing.assert_allclose(data["colors"][0], colors / 255.0, atol=1e-7)
    with pytest.raises(ValueError, match="both"):
        build_colors(out, hand_model_path, count=3, seed=0, registered_dir=tmp_path / "reg")
