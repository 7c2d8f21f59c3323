"""`hand3d bench train`: images per second of the whole training step against the bare backbone step, one device.

The full step is the training code itself (:func:`hand3d.train.train`) on a packed HDF5 file written for the run: the
batch readers (threads, or processes on CUDA, as in training), the copy to the device, augmentation, the network, the
hand layer, every loss, backward and Adam. It runs ``2 * steps`` iterations logging every ``steps``; the second interval
is the figure (the first holds the warm-up). The bare step is the same ResNet (3 channels, same input size, bf16
autocast and channels_last on CUDA) with a linear head, on a batch already on the device, backward and Adam, built as
the full step is (the forward compiled, fused Adam outside it): the ceiling the full step is compared with. Both stages
are measured: pretraining (parameter loss) and training (all losses). Compiled, each figure comes with the graphs and
graph breaks :mod:`torch.compile` made (:mod:`hand3d.compile_counts`): a break makes a step wait on the host.
``cuda_graphs`` compiles both steps in ``reduce-overhead`` mode (CUDA graphs) and counts the graphs left without one.
The data path is the full step's batches alone (read, and copied to the device): a full step near it is bound by its
data, not by the host or the GPU; so is one that waits for its batches (the ms a step waited, from ``history.csv``).
Asked to, it then profiles a few more steps of each (:mod:`hand3d.step_profile`): how long the GPU was busy in a step,
and how many launches the host made.
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from hand3d.compile_counts import CompileCounts
from hand3d.step_profile import PROFILE_WARMUP, PROFILED_STEPS, StepProfile, StepProfiler

__all__ = [
    "BenchSettings",
    "bench_train",
    "format_train_rows",
    "mano_sized_hand",
    "train_rows_record",
    "write_bench_dataset",
]

MANO_SIZED_GRID_M = 0.009


@dataclass(frozen=True)
class BenchSettings:
    backbone: str
    input_size: int
    batch_size: int
    steps: int
    samples: int
    device: str = "auto"
    compile: bool = False
    threads: int = 1
    readers: str = "threads"  # the full step's batch readers, resolved: "threads" or "processes"
    cuda_graphs: bool = False  # compiled: both steps' graphs replayed as CUDA graphs

    @classmethod
    def for_device(cls, torch_device: torch.device, **given) -> BenchSettings:
        """The issue's GPU target setting on CUDA (ResNet-34, 256 px, batch 256, compiled); a small one on the CPU.
        ``readers`` as training takes it (``auto`` by default)."""
        from hand3d.train import reads_in_processes

        cuda = torch_device.type == "cuda"
        given["readers"] = "processes" if reads_in_processes(given.get("readers") or "auto", cuda) else "threads"
        defaults = {
            "backbone": "resnet34" if cuda else "resnet18",
            "input_size": 256 if cuda else 128,
            "batch_size": 256 if cuda else 16,
            "steps": 50 if cuda else 16,  # 2 CPU cores, 4 steps: 23-36 img/s for one train step; 16: 35.8-37.5
            "samples": 2048 if cuda else 64,
            "compile": cuda,
            "threads": usable_cpus(),
        }
        return cls(**{**defaults, **{k: v for k, v in given.items() if v is not None}})


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which SLURM and cpusets narrow; a CPU quota does not show
    in it), not the whole machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def write_bench_dataset(path: str, hand_model: str, count: int, seed: int = 0, block: int = 128) -> None:
    """A packed file of ``count`` samples with consistent labels: hands near the mean pose drawn as masks and
    keypoints, noise images (pixel content does not change the timing)."""
    from hand3d.h5io import PackedWriter
    from hand3d.model import HandRegressor

    rng = np.random.default_rng(seed)
    model = HandRegressor(hand_model, backbone="resnet18")
    layout = model.layout
    with PackedWriter(path, source="bench", split="train", num_params=layout.size) as writer:
        for start in range(0, count, block):
            n = min(block, count - start)
            params = model.mean.repeat(n, 1)
            params[:, layout.translation] += torch.from_numpy(rng.normal(0, 15, (n, 2))).float()
            params[:, layout.pose] = torch.from_numpy(rng.normal(0, 1, (n, layout.num_pca))).float()
            with torch.no_grad():
                hand = model.decode(params)
            masks = np.zeros((n, 320, 320), np.uint8)
            for mask, vertices in zip(masks, hand.vertices_2d.numpy(), strict=True):
                cv2.fillConvexPoly(mask, cv2.convexHull(vertices.astype(np.int32)), 1)
            keypoints_2d = np.concatenate([hand.keypoints_2d.numpy(), np.ones((n, 21, 1), np.float32)], axis=2)
            writer.append(
                {
                    "images": rng.integers(0, 256, (n, 320, 320, 3), dtype=np.uint8),
                    "keypoints_2d": keypoints_2d,
                    "keypoints_3d": hand.keypoints_3d.numpy(),
                    "masks": masks,
                    "params": params.numpy(),
                    "names": [f"bench_{start + i}" for i in range(n)],
                }
            )


def bare_backbone_rate(
    settings: BenchSettings, device: torch.device, profiler: StepProfiler | None = None
) -> tuple[float, CompileCounts]:
    """Images/s of ResNet + linear head forward, backward and Adam on a batch already on the device, and what
    compiling its forward made. ``profiler`` (``skip=0``) records steps run after the timed ones."""
    from hand3d.model import build_backbone
    from hand3d.train import CUDA_GRAPH_MODE

    cuda = device.type == "cuda"
    net, features = build_backbone(settings.backbone, 3)
    model = nn.Sequential(net, nn.Linear(features, 22)).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    x = torch.randn(settings.batch_size, 3, settings.input_size, settings.input_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last) if cuda else x

    def loss() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            return model(x).float().square().mean()

    mode = CUDA_GRAPH_MODE if settings.compile and settings.cuda_graphs else None
    compiled_loss = torch.compile(loss, mode=mode) if settings.compile else loss

    def step() -> None:
        if mode is not None:
            torch.compiler.cudagraph_mark_step_begin()
        optimizer.zero_grad(set_to_none=True)
        value = compiled_loss()
        value.backward()
        optimizer.step()

    before = CompileCounts.now()
    for _ in range(settings.steps):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(settings.steps):
        step()
    _sync(device)
    rate = settings.steps * settings.batch_size / (time.perf_counter() - start)
    counts = CompileCounts.now() - before
    if profiler is not None:
        with profiler:
            for _ in range(PROFILE_WARMUP + PROFILED_STEPS):
                step()
                profiler.step()
            _sync(device)
    return rate, counts


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run_settings(settings: BenchSettings, stage: str, data: str, hand_model: str, extra: int = 0):
    """The training settings of the full step: ``2 * steps`` iterations, logged every ``steps``, and ``extra`` ones
    (to profile)."""
    from hand3d.train import Settings

    return Settings(
        stage=stage,
        hand_model=hand_model,
        datasets={data: 1.0},
        iterations=2 * settings.steps + extra,
        batch_size=settings.batch_size,
        backbone=settings.backbone,
        input_size=settings.input_size,
        device=settings.device,
        compile=settings.compile,
        threads=settings.threads,
        readers=settings.readers,
        cuda_graphs=settings.cuda_graphs,
        log_every=settings.steps,
        checkpoint_every=10 * settings.steps,
    )


def full_step_rate(
    settings: BenchSettings,
    stage: str,
    data: str,
    hand_model: str,
    workdir: Path,
    profiler: StepProfiler | None = None,
) -> tuple[float, float, CompileCounts]:
    """Images/s of the training loop itself and the ms a step waited for its batch, from the second logging
    interval of a ``2 * steps`` run, and what compiling its pieces made. ``profiler`` (``skip=2 * steps``) records
    steps the run makes after those."""
    from hand3d.train import train

    out = workdir / stage
    before = CompileCounts.now()
    extra = 0 if profiler is None else PROFILE_WARMUP + PROFILED_STEPS
    run_settings = _run_settings(settings, stage, data, hand_model, extra)
    paths = [str(out / name) for name in ("model.pt", "history.csv", "state")]
    if profiler is None:
        train(run_settings, *paths)
    else:
        with profiler:
            train(run_settings, *paths, after_step=profiler.step)
    compiled = CompileCounts.now() - before
    with open(out / "history.csv") as stream:
        timed = next(row for row in csv.DictReader(stream) if int(row["step"]) == 2 * settings.steps)
    return float(timed["images_per_s"]), float(timed["data_wait_ms"]), compiled


def data_path_rate(settings: BenchSettings, stage: str, data: str, hand_model: str, device: torch.device) -> float:
    """Images/s of the full step's batches alone: the same stream, readers and copies to the device as in training,
    nothing computed on them. The full step cannot beat it; well above the bare backbone, the data is not what
    holds a step back."""
    from hand3d.data import device_batches
    from hand3d.distributed import Processes
    from hand3d.train import batch_stream

    stream = batch_stream(_run_settings(settings, stage, data, hand_model), Processes(), 0, None, device.type == "cuda")
    batches = device_batches(stream, device)
    try:
        for _ in range(settings.steps):
            next(batches)
        _sync(device)
        start = time.perf_counter()
        for _ in range(settings.steps):
            next(batches)
        _sync(device)
        return settings.steps * settings.batch_size / (time.perf_counter() - start)
    finally:
        batches.close()
        stream.close()


def mano_sized_hand(path: str) -> None:
    """A procedural hand on a 9 mm grid: 736 vertices, about MANO's 778 (the pipeline's default hand has 6816)."""
    from hand3d.hand_model import save_hand_model
    from hand3d.procedural_hand import build_procedural_hand
    from hand3d.versions import HAND_MODEL

    arrays = build_procedural_hand(grid_spacing=MANO_SIZED_GRID_M)
    save_hand_model(path, arrays, source="procedural", source_md5="", generator_version=HAND_MODEL)


def bench_train(settings: BenchSettings, hand_model: str | None = None, profile_dir: str | None = None) -> list[dict]:
    """One row per stage (pretrain, train): full-step and bare-backbone images/s on the same device.

    ``hand_model``: the hand layer's npz; None builds :func:`mano_sized_hand` (the hand layer's cost grows with the
    vertex count, and the figure to compare with is MANO's). ``profile_dir``: also profile steps of the bare backbone
    and of each stage after its timed ones (:mod:`hand3d.step_profile`), writing ``<name>.trace.json.gz`` and
    ``<name>.ops.txt`` there; the rows get a ``profile`` and the bare one's, ``bare_profile``.
    """
    from hand3d.distributed import pick_device

    device = pick_device(settings.device)
    torch.set_num_threads(max(1, settings.threads))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if hand_model is None:
            hand_model = str(workdir / "MANO_RIGHT.npz")
            mano_sized_hand(hand_model)
        data = str(workdir / "bench.h5")
        write_bench_dataset(data, hand_model, settings.samples)
        profilers = _profilers(profile_dir, device, settings.steps)
        bare, bare_compiled = bare_backbone_rate(settings, device, profilers.get("bare"))
        run_wide = {"bare": bare, "bare_compiled": bare_compiled, "vertices": _vertex_count(hand_model)}
        rows = []
        for stage in ("pretrain", "train"):
            full, waited, compiled = full_step_rate(settings, stage, data, hand_model, workdir, profilers.get(stage))
            loaded = data_path_rate(settings, stage, data, hand_model, device)
            rows.append(
                {"stage": stage, "full": full, "data": loaded, "waited": waited, "compiled": compiled} | run_wide
            )
    if profilers:
        bare_profile = profilers["bare"].summary()
        rows = [row | {"profile": profilers[row["stage"]].summary(), "bare_profile": bare_profile} for row in rows]
    return rows


def _profilers(profile_dir: str | None, device: torch.device, steps: int) -> dict[str, StepProfiler]:
    """One per step measured: the bare backbone's records after its timed loop, each stage's after ``2 * steps``."""
    if profile_dir is None:
        return {}
    folder, cuda = Path(profile_dir), device.type == "cuda"
    folder.mkdir(parents=True, exist_ok=True)
    return {
        name: StepProfiler(folder / f"{name}.trace.json.gz", folder / f"{name}.ops.txt", cuda, skip)
        for name, skip in (("bare", 0), ("pretrain", 2 * steps), ("train", 2 * steps))
    }


def _vertex_count(hand_model: str) -> int:
    from hand3d.hand_model import load_hand_model_arrays

    return int(load_hand_model_arrays(hand_model)["v_template"].shape[0])


def _readers(settings: BenchSettings) -> str:
    """e.g. ``readers: 16 processes``, ``readers: 1 thread``."""
    kind = settings.readers if settings.threads > 1 else {"threads": "thread", "processes": "process"}[settings.readers]
    return f"readers: {settings.threads} {kind}"


def format_train_rows(rows: list[dict], settings: BenchSettings, device_name: str) -> str:
    graphs = settings.compile and settings.cuda_graphs
    lines = [
        f"hand3d bench train on {device_name}: {settings.backbone}, {settings.input_size} px, batch "
        f"{settings.batch_size}, {rows[0]['vertices']}-vertex hand, {settings.steps} timed steps"
        f"{', compiled' if settings.compile else ''}{', CUDA graphs' if graphs else ''}, {_readers(settings)}",
        f"{'stage':<10} {'full step img/s':>16} {'bare backbone img/s':>20} {'ratio':>6} {'data path img/s':>16} "
        f"{'data wait ms/step':>18}",
    ]
    for row in rows:
        ratio = row["full"] / row["bare"]
        lines.append(
            f"{row['stage']:<10} {row['full']:>16.1f} {row['bare']:>20.1f} {ratio:>6.3f} {row['data']:>16.1f} "
            f"{row['waited']:>18.2f}"
        )
    if settings.compile:
        pieces = [("bare backbone", rows[0]["bare_compiled"])] + [(row["stage"], row["compiled"]) for row in rows]
        lines.append("compiled: " + "; ".join(f"{name} {counts.summary(graphs)}" for name, counts in pieces))
        lines += [f"{name} graph breaks:\n{counts.reasons()}" for name, counts in pieces if counts.break_count]
    if "profile" in rows[0]:
        profiles = [("bare backbone", rows[0]["bare_profile"])] + [(row["stage"], row["profile"]) for row in rows]
        lines += _profile_lines(profiles)
    return "\n".join(lines)


def _profile_lines(profiles: list[tuple[str, StepProfile]]) -> list[str]:
    """The profiled steps, per step: wall time, the GPU's busy time and share of it, and the host's launches."""

    def figure(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        f"profiled, per step ({profiles[0][1].steps} steps after the timed ones):",
        f"{'step':<14} {'wall ms':>8} {'GPU busy ms':>12} {'GPU busy':>9} {'launches':>9} {'CUDA graph launches':>20}",
    ]
    for name, profile in profiles:
        lines.append(
            f"{name:<14} {profile.wall_ms:>8.2f} {figure(profile.device_busy_ms, 2):>12} "
            f"{figure(profile.device_busy, 3):>9} {figure(profile.launches, 1):>9} "
            f"{figure(profile.graph_launches, 1):>20}"
        )
    return lines


def train_rows_record(rows: list[dict], settings: BenchSettings, device_name: str) -> dict:
    """The run as data (``hand3d bench train --json``): the settings, the torch release, and per stage the rates, the
    ratio and, compiled, what :mod:`torch.compile` made of each step."""

    def compiled(counts: CompileCounts) -> dict | None:
        if not settings.compile:
            return None
        return {"graphs": counts.graphs, "breaks": counts.break_count, "without_cuda_graph": counts.cudagraph_skips}

    def profiled(profile: StepProfile | None) -> dict | None:
        return None if profile is None else profile.as_dict()

    stages = [
        {
            "stage": row["stage"],
            "full_step_img_s": row["full"],
            "bare_backbone_img_s": row["bare"],
            "ratio": row["full"] / row["bare"],
            "data_path_img_s": row["data"],
            "data_wait_ms_per_step": row["waited"],
            "compiled": compiled(row["compiled"]),
            "profile": profiled(row.get("profile")),
        }
        for row in rows
    ]
    return {
        "device": device_name,
        "torch": torch.__version__,
        "settings": asdict(settings),
        "vertices": rows[0]["vertices"],
        "bare_backbone_compiled": compiled(rows[0]["bare_compiled"]),
        "bare_backbone_profile": profiled(rows[0].get("bare_profile")),
        "stages": stages,
    }
