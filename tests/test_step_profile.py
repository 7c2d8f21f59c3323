"""Profiles of training steps: the figures read from a trace, and which steps the bench times and which it records."""

from __future__ import annotations

import csv
import gzip
import json

import pytest
import torch

from hand3d.bench_train import BenchSettings, full_step_rate, write_bench_dataset
from hand3d.step_profile import PROFILE_WARMUP, PROFILED_STEPS, StepProfiler, busy_ms, trace_summary


def _span(name: str, start: float, duration: float, category: str) -> dict:
    return {"ph": "X", "cat": category, "name": name, "ts": start, "dur": duration, "pid": 0, "tid": 0}


def test_busy_time_is_the_union_of_the_intervals():
    assert busy_ms([]) == 0
    assert busy_ms([(3000, 3500), (0, 1000), (500, 1500), (3100, 3200)]) == pytest.approx(2.0)  # us in, ms out
    assert busy_ms([(0, 1000), (0, 1000)]) == pytest.approx(1.0)


def test_a_gpu_trace_gives_busy_time_and_launches_per_recorded_step(tmp_path):
    # Kineto's Chrome trace categories (libkineto's ActivityType names), timestamps and durations in us
    events = [
        _span("ProfilerStep#2", 1000, 1000, "user_annotation"),
        _span("ProfilerStep#3", 2000, 1000, "user_annotation"),
        _span("ProfilerStep#2", 1100, 600, "gpu_user_annotation"),  # the GPU's mirror of the host's span
        _span("aten::convolution", 1010, 50, "cpu_op"),
        _span("cudaLaunchKernel", 1020, 5, "cuda_runtime"),
        _span("cuLaunchKernel", 1030, 5, "cuda_driver"),  # Triton's kernels
        _span("cudaGraphLaunch", 2010, 5, "cuda_runtime"),
        _span("cudaMemcpyAsync", 2020, 5, "cuda_runtime"),  # not a launch
        _span("kernel_a", 1100, 400, "kernel"),
        _span("kernel_b", 1300, 400, "kernel"),  # overlaps kernel_a: busy 1100-1700
        _span("Memcpy HtoD (Pinned -> Device)", 2100, 100, "gpu_memcpy"),
        _span("Memset (Device)", 2300, 100, "gpu_memset"),
        _span("kernel_of_an_earlier_step", 500, 400, "kernel"),
        _span("cudaLaunchKernel", 600, 5, "cuda_runtime"),
    ]
    path = tmp_path / "trace.json"
    path.write_text(json.dumps({"traceEvents": events}))
    profile = trace_summary(path)
    assert (profile.steps, profile.wall_ms) == (2, pytest.approx(1.0))
    assert profile.device_busy_ms == pytest.approx(0.4)  # (600 + 100 + 100) us over 2 steps
    assert profile.device_busy == pytest.approx(0.4)
    assert (profile.launches, profile.graph_launches) == (pytest.approx(1.5), pytest.approx(0.5))


def test_a_trace_without_profiled_steps_is_named(tmp_path):
    path = tmp_path / "trace.json"
    path.write_text(json.dumps({"traceEvents": [_span("aten::add", 0, 5, "cpu_op")]}))
    with pytest.raises(ValueError, match=f"{path}: no ProfilerStep spans"):
        trace_summary(path)


def test_the_profiler_records_the_steps_after_those_it_skips_and_its_warmup(tmp_path):
    trace, ops = tmp_path / "loop.trace.json.gz", tmp_path / "loop.ops.txt"
    skip = 3
    with StepProfiler(trace, ops, cuda=False, skip=skip) as profiler:
        for step in range(skip + PROFILE_WARMUP + PROFILED_STEPS + 2):
            with torch.profiler.record_function(f"work#{step}"):
                torch.ones(64).cumsum(0)
            profiler.step()
    with gzip.open(trace, "rt") as stream:
        names = {event.get("name") for event in json.load(stream)["traceEvents"]}
    recorded = {name for name in names if str(name).startswith("work#")}
    first = skip + PROFILE_WARMUP
    assert recorded == {f"work#{step}" for step in range(first, first + PROFILED_STEPS)}
    profile = profiler.summary()
    assert profile.steps == PROFILED_STEPS and profile.wall_ms > 0
    assert (profile.device_busy_ms, profile.launches) == (None, None)  # no GPU in a CPU run
    assert "aten::cumsum" in ops.read_text()


def test_a_loop_that_ends_before_the_profiled_steps_leaves_no_trace_and_says_so(tmp_path):
    trace = tmp_path / "short.trace.json.gz"
    with StepProfiler(trace, tmp_path / "short.ops.txt", cuda=False, skip=5) as profiler:
        for _ in range(4):
            profiler.step()
    assert not trace.exists()
    with pytest.raises(RuntimeError, match=f"{trace}: no trace"):
        profiler.summary()


def test_the_bench_times_the_steps_before_those_it_profiles(tmp_path, hand_model_path):
    settings = BenchSettings(backbone="resnet18", input_size=64, batch_size=4, steps=2, samples=8, device="cpu")
    data = tmp_path / "bench.h5"
    write_bench_dataset(str(data), str(hand_model_path), settings.samples)
    profiler = StepProfiler(tmp_path / "p.trace.json.gz", tmp_path / "p.ops.txt", cuda=False, skip=2 * settings.steps)
    rate, _, _ = full_step_rate(settings, "pretrain", str(data), str(hand_model_path), tmp_path, profiler)
    with open(tmp_path / "pretrain/history.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(row["step"]) for row in rows] == list(range(2, 4 + PROFILE_WARMUP + PROFILED_STEPS + 1, 2))
    assert rate == float(rows[1]["images_per_s"])  # the timed interval (steps 3-4), not a profiled one
    assert profiler.summary().steps == PROFILED_STEPS
