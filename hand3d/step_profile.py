"""Where a training step's time goes: a few steps recorded by torch.profiler (``hand3d bench train --profile DIR``).

:class:`StepProfiler` lets ``skip`` steps pass, then ``PROFILE_WARMUP`` more (the profiler's own start-up) and records
``PROFILED_STEPS``. It writes them as a Chrome trace (``.json.gz``; open it in https://ui.perfetto.dev) and a table of
the operators that took the most time. :func:`trace_summary` reads such a trace: the wall time of a step (its
``ProfilerStep#N`` span on the host), the time the GPU was busy in it (the union of its kernels, copies and memsets),
and the launches the host made (the runtime and driver calls that start a kernel or a CUDA graph). A step whose GPU is
busy for much less than its wall time waits on the host; one with hundreds of launches is a candidate for CUDA graphs.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from hand3d.atomic import atomic_write

__all__ = ["PROFILED_STEPS", "PROFILE_WARMUP", "StepProfile", "StepProfiler", "busy_ms", "trace_summary"]

PROFILE_WARMUP = 2
PROFILED_STEPS = 10
DEVICE_WORK = ("kernel", "gpu_memcpy", "gpu_memset")  # Kineto's trace categories of work on the GPU
HOST_CALLS = ("cuda_runtime", "cuda_driver")
STEP_NAME = re.compile(r"ProfilerStep#\d+$")
STEP_CATEGORY = "user_annotation"  # the host's span of a step; a GPU trace mirrors it as "gpu_user_annotation"


@dataclass(frozen=True)
class StepProfile:
    """Per recorded step; the GPU's figures are None in a trace without GPU work (a CPU run)."""

    steps: int
    wall_ms: float
    device_busy_ms: float | None
    launches: float | None  # kernel and CUDA-graph launches the host made
    graph_launches: float | None  # of which CUDA graphs

    @property
    def device_busy(self) -> float | None:
        """The fraction of a step's wall time the GPU was busy."""
        return None if self.device_busy_ms is None else self.device_busy_ms / self.wall_ms

    def as_dict(self) -> dict:
        return asdict(self) | {"device_busy": self.device_busy}


class StepProfiler:
    """``with StepProfiler(...) as profiler:`` around a loop that calls :meth:`step` after each step; it needs
    ``skip + PROFILE_WARMUP + PROFILED_STEPS`` steps. Then :meth:`summary` reads what it wrote."""

    def __init__(self, trace_path: str | os.PathLike, ops_path: str | os.PathLike, cuda: bool, skip: int = 0):
        self.trace_path, self.ops_path, self.cuda = Path(trace_path), Path(ops_path), cuda
        activities = [torch.profiler.ProfilerActivity.CPU]
        if cuda:
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        plan = torch.profiler.schedule(skip_first=skip, wait=0, warmup=PROFILE_WARMUP, active=PROFILED_STEPS, repeat=1)
        self._profile = torch.profiler.profile(activities=activities, schedule=plan, on_trace_ready=self._write)

    def __enter__(self) -> StepProfiler:
        self._profile.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._profile.__exit__(*exc)

    def step(self) -> None:
        self._profile.step()

    def _write(self, profile: torch.profiler.profile) -> None:
        atomic_write(self.trace_path, profile.export_chrome_trace)
        order = "self_device_time_total" if self.cuda else "self_cpu_time_total"
        table = profile.key_averages().table(sort_by=order, row_limit=25)
        atomic_write(self.ops_path, lambda tmp: Path(tmp).write_text(table + "\n", encoding="utf-8"))

    def summary(self) -> StepProfile:
        if not self.trace_path.exists():
            raise RuntimeError(f"{self.trace_path}: no trace; the loop ended before the profiled steps")
        return trace_summary(self.trace_path)


def busy_ms(intervals: Iterable[tuple[float, float]]) -> float:
    """The length of the union of ``(start_us, end_us)`` intervals, in ms: time covered by at least one."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total / 1000


def _is_step(event: dict) -> bool:
    return event.get("cat") == STEP_CATEGORY and "dur" in event and bool(STEP_NAME.match(str(event.get("name"))))


def trace_summary(path: str | os.PathLike) -> StepProfile:
    """Per-step figures of a torch.profiler Chrome trace (``.json`` or ``.json.gz``): see the module's docstring.
    Only the GPU work and launches that start within the recorded steps count."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as stream:
        events = json.load(stream)["traceEvents"]
    spans = [(e["ts"], e["ts"] + e["dur"]) for e in events if _is_step(e)]
    if not spans:
        raise ValueError(f"{path}: no ProfilerStep spans; not a trace of profiled steps")
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    inside = [e for e in events if "dur" in e and first <= e["ts"] <= last]
    work = [(e["ts"], e["ts"] + e["dur"]) for e in inside if e.get("cat") in DEVICE_WORK]
    calls = [e["name"] for e in inside if e.get("cat") in HOST_CALLS and "Launch" in e["name"]]
    steps = len(spans)
    wall = sum(end - start for start, end in spans) / 1000 / steps
    if not work and not calls:
        return StepProfile(steps, wall, None, None, None)
    graphs = sum("GraphLaunch" in name for name in calls)
    return StepProfile(steps, wall, busy_ms(work) / steps, len(calls) / steps, graphs / steps)
