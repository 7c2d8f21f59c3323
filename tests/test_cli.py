"""The hand3d command line, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hand3d.step_profile import trace_summary


def _hand3d(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hand3d.cli", *args], capture_output=True, text=True)


def test_mesh_writes_obj_and_keypoints(tmp_path, hand_model_path, procedural_arrays):
    obj, kp = tmp_path / "fist.obj", tmp_path / "fist.json"
    args = ("mesh", "--model", str(hand_model_path), "--pose", "2,0,0", "--out", str(obj), "--keypoints", str(kp))
    result = _hand3d(*args)
    assert result.returncode == 0, result.stderr
    lines = obj.read_text().splitlines()
    vertices = np.array([[float(x) for x in line.split()[1:]] for line in lines if line.startswith("v ")])
    faces = [line for line in lines if line.startswith("f ")]
    assert vertices.shape == procedural_arrays["v_template"].shape and len(faces) == len(procedural_arrays["f"])
    assert not np.allclose(vertices, procedural_arrays["v_template"], atol=1e-3), "the pose must change the mesh"
    keypoints = np.array(json.loads(kp.read_text())["keypoints_3d"])
    assert keypoints.shape == (21, 3)


@pytest.mark.parametrize(
    ("option", "values"), [("--rot", "1,2,3,4"), ("--rot", "1,2"), ("--betas", ",".join("1" * 11))]
)
def test_mesh_rejects_a_wrong_count_of_numbers(tmp_path, hand_model_path, option, values):
    result = _hand3d("mesh", "--model", str(hand_model_path), option, values, "--out", str(tmp_path / "x.obj"))
    assert result.returncode != 0 and not (tmp_path / "x.obj").exists()
    wanted = "3 numbers x,y,z, got" if option == "--rot" else "--betas takes at most 10 numbers, got 11"
    assert wanted in result.stderr


def test_output_into_a_closed_pipe_ends_quietly(hand_model_path):
    """`hand3d inspect ... | head -1`: the reader leaves before the JSON is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    command = [sys.executable, "-m", "hand3d.cli", "inspect", str(hand_model_path)]
    result = subprocess.run(command, stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    assert result.returncode == 1 and result.stderr == ""


def test_inspect_reports_statistics(hand_model_path):
    result = _hand3d("inspect", str(hand_model_path))
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["closed"] is True and stats["source"] == "procedural"
    assert 0.18 <= stats["hand_length_m"] <= 0.19


def test_missing_model_is_a_clear_error(tmp_path):
    result = _hand3d("inspect", str(tmp_path / "missing.npz"))
    assert result.returncode == 2 and "missing.npz" in result.stderr and "Traceback" not in result.stderr


def test_bench_render_reports_every_egl_device(hand_model_path):
    result = _hand3d("bench", "render", "--model", str(hand_model_path), "--count", "4")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line[:1].isdigit()]
    assert rows and ("llvmpipe" in result.stdout or "NVIDIA" in result.stdout)
    end_to_end, rasterise, ratio = (float(x) for x in rows[0].split()[-3:])
    assert end_to_end > 0 and rasterise > 0 and 0 < ratio <= 1.5


def test_bench_real_reports_every_stage(hand_model_path):
    result = _hand3d("bench", "real", "--model", str(hand_model_path), "--count", "3")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.endswith(" images/s")]
    rates = {line.rsplit(None, 2)[0].strip(): float(line.split()[-2]) for line in lines}
    assert set(rates) == {"index", "crop", "segment (GrabCut)", "heatmaps"} and min(rates.values()) > 0


def test_bench_train_reports_both_stages_their_ratio_data_path_and_the_compiled_graphs(tmp_path):
    args = ("--device", "cpu", "--batch-size", "4", "--steps", "2", "--samples", "8", "--input-size", "64")
    record = tmp_path / "bench.json"
    refused = _hand3d("bench", "train", *args, "--compile", "off", "--cuda-graphs", "on")
    assert refused.returncode == 2 and "--cuda-graphs on replays compiled graphs" in refused.stderr
    profiles = tmp_path / "profiles"
    result = _hand3d("bench", "train", *args, "--cuda-graphs", "on", "--json", str(record), "--profile", str(profiles))
    assert result.returncode == 0, result.stderr
    cpus = len(os.sched_getaffinity(0))  # the default threads
    header = "resnet18, 64 px, batch 4, 736-vertex hand, 2 timed steps, compiled, CUDA graphs, readers: "
    assert header + (f"{cpus} threads" if cpus > 1 else "1 thread") in result.stdout
    lines = result.stdout.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:4]}
    assert set(rows) == {"pretrain", "train"}
    for full, bare, ratio, data, waited in rows.values():
        f, b = float(full), float(bare)
        assert f > 0 and b > 0
        assert (f - 0.05) / (b + 0.05) - 5e-4 <= float(ratio) <= (f + 0.05) / (b - 0.05) + 5e-4  # rates rounded
        assert float(data) > float(full)  # the step reads its batches and computes on them
        assert 0 < float(waited) < 1000 * 4 / float(full)  # part of a step's time (ms; batch 4)
    # the bare forward is one graph; each stage compiles its augmentation and its objective, with no break; on the
    # CPU no graph gets the CUDA graph asked for
    want = (
        "compiled: bare backbone 1 graph, 0 breaks, 1 without CUDA graph; pretrain 2 graphs, 0 breaks, 2 without "
        "CUDA graph; train 2 graphs, 0 breaks, 2 without CUDA graph"
    )
    assert lines[4] == want
    # --profile: 10 steps after the timed ones of each step measured, and their traces
    assert lines[5:7] == [
        "profiled, per step (10 steps after the timed ones):",
        "step            wall ms  GPU busy ms  GPU busy  launches  CUDA graph launches",
    ]
    profiled = {line[:14].strip(): line[14:].split() for line in lines[7:10]}
    assert list(profiled) == ["bare backbone", "pretrain", "train"]
    assert all(figures[1:] == ["-"] * 4 for figures in profiled.values())  # no GPU here
    for stage, (full, bare, *_) in rows.items():  # steady steps, not the compiling ones (seconds each)
        assert 0.2 < float(profiled[stage][0]) / (1000 * 4 / float(full)) < 5
        assert 0.2 < float(profiled["bare backbone"][0]) / (1000 * 4 / float(bare)) < 5
    assert lines[10:] == [f"traces (open in https://ui.perfetto.dev) and operator tables in {profiles}"]
    for name in ("bare", "pretrain", "train"):
        assert trace_summary(profiles / f"{name}.trace.json.gz").steps == 10 and (profiles / f"{name}.ops.txt").exists()
    # --json: the same run as data, the figures printed above unrounded
    saved = json.loads(record.read_text())
    assert saved["settings"]["batch_size"] == 4 and saved["settings"]["cuda_graphs"] is True
    assert saved["bare_backbone_compiled"] == {"graphs": 1, "breaks": 0, "without_cuda_graph": 1}
    for stage in saved["stages"]:
        full, bare, ratio = rows[stage["stage"]][:3]
        assert f"{stage['full_step_img_s']:.1f}" == full and f"{stage['bare_backbone_img_s']:.1f}" == bare
        assert f"{stage['ratio']:.3f}" == ratio
        assert stage["compiled"] == {"graphs": 2, "breaks": 0, "without_cuda_graph": 2}
        assert f"{stage['profile']['wall_ms']:.2f}" == profiled[stage["stage"]][0]
    assert f"{saved['bare_backbone_profile']['wall_ms']:.2f}" == profiled["bare backbone"][0]
