"""Headless rasterisation of vertex-coloured meshes with moderngl on an EGL context.

Vertices come in image coordinates: x = column, y = row (pixels, OpenCV convention: pixel centres at integers), z
grows away from the camera. A weak-perspective camera (`u = s*X + tx`, `v = s*Y + ty`) is therefore an orthographic
projection of (u, v, s*Z), which this renderer reproduces exactly. Shading is Lambertian with an ambient term;
MSAA smooths edges; the hand mask is the resolved coverage.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

_VERTEX_SHADER = """
#version 330
uniform vec2 image_size;
uniform vec2 depth_range;
in vec3 in_position;
in vec3 in_normal;
in vec3 in_color;
out vec3 v_normal;
out vec3 v_color;
void main() {
    float x = (in_position.x + 0.5) / image_size.x * 2.0 - 1.0;
    float y = 1.0 - (in_position.y + 0.5) / image_size.y * 2.0;
    float z = (in_position.z - depth_range.x) / (depth_range.y - depth_range.x) * 2.0 - 1.0;
    gl_Position = vec4(x, y, z, 1.0);
    v_normal = in_normal;
    v_color = in_color;
}
"""

_FRAGMENT_SHADER = """
#version 330
uniform vec3 light_dir;
uniform float ambient;
in vec3 v_normal;
in vec3 v_color;
out vec4 f_color;
void main() {
    float lambert = max(dot(normalize(v_normal), -light_dir), 0.0);
    f_color = vec4(v_color * (ambient + (1.0 - ambient) * lambert), 1.0);
}
"""

_EGL_HELP = (
    "moderngl could not create a headless EGL context ({error}). hand3d renders through EGL: install the EGL "
    "loader and a driver (Debian/Ubuntu: `apt-get install libegl1 libgl1-mesa-dri` for Mesa's CPU renderer; the "
    "NVIDIA driver provides its own libEGL_nvidia)."
)


def create_context(device_index: int = 0, libegl: str | None = None):
    """A standalone moderngl context on EGL device `device_index`, with a clear error when EGL is missing.

    `libegl` names the EGL library to load (default: the system's libEGL.so.1).
    """
    import moderngl

    _load_triton_first()
    extra = {"libegl": libegl} if libegl else {}
    try:
        return moderngl.create_standalone_context(backend="egl", device_index=device_index, **extra)
    except Exception as error:  # moderngl raises plain Exceptions for loader failures
        raise RuntimeError(_EGL_HELP.format(error=error)) from error


def _load_triton_first() -> None:
    """Load triton (torch.compile's GPU compiler, installed with CUDA builds of torch) before Mesa's EGL driver.

    Mesa's llvmpipe loads the system's libLLVM; triton bundles its own LLVM, and loading it afterwards (any later
    ``torch.compile`` or ``import torch._dynamo`` in the same process) crashes with a segmentation fault. In this
    order both work. Importing triton takes about 0.1 s.
    """
    import importlib.util

    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401


def egl_devices() -> list[str]:
    """GL_RENDERER of every EGL device this machine offers (Mesa's llvmpipe is the CPU one)."""
    names = []
    while True:
        try:
            ctx = create_context(len(names))
        except RuntimeError:
            return names
        names.append(ctx.info["GL_RENDERER"])
        ctx.release()


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals of a triangle mesh (outward for counter-clockwise faces)."""
    return _unit(_incidence(faces, len(vertices)) @ _face_normals(vertices, faces))


def _face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    return np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])


def _incidence(faces: np.ndarray, num_vertices: int) -> sp.csr_matrix:
    """(V, F) matrix with a 1 where a vertex belongs to a face: sums face values onto vertices."""
    rows = faces.ravel()
    cols = np.repeat(np.arange(len(faces)), 3)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_vertices, len(faces)))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)


class Renderer:
    """Renders meshes into (H, W) images with one reusable EGL context, MSAA framebuffer and buffers.

    Meshes that share their faces (a hand model's, frame after frame) reuse the index buffer and the normal
    accumulation matrix; only the vertex buffer is rewritten.
    """

    def __init__(self, width: int, height: int, samples: int = 4, device_index: int = 0):
        self.size = (int(width), int(height))
        self.ctx = create_context(device_index)
        self.renderer_name = self.ctx.info["GL_RENDERER"]
        self.ctx.enable(self.ctx.DEPTH_TEST)
        self.program = self.ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        self.msaa = self.ctx.framebuffer(
            color_attachments=[self.ctx.renderbuffer(self.size, 4, samples=samples)],
            depth_attachment=self.ctx.depth_renderbuffer(self.size, samples=samples),
        )
        self.resolved = self.ctx.framebuffer(color_attachments=[self.ctx.renderbuffer(self.size, 4)])
        self._faces = None
        self._vbo = self._ibo = self._vao = None

    def _use_mesh(self, faces: np.ndarray, num_vertices: int) -> None:
        same = self._faces is not None and self._faces.shape == faces.shape and np.array_equal(self._faces, faces)
        if same and self._vbo.size == num_vertices * 36:
            return
        for obj in (self._vao, self._ibo, self._vbo):
            if obj is not None:
                obj.release()
        self._faces = np.array(faces, dtype=np.int64)
        self._incidence = _incidence(self._faces, num_vertices)
        self._vbo = self.ctx.buffer(reserve=num_vertices * 36)  # position, normal, colour: 9 float32
        self._ibo = self.ctx.buffer(self._faces.astype("i4").tobytes())
        self._vao = self.ctx.vertex_array(
            self.program, [(self._vbo, "3f 3f 3f", "in_position", "in_normal", "in_color")], index_buffer=self._ibo
        )

    def render(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        colors: np.ndarray,
        light_dir: tuple[float, float, float] = (0.0, 0.0, 1.0),
        ambient: float = 0.35,
        normals: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw one mesh; returns an (H, W, 3) uint8 RGB image on black and its (H, W) float32 coverage in [0, 1].

        The image is premultiplied by coverage, so compositing is `image + background * (1 - coverage)`.
        `light_dir` is the direction the light travels (towards +z: from the camera into the scene). `normals`
        (V, 3) light the mesh; by default they come from `vertices`, which is right only where their three axes share
        one scale (a weak-perspective mesh in pixels); for (u, v, Z) after a perspective projection, pass the
        camera frame's (:func:`vertex_normals`).
        """
        with self.ctx:  # make this renderer's context current: several renderers (frame sizes) may coexist
            vertices = np.asarray(vertices, dtype=np.float64)
            return self._draw(vertices, faces, colors, light_dir, ambient, normals)

    def _draw(self, vertices, faces, colors, light_dir, ambient, normals) -> tuple[np.ndarray, np.ndarray]:
        self._use_mesh(faces, len(vertices))
        if normals is None:
            normals = self._incidence @ _face_normals(vertices, self._faces)
        normals = _unit(np.asarray(normals, dtype=np.float64))
        data = np.concatenate([vertices, normals, np.broadcast_to(colors, vertices.shape)], axis=1)
        self._vbo.write(data.astype("f4").tobytes())
        z = vertices[:, 2]
        margin = max(1e-3, 0.05 * float(z.max() - z.min()))
        self.program["image_size"].value = self.size
        self.program["depth_range"].value = (float(z.min()) - margin, float(z.max()) + margin)
        self.program["light_dir"].value = tuple(float(c) for c in np.asarray(light_dir) / np.linalg.norm(light_dir))
        self.program["ambient"].value = float(ambient)
        self.msaa.use()
        self.msaa.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self._vao.render()
        self.ctx.copy_framebuffer(self.resolved, self.msaa)
        rgba = np.frombuffer(self.resolved.read(components=4), dtype=np.uint8)
        rgba = rgba.reshape(self.size[1], self.size[0], 4)[::-1]
        return np.ascontiguousarray(rgba[..., :3]), rgba[..., 3].astype(np.float32) / 255.0

    def release(self) -> None:
        self.ctx.release()
