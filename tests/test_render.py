"""The moderngl renderer on a real headless EGL context (Mesa llvmpipe here, the GPU driver elsewhere)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from hand3d.hand_surface import hand_sdf
from hand3d.render import Renderer, vertex_normals


@pytest.fixture(scope="module")
def renderer():
    r = Renderer(64, 48)
    yield r
    r.release()


def _quad(x0, y0, x1, y1, z=1.0):
    vertices = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=float)
    return vertices, np.array([[0, 2, 1], [0, 3, 2]])


def test_pixel_centres_at_integers_and_rows_down(renderer):
    """A quad from x=9.5 to 29.5, y=4.5 to 14.5 covers exactly columns 10..29 and rows 5..14."""
    vertices, faces = _quad(9.5, 4.5, 29.5, 14.5)
    image, coverage = renderer.render(vertices, faces, np.array([1.0, 0.0, 0.0]), ambient=1.0)
    assert image.shape == (48, 64, 3) and coverage.shape == (48, 64)
    inside = coverage > 0.5
    rows, cols = np.nonzero(inside)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (5, 14, 10, 29)
    assert np.all(image[inside] == [255, 0, 0]) and np.all(image[~inside] == 0)


def test_nearer_surface_wins(renderer):
    far_v, far_f = _quad(0, 0, 40, 40, z=5.0)
    near_v, near_f = _quad(10, 10, 20, 20, z=1.0)
    vertices = np.vstack([far_v, near_v])
    faces = np.vstack([far_f, near_f + 4])
    colors = np.array([[0, 0, 1.0]] * 4 + [[0, 1.0, 0]] * 4)
    image, _ = renderer.render(vertices, faces, colors, ambient=1.0)
    assert tuple(image[15, 15]) == (0, 255, 0) and tuple(image[30, 30]) == (0, 0, 255)


def test_lambert_shading_darkens_surfaces_turned_from_the_light(renderer):
    facing, faces = _quad(0, 0, 20, 20)
    tilted = facing.copy()
    tilted[:, 0] += 30
    tilted[1:3, 2] += 15  # lean away: normal turns from the camera
    image, _ = renderer.render(np.vstack([facing, tilted]), np.vstack([faces, faces + 4]), np.ones(3), ambient=0.2)
    assert image[10, 10, 0] > image[10, 40, 0] + 20


def test_given_normals_light_the_mesh_instead_of_its_positions(renderer):
    """(u, v, Z) after a perspective projection: the positions' normals would face the camera, the scene's do not."""
    vertices, faces = _quad(0, 0, 20, 20)
    facing, _ = renderer.render(vertices, faces, np.ones(3), ambient=0.2)
    turned = np.tile([0.8, 0.0, -0.6], (4, 1))  # the surface's own normal, 53 degrees from the camera
    image, coverage = renderer.render(vertices, faces, np.ones(3), ambient=0.2, normals=turned)
    assert facing[10, 10, 0] == 255 and abs(int(image[10, 10, 0]) - round(255 * (0.2 + 0.8 * 0.6))) <= 2
    assert np.array_equal(coverage > 0.5, renderer.render(vertices, faces, np.ones(3))[1] > 0.5)


def test_vertex_normals_point_out_of_a_closed_mesh(procedural_arrays):
    v, f = procedural_arrays["v_template"], procedural_arrays["f"].astype(np.int64)
    n = vertex_normals(v, f)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-9)
    eps = 1e-4  # the distance field grows outwards: its gradient is the true outward direction
    gradient = np.stack([hand_sdf(v + eps * e) - hand_sdf(v - eps * e) for e in np.eye(3)], axis=1)
    assert np.mean(np.einsum("ij,ij->i", n, gradient) > 0) > 0.99


def test_renderers_of_different_sizes_can_alternate(hand_model_path):
    """Each renderer draws into its own context when several coexist (stand-ins mix frame sizes and hands):
    before the fix, frames of the older size came out without their hand."""
    from hand3d.datasets.standin import HandPhotographer

    photographer = HandPhotographer(str(hand_model_path))
    rng = np.random.default_rng(0)
    for i in range(8):
        width, height = ((1280, 720), (400, 300))[i % 2]
        shot = photographer.shoot(rng, width, height, left=i % 3 == 0)
        assert shot.mask.sum() > 100, f"frame {i} ({width}x{height}) lost its hand"
    photographer.release()


def test_missing_egl_library_gives_a_clear_error():
    import pytest

    from hand3d.render import create_context

    with pytest.raises(RuntimeError) as error:
        create_context(libegl="libEGL_not_installed.so.1")
    message = str(error.value)
    assert "libEGL_not_installed.so.1" in message and "libegl1" in message and "libgl1-mesa-dri" in message


def test_torch_compile_still_loads_after_a_context_is_made():
    """triton's bundled LLVM crashed the process when loaded after Mesa's (see render._load_triton_first)."""
    script = (
        "from hand3d.render import create_context\n"
        "ctx = create_context()\n"
        "import torch, torch._dynamo\n"
        "print(torch.compile(lambda x: x + 1)(torch.zeros(2)).tolist())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("[1.0, 1.0]")
