"""Benchmarks behind `hand3d bench ...`: throughput figures measured in one run, printed as a table.

`bench render` times, on every EGL device (Mesa's llvmpipe is the CPU; a GPU driver adds the GPU), the synthetic
pipeline end to end (sample, pose with the hand layer, render, composite over a background, write the packed HDF5)
and the bare rasterisation of the same meshes, and gives their ratio: how much of the time is the rasteriser's.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np


def _inputs(workdir: Path, model: str | None) -> tuple[str, str, str]:
    """A hand model (the given one, else a procedural one), skin colourings and backgrounds in workdir."""
    from hand3d.backgrounds import build_backgrounds
    from hand3d.hand_model import build_hand_model
    from hand3d.skin_colors import build_colors

    if model is None:
        model = str(workdir / "MANO_RIGHT.npz")
        build_hand_model(model, str(workdir / "template.obj"))
    colors, backgrounds = str(workdir / "colors.npz"), str(workdir / "backgrounds.h5")
    build_colors(colors, model, count=4, seed=0)
    build_backgrounds(backgrounds, folder=None, size=480, procedural=4, seed=0)
    return model, colors, backgrounds


def _bare_rasterisation(model: str, colors: str, count: int, device_index: int, msaa: int) -> float:
    """Images per second of rendering alone, on the meshes the sampler makes."""
    from hand3d.hand_layer import HandLayer
    from hand3d.render import Renderer
    from hand3d.synthetic import SamplerConfig, pose_batch, project

    cfg = SamplerConfig()
    rng = np.random.default_rng(0)
    layer = HandLayer(model, num_pca=cfg.num_pca)
    batch = pose_batch(layer, rng, count, cfg)
    screen = project(batch.vertices, batch.params[:, :3])
    with np.load(colors) as data:
        skin = data["colors"][0]
    renderer = Renderer(320, 320, samples=msaa, device_index=device_index)
    renderer.render(screen[0], layer.faces, skin)  # warm-up: shader compilation, buffer allocation
    start = time.perf_counter()
    for verts in screen:
        renderer.render(verts, layer.faces, skin)
    elapsed = time.perf_counter() - start
    renderer.release()
    return count / elapsed


def _end_to_end(model, colors, backgrounds, out, count, device_index, msaa, threads) -> float:
    from hand3d.synthetic import SamplerConfig, render_shard

    kwargs = dict(split="train", shard=0, seed=0, sampler=SamplerConfig(), msaa=msaa, threads=threads)
    render_shard(out, model, colors, backgrounds, count=2, device_index=device_index, **kwargs)  # warm-up
    start = time.perf_counter()
    render_shard(out, model, colors, backgrounds, count=count, device_index=device_index, **kwargs)
    return count / (time.perf_counter() - start)


def bench_render(model: str | None = None, count: int = 64, msaa: int = 4, threads: int = 1) -> list[dict]:
    """Measure every EGL device; returns one row per device."""
    from hand3d.render import egl_devices

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model, colors, backgrounds = _inputs(workdir, model)
        for index, name in enumerate(egl_devices()):
            full = _end_to_end(model, colors, backgrounds, str(workdir / "shard.h5"), count, index, msaa, threads)
            bare = _bare_rasterisation(model, colors, count, index, msaa)
            rows.append({"device": index, "renderer": name, "end_to_end": full, "rasterisation": bare})
    return rows


def format_render_rows(rows: list[dict], count: int, msaa: int) -> str:
    lines = [
        f"hand3d bench render: {count} images of 320x320, MSAA x{msaa}",
        f"{'EGL device':<40} {'end to end img/s':>17} {'rasterise img/s':>16} {'ratio':>6}",
    ]
    for row in rows:
        ratio = row["end_to_end"] / row["rasterisation"]
        name = f"{row['device']}: {row['renderer']}"[:40]
        lines.append(f"{name:<40} {row['end_to_end']:>17.1f} {row['rasterisation']:>16.1f} {ratio:>6.2f}")
    return "\n".join(lines)


def bench_real(model: str | None = None, count: int = 48) -> dict[str, float]:
    """Images per second on one core of each real-data stage, on an MPII+NZSL stand-in of `count` hands."""
    import torch

    from hand3d.datasets.standin import HandPhotographer
    from hand3d.real_data import crop_shard, heatmap_shard, index_dataset, reader, segment_shard

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if model is None:
            model = _inputs(workdir, None)[0]
        photographer = HandPhotographer(model, seed=0)
        reader("mpii_nzsl").write_demo(workdir / "raw", photographer, 0, train=count, test=1)
        photographer.release()
        paths = {k: str(workdir / f"{k}") for k in ("index.json", "crops.h5", "issues.json", "masks.h5", "maps.h5")}
        stages = {
            "index": lambda: index_dataset("mpii_nzsl", str(workdir / "raw"), "train", {}, paths["index.json"]),
            "crop": lambda: crop_shard(paths["index.json"], 0, 1, paths["crops.h5"], paths["issues.json"], 22),
            "segment (GrabCut)": lambda: segment_shard(paths["crops.h5"], paths["masks.h5"], {}),
            "heatmaps": lambda: heatmap_shard(
                paths["crops.h5"], paths["index.json"], paths["maps.h5"], "annotations", 80, 6.0
            ),  # fmt: skip
        }
        rates = {}
        for name, run in stages.items():
            start = time.perf_counter()
            run()
            rates[name] = count / (time.perf_counter() - start)
    return rates


def format_real_rates(rates: dict[str, float], count: int) -> str:
    lines = [f"hand3d bench real: {count} MPII+NZSL stand-in hands (1280x720 and smaller), one core"]
    lines += [f"{name:<20} {rate:>10.1f} images/s" for name, rate in rates.items()]
    return "\n".join(lines)
