"""Pretraining and training (DESIGN section 6): the loop, checkpoints, resume, DDP.

``stage="pretrain"``: synthetic crops, weighted L2 on the parameters. ``stage="train"``: real crops, 2D, 3D, mask
and regularisation terms, starting from the pretrained weights (``init``). Both: Adam, the learning rate multiplied
by ``lr_gamma`` every ``lr_step`` iterations, batches from :class:`hand3d.data.PackedBatches` augmented on the
device (:mod:`hand3d.augment`).

Speed on CUDA: bf16 autocast and channels_last for the encoder, batches read ahead by reader processes and copied
on a side stream, ``torch.compile`` of the augmentation and of the objective (one graph each), replayed as CUDA
graphs with ``cuda_graphs``; Adam is fused on every device. The loop never waits on the GPU except to log (every
``log_every`` steps) and to checkpoint: a test records, on the CPU, every operation that would
(:mod:`hand3d.host_sync`).

Resume: every ``checkpoint_every`` steps the state goes to ``state_dir`` (:mod:`hand3d.train_state`); a restarted
run with the same signature continues from there and, the data stream being a function of the step, computes what
the uninterrupted run would have. Under ``torchrun`` (``processes`` > 1) each process takes ``batch_size /
processes`` samples of every batch and rank 0 writes the files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from hand3d import versions
from hand3d.atomic import sweep_stale_temps
from hand3d.augment import AugmentConfig, augment_batch, unit_noise
from hand3d.compile_counts import CompileCounts
from hand3d.data import (
    PRETRAIN_FIELDS,
    TRAIN_FIELDS,
    PackedBatches,
    Source,
    all_have,
    device_batches,
)
from hand3d.distributed import Processes, close_processes, init_processes, pick_device, run_torchrun
from hand3d.losses import THREE_D_FORMS, PretrainWeights, TrainWeights
from hand3d.model import HandRegressor, read_checkpoint, save_model, state_mismatches
from hand3d.network_inputs import reads_heatmaps
from hand3d.objectives import PretrainObjective, TrainObjective
from hand3d.train_state import input_digest, load_state, save_state, signature, write_history

__all__ = ["STAGES", "Settings", "batch_stream", "launch", "train"]

STAGES = ("pretrain", "train")
READERS = ("auto", "threads", "processes")
CUDA_GRAPH_MODE = "reduce-overhead"  # torch.compile's mode that replays each compiled graph as a CUDA graph
TIMING_COLUMNS = ("images_per_s", "data_wait_ms")  # how fast a logging interval ran; the rest of a row is computed
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """Everything a run needs. The fields before ``device`` decide what is computed (they make the checkpoint
    signature; ``heatmap_sigma`` only for an RGB+2D run); ``device`` and the rest only decide how it runs."""

    stage: str
    hand_model: str
    datasets: dict[str, float]  # packed file -> relative share of each batch
    iterations: int
    batch_size: int
    lr: float = 1e-4
    lr_step: int = 10_000
    lr_gamma: float = 0.5
    backbone: str = "resnet34"
    inputs: str = "rgb"
    input_size: int = 256
    num_pca: int = 6
    imagenet_weights: str | None = None
    init: str | None = None
    three_d_form: str = "weak_perspective"
    loss_weights: dict = field(default_factory=dict)
    augment: dict = field(default_factory=dict)
    heatmap_sigma: float = 6.0  # crop pixels: of the packed heatmaps (real.heatmaps.sigma), and of those drawn here
    seed: int = 0
    log_every: int = 10  # steps per history row (the rows' means and the checkpoints' places depend on it)
    # how it runs
    device: str = "auto"
    compile: bool | str = "auto"  # torch.compile the step and augmentation; "auto": on CUDA
    threads: int = 1  # torch's CPU threads, and the batch readers
    readers: str = "auto"  # "threads" or "processes" (hand3d.reader_processes); "auto": processes on CUDA
    cuda_graphs: bool = False  # compiled on CUDA, one process: replay the step's kernels as CUDA graphs
    checkpoint_every: int = 100

    RUN_FIELDS = ("device", "compile", "threads", "readers", "cuda_graphs", "checkpoint_every")

    def __post_init__(self):
        problems = []
        if self.stage not in STAGES:
            problems.append(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.readers not in READERS:
            problems.append(f"readers must be one of {READERS}, got {self.readers!r}")
        if self.three_d_form not in THREE_D_FORMS:
            problems.append(f"three_d_form must be one of {THREE_D_FORMS}, got {self.three_d_form!r}")
        for name in ("iterations", "batch_size", "lr_step", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.datasets:
            problems.append("no datasets to train on")
        if problems:
            raise ValueError("; ".join(problems))

    def signature_fields(self) -> dict:
        """What the run computes: the settings that decide it, and the training code's version (a bumped
        ``versions.TRAINING`` must not resume, or finish from, a state the old code made)."""
        unread = (*self.RUN_FIELDS, *(() if reads_heatmaps(self.inputs) else ("heatmap_sigma",)))
        decided = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in unread}
        return {**decided, "code_version": versions.TRAINING}

    def input_digests(self, fields: list[str]) -> list[str]:
        """Digests of what the run reads: the ``fields`` of each packed file (heatmaps redrawn for another run
        leave this one's digest alone), the hand model, and the initial and ImageNet weights' files."""
        files = [self.hand_model, *(path for path in (self.init, self.imagenet_weights) if path)]
        return [input_digest(path, fields) for path in self.datasets] + [input_digest(path) for path in files]

    @classmethod
    def from_dict(cls, values: dict) -> Settings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}")
        return cls(**values)


# ---------------------------------------------------------------- building blocks


def build_model(settings: Settings) -> HandRegressor:
    """The network, initialised from ``settings.init`` (a pretrained model.pt) when given."""
    model = HandRegressor(
        settings.hand_model,
        backbone=settings.backbone,
        inputs=settings.inputs,
        input_size=settings.input_size,
        num_pca=settings.num_pca,
        weights_path=settings.imagenet_weights,
    )
    if settings.init:
        load_initial_weights(model, settings.init)
    return model


def load_initial_weights(model: HandRegressor, path: str) -> None:
    """Copy a saved model's encoder and head into ``model`` (``weights_only=True``).

    The backbone, input size and pose PCA size must match. A 3-channel first conv goes into a 24-channel one as its
    RGB filters, the heatmap filters staying zero (so an RGB pretraining starts an RGB+2D training). The hand model
    buffers stay the ones ``model`` was built with.
    """
    checkpoint = read_checkpoint(path)
    config = checkpoint["config"]
    for key in ("backbone", "input_size", "num_pca"):
        if config.get(key) != model.config[key]:
            raise ValueError(f"{path}: {key} is {config.get(key)!r}, this model's is {model.config[key]!r}")
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("hand.")}
    state = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("hand.")}
    conv = "backbone.conv1.weight"
    if conv in state and state[conv].shape[1] > own[conv].shape[1]:
        raise ValueError(f"{path}: its first conv takes {state[conv].shape[1]} channels, this model's "
                         f"{own[conv].shape[1]}: an RGB+2D model cannot start an RGB one")  # fmt: skip
    if conv in state and state[conv].shape[1] < own[conv].shape[1]:
        widened = torch.zeros_like(own[conv])
        widened[:, : state[conv].shape[1]] = state[conv]
        state[conv] = widened
    if problems := state_mismatches(own, state):
        raise ValueError(f"{path}: its weights do not fit this model: {problems}")
    model.load_state_dict(state, strict=False)


def _check_params(datasets: dict[str, float]) -> None:
    for path in datasets:
        with h5py.File(path, "r") as f:
            has = f["has_params"][:]
        if not has.all():
            raise ValueError(f"{path}: {int((~has).sum())} samples have no ground-truth params; pretraining needs them")


def _objective(settings: Settings, model: HandRegressor, device: torch.device) -> nn.Module:
    cuda = device.type == "cuda"
    weights = dict(settings.loss_weights)
    if settings.stage == "pretrain":
        return PretrainObjective(model, PretrainWeights(**weights), bf16=cuda, channels_last=cuda)
    return TrainObjective(model, TrainWeights(**weights), settings.three_d_form, bf16=cuda, channels_last=cuda)


def _heatmap_mode(settings: Settings) -> str | None:
    """Heatmaps for an RGB+2D model: the packed ones when every dataset has them, else drawn from the 2D labels."""
    if not reads_heatmaps(settings.inputs):
        return None
    return "stored" if all_have([Source(p) for p in settings.datasets], "heatmaps") else "render"


def read_fields(settings: Settings, heatmaps: str | None) -> list[str]:
    """The packed fields the run reads."""
    names = list(PRETRAIN_FIELDS if settings.stage == "pretrain" else TRAIN_FIELDS)
    return names + ["heatmaps"] if heatmaps == "stored" else names


def batch_stream(
    settings: Settings, processes: Processes, start_step: int, heatmaps: str | None, cuda: bool
) -> PackedBatches:
    """The run's batches, read by ``threads`` threads or as many processes (``readers``; on a GPU processes by
    default: they leave this process's GIL to the thread launching the GPU work, :mod:`hand3d.reader_processes`)."""
    if settings.batch_size % processes.world_size:
        raise ValueError(f"batch_size {settings.batch_size} does not split over {processes.world_size} processes")
    return PackedBatches(
        [Source(path, weight) for path, weight in settings.datasets.items()],
        settings.batch_size // processes.world_size,
        read_fields(settings, heatmaps),
        seed=settings.seed,
        rank=processes.rank,
        start_step=start_step,
        augment=AugmentConfig(**settings.augment),
        threads=settings.threads,
        processes=max(1, settings.threads) if reads_in_processes(settings.readers, cuda) else 0,
    )


# ---------------------------------------------------------------- the loop


@dataclass
class _Run:
    settings: Settings
    processes: Processes
    device: torch.device
    model: HandRegressor
    objective: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    signature: str
    heatmaps: str | None  # how an RGB+2D run gets its heatmaps (:func:`_heatmap_mode`); None for the others
    step: int = 0
    history: list = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return ["step", "lr", *self.objective.columns, *TIMING_COLUMNS]

    def state(self) -> dict:
        return {
            "signature": self.signature,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": self.history,
            "history_columns": self.columns,
        }

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # a state saved before data_wait_ms was logged has every other column
        saved = state.get("history_columns") or [c for c in self.columns if c != "data_wait_ms"]
        where = {name: i for i, name in enumerate(saved)}
        self.step = int(state["step"])
        self.history = [[row[where[c]] if c in where else math.nan for c in self.columns] for row in state["history"]]


def _prepare(settings: Settings, state_dir: Path) -> _Run:
    device = pick_device(settings.device, int(os.environ.get("LOCAL_RANK", "0")))
    processes = init_processes(device)
    torch.manual_seed(settings.seed)
    if settings.stage == "pretrain":
        _check_params(settings.datasets)
    model = build_model(settings).to(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        model = model.to(memory_format=torch.channels_last)
    objective = _objective(settings, model, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, fused=True)  # no per-tensor host reads
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, settings.lr_step, settings.lr_gamma)
    heatmaps = _heatmap_mode(settings)
    digests = settings.input_digests(read_fields(settings, heatmaps))
    sig = signature(settings.signature_fields(), digests, processes.world_size)
    run = _Run(settings, processes, device, model, objective, optimizer, scheduler, sig, heatmaps)
    state = load_state(state_dir, sig)
    if state is not None:
        run.restore(state)
    return run


def _step_function(run: _Run, mode: str | None):
    """The forward (loss terms) and backward of one step; DDP-wrapped and compiled (in ``mode``) as asked."""
    objective = run.objective
    if run.processes.distributed:
        ids = [run.device.index] if run.device.type == "cuda" else None
        objective = nn.parallel.DistributedDataParallel(objective, device_ids=ids)
    if _compiles(run):
        objective = torch.compile(objective, mode=mode)
    weights = run.objective.weights if isinstance(run.objective, TrainObjective) else None
    # on the device once, before the first step (a tensor made from a float is a copy the host waits for)
    mask_weights = {} if weights is None else {v: torch.tensor(v, device=run.device) for v in weights.mask_weights()}

    def step(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        run.optimizer.zero_grad(set_to_none=True)
        if weights is None:
            terms = objective(batch)
        else:
            terms = objective(batch, mask_weights[weights.mask_weight(run.step, run.settings.iterations)])
        terms[0].backward()
        run.optimizer.step()
        run.scheduler.step()
        return terms.detach()

    return step


def reads_in_processes(readers: str, cuda: bool) -> bool:
    """Whether ``readers`` (a :data:`READERS` value) means reader processes on this device."""
    return readers == "processes" or (readers == "auto" and cuda)


def _compiles(run: _Run) -> bool:
    wanted = run.settings.compile
    return run.device.type == "cuda" if wanted == "auto" else bool(wanted)


def _compile_mode(run: _Run) -> str | None:
    """:data:`CUDA_GRAPH_MODE` (each compiled graph's kernels replayed by one launch) when asked, compiled,
    in one process (DDP's gradient hooks run between the backward's kernels); else torch.compile's default.
    Inductor makes no CUDA graph of a graph that runs on the CPU, and counts it as skipped."""
    if not run.settings.cuda_graphs:
        return None
    if not _compiles(run) or run.processes.distributed:
        why = f"under DDP ({run.processes.world_size} processes)" if _compiles(run) else "without torch.compile"
        log.warning("cuda_graphs is ignored %s", why)
        return None
    return CUDA_GRAPH_MODE


def _warn_if_split(counts: CompileCounts, cuda_graphs: bool) -> None:
    """After the first compiled step: a graph break means the host launches pieces one by one every step, and so
    does a graph that CUDA graphs, asked for, skipped."""
    if counts.break_count:
        log.warning(
            "torch %s split the compiled training step into %s; on a GPU the step may wait on the host. "
            "Graph breaks:\n%s",
            torch.__version__,
            counts.summary(),
            counts.reasons(),
        )
    if cuda_graphs and counts.cudagraph_skips:
        log.warning(
            "torch %s made no CUDA graph of %d of the step's compiled graphs (TORCH_LOGS=cudagraphs says why)",
            torch.__version__,
            counts.cudagraph_skips,
        )


def _noise(run: _Run, generator: torch.Generator, batch_size: int) -> torch.Tensor:
    """The step's pixel noise, from ``generator`` reseeded with the step (so a resumed run draws the same noise)."""
    seed = np.random.SeedSequence([run.settings.seed, run.processes.rank, run.step]).generate_state(1)[0]
    generator.manual_seed(int(seed))
    return unit_noise(batch_size, run.settings.input_size, run.device, generator)


def _log_row(run: _Run, sums: torch.Tensor, count: int, seconds: float, waited: float) -> None:
    """The interval's mean loss terms, images/s and the ms a step waited for its batch (rank 0's)."""
    if run.processes.distributed:
        torch.distributed.all_reduce(sums)
        sums /= run.processes.world_size
    means = (sums / count).tolist()
    rate = count * run.settings.batch_size / max(seconds, 1e-9)
    run.history.append([run.step, run.scheduler.get_last_lr()[0], *means, rate, 1000 * waited / count])
    if not all(math.isfinite(v) for v in means):
        terms = dict(zip(run.objective.columns, means, strict=True))
        raise FloatingPointError(f"non-finite loss at step {run.step}: {terms}")


def _save_state(run: _Run, state_dir: Path) -> None:
    save_state(state_dir, run.state())
    write_history(state_dir / "history.csv", run.columns, run.history)


def _checkpoint(run: _Run, state_dir: Path) -> None:
    if run.processes.is_main:
        _save_state(run, state_dir)
    if run.processes.distributed:
        torch.distributed.barrier()


def _loop(run: _Run, state_dir: Path, after_step: Callable[[], object] | None) -> None:
    settings, heatmaps = run.settings, run.heatmaps
    stream = batch_stream(settings, run.processes, run.step, heatmaps, run.device.type == "cuda")
    mode = _compile_mode(run)
    step_fn = _step_function(run, mode)
    augment = torch.compile(augment_batch, mode=mode) if _compiles(run) else augment_batch
    batches = device_batches(stream, run.device)
    try:
        _steps(run, state_dir, batches, step_fn, augment, heatmaps, mode is not None, after_step)
    finally:
        batches.close()
        stream.close()


def _steps(run: _Run, state_dir: Path, batches, step_fn, augment, heatmaps, graphed: bool, after_step) -> None:
    settings = run.settings
    sums = torch.zeros(len(run.objective.columns), device=run.device)
    count, waited, start = 0, 0.0, time.perf_counter()
    progress = tqdm(
        total=settings.iterations,
        initial=run.step,
        desc=settings.stage,
        disable=not run.processes.is_main,
        mininterval=1 if sys.stderr.isatty() else 30,
    )
    run.model.train()
    generator = torch.Generator(run.device)
    before_compiling = CompileCounts.now() if _compiles(run) else None
    saved_at = run.step
    while run.step < settings.iterations:
        asked = time.perf_counter()
        loaded = next(batches)
        waited += time.perf_counter() - asked
        if graphed:  # the last step's graph outputs are dead: the replay may overwrite them
            torch.compiler.cudagraph_mark_step_begin()
        noise = _noise(run, generator, loaded["images"].shape[0])
        batch = augment(loaded, settings.input_size, heatmaps, settings.heatmap_sigma, noise)
        sums += step_fn(batch)
        if before_compiling is not None:
            _warn_if_split(CompileCounts.now() - before_compiling, run.device.type == "cuda" and graphed)
            before_compiling = None
        run.step += 1
        count += 1
        progress.update()
        if after_step is not None:
            after_step()
        if run.step % settings.log_every and run.step < settings.iterations:
            continue
        _log_row(run, sums, count, time.perf_counter() - start, waited)
        progress.set_postfix(loss=f"{run.history[-1][2]:.4g}")
        sums.zero_()
        count, waited, start = 0, 0.0, time.perf_counter()
        # At the first row's end from each checkpoint_every steps on: a state holds whole rows, so a resumed run
        # logs what an uninterrupted one does.
        due = run.step // settings.checkpoint_every > saved_at // settings.checkpoint_every
        if due and run.step < settings.iterations:
            _checkpoint(run, state_dir)
            saved_at = run.step
    progress.close()


def train(
    settings: Settings,
    model_out: str,
    history_out: str,
    state_dir: str,
    after_step: Callable[[], object] | None = None,
) -> None:
    """Run (or resume) training to ``settings.iterations`` steps; write ``model_out`` and ``history_out``.
    ``after_step`` is called after every step (e.g. a profiler's ``step``)."""
    state_dir = Path(state_dir)
    for folder in {state_dir, Path(model_out).parent, Path(history_out).parent}:
        sweep_stale_temps(folder)  # what a killed run's writes left (a state is as large as the model, twice over)
    torch.set_num_threads(max(1, settings.threads))
    run = _prepare(settings, state_dir)
    try:
        if run.step < settings.iterations:
            _loop(run, state_dir, after_step)
        if run.processes.is_main:
            write_history(history_out, run.columns, run.history)
            meta = {"stage": settings.stage, "iterations": run.step, "signature": run.signature}
            if reads_heatmaps(settings.inputs):  # prediction draws its input heatmaps as training saw them
                meta["heatmap_sigma"] = settings.heatmap_sigma
            save_model(model_out, run.model, meta)
            # The finished state stays: a rerun with the same signature rewrites the outputs without training again.
            _save_state(run, state_dir)
    finally:
        close_processes(run.processes)


# ---------------------------------------------------------------- launching


def launch(settings: Settings, model_out: str, history_out: str, state_dir: str, processes: int = 1) -> None:
    """Train in this process, or in ``processes`` processes under ``torchrun`` (DDP)."""
    if processes <= 1:
        train(settings, model_out, history_out, state_dir)
        return
    if settings.batch_size % processes:
        raise ValueError(f"batch_size {settings.batch_size} does not split over {processes} processes")
    job = Path(state_dir) / "job.json"
    job.parent.mkdir(parents=True, exist_ok=True)
    child = {**asdict(settings), "threads": max(1, settings.threads // processes)}
    record = {"settings": child, "model": model_out, "history": history_out, "state_dir": state_dir}
    job.write_text(json.dumps(record, indent=1))
    run_torchrun("hand3d.train", [str(job)], processes)


def _main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    record = json.loads(Path(argv[0]).read_text())
    train(Settings.from_dict(record["settings"]), record["model"], record["history"], record["state_dir"])
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
