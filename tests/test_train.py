"""Pretraining and training on CPU: the loss falls, a killed run resumes exactly, DDP with 2 gloo processes."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from hand3d.atomic import _host
from hand3d.augment import augment_batch, unit_noise
from hand3d.data import PRETRAIN_FIELDS, TRAIN_FIELDS, PackedBatches, Source
from hand3d.host_sync import HostSyncs, describe
from hand3d.losses import PretrainWeights, TrainWeights, training_loss
from hand3d.model import HandRegressor, load_model
from hand3d.objectives import PretrainObjective, TrainObjective
from hand3d.train import Settings, launch, load_initial_weights, read_fields, train


def _settings(hand_model_path, packed, **overrides) -> Settings:
    values = dict(
        stage="pretrain",
        hand_model=str(hand_model_path),
        datasets={str(packed): 1.0},
        iterations=30,
        batch_size=4,
        backbone="resnet18",
        input_size=64,
        lr=1e-3,
        threads=1,
        log_every=5,
        checkpoint_every=5,
    )
    return Settings(**{**values, **overrides})


def _history(path: Path) -> list[dict]:
    with open(path) as stream:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(stream)]


def _run(settings: Settings, folder: Path) -> tuple[Path, list[dict]]:
    train(settings, str(folder / "model.pt"), str(folder / "history.csv"), str(folder / "state"))
    return folder / "model.pt", _history(folder / "history.csv")


def test_pretraining_loss_falls_and_the_model_reloads(hand_model_path, synthetic_packed, tmp_path):
    model_path, rows = _run(_settings(hand_model_path, synthetic_packed), tmp_path)
    assert [r["step"] for r in rows] == [5, 10, 15, 20, 25, 30]
    assert rows[-1]["total"] < 0.7 * rows[0]["total"], rows
    for row in rows:  # the ms a step waited for its batch: part of the step's time (batch 4)
        assert 0 < row["data_wait_ms"] < 1000 * 4 / row["images_per_s"], row
    checkpoint = torch.load(model_path, weights_only=True)
    assert checkpoint["meta"]["stage"] == "pretrain" and checkpoint["meta"]["iterations"] == 30
    model = load_model(model_path)
    images = torch.zeros(2, 3, 320, 320, dtype=torch.uint8)
    assert model(images).vertices.shape[0] == 2


def test_reader_processes_train_exactly_as_reader_threads(hand_model_path, synthetic_packed, tmp_path):
    """The readers on a GPU by default, run here: the same batches, so the same losses, bit for bit."""
    settings = _settings(hand_model_path, synthetic_packed, stage="train", iterations=4, log_every=2, threads=2)
    _, threaded = _run(replace(settings, readers="threads"), tmp_path / "threads")
    _, forked = _run(replace(settings, readers="processes"), tmp_path / "processes")
    columns = ("total", "keypoints_2d", "keypoints_3d", "mask", "regularisation")
    assert [[row[c] for c in columns] for row in threaded] == [[row[c] for c in columns] for row in forked]
    with pytest.raises(ValueError, match="readers must be one of"):
        replace(settings, readers="fibres")


@pytest.mark.parametrize("inputs", ["rgb", "rgb+2d"])
def test_training_from_pretrained_weights_lowers_the_2d_error(hand_model_path, synthetic_packed, tmp_path, inputs):
    pretrained, _ = _run(_settings(hand_model_path, synthetic_packed, iterations=10), tmp_path / "pre")
    weights = {"mask_decay_start": 1.0}  # one mask weight throughout: the total is comparable over the run
    settings = _settings(
        hand_model_path, synthetic_packed, stage="train", init=str(pretrained), inputs=inputs, loss_weights=weights
    )
    model_path, rows = _run(replace(settings, heatmap_sigma=4.0), tmp_path / "train")
    assert rows[-1]["total"] < rows[0]["total"], rows
    assert rows[-1]["error_2d_px"] < rows[0]["error_2d_px"], rows
    meta = load_model(model_path).meta  # prediction draws the heatmaps of an RGB+2D model with its sigma
    assert meta.get("heatmap_sigma") == (4.0 if inputs == "rgb+2d" else None), meta


def test_a_state_saved_before_data_wait_was_logged_still_resumes(hand_model_path, synthetic_packed, tmp_path):
    settings = _settings(hand_model_path, synthetic_packed, iterations=4, log_every=2)
    _, rows = _run(settings, tmp_path)
    state_file = tmp_path / "state/state.pt"
    state = torch.load(state_file, weights_only=True)
    where = state.pop("history_columns").index("data_wait_ms")
    state["history"] = [row[:where] + row[where + 1 :] for row in state["history"]]
    torch.save(state, state_file)
    _, again = _run(settings, tmp_path)  # finished: the outputs are rewritten from the state
    assert [{k: v for k, v in row.items() if k != "data_wait_ms"} for row in again] == [
        {k: v for k, v in row.items() if k != "data_wait_ms"} for row in rows
    ]
    assert all(math.isnan(row["data_wait_ms"]) for row in again)


def test_pretrained_rgb_filters_start_an_rgb_2d_model(hand_model_path, synthetic_packed, tmp_path):
    pretrained, _ = _run(_settings(hand_model_path, synthetic_packed, iterations=5), tmp_path)
    source = load_model(pretrained)
    from hand3d.model import HandRegressor

    target = HandRegressor(hand_model_path, backbone="resnet18", inputs="rgb+2d", input_size=64)
    load_initial_weights(target, str(pretrained))
    conv = target.backbone.conv1.weight
    assert torch.equal(conv[:, :3], source.backbone.conv1.weight) and not conv[:, 3:].any()
    assert torch.equal(target.head.weight, source.head.weight)
    wrong = HandRegressor(hand_model_path, backbone="resnet34", input_size=64)
    with pytest.raises(ValueError, match="backbone"):
        load_initial_weights(wrong, str(pretrained))
    wide = tmp_path / "rgb_2d.pt"
    torch.save({"state_dict": target.state_dict(), "config": target.config}, wide)
    rgb = HandRegressor(hand_model_path, backbone="resnet18", input_size=64)
    with pytest.raises(ValueError, match="rgb_2d.pt: its first conv takes 24 channels, this model's 3"):
        load_initial_weights(rgb, str(wide))
    checkpoint = torch.load(pretrained, weights_only=True)
    del checkpoint["state_dict"]["head.bias"]
    torch.save(checkpoint, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"partial.pt: its weights do not fit this model: missing keys \['head.bias"):
        load_initial_weights(rgb, str(tmp_path / "partial.pt"))


def test_pretraining_refuses_data_without_parameters(hand_model_path, synthetic_packed, tmp_path):
    from hand3d.h5io import PackedWriter, read_samples

    real = tmp_path / "real.h5"
    with PackedWriter(real, source="real", split="train", num_params=22) as writer:
        writer.append(read_samples(synthetic_packed, range(4), ["images", "keypoints_2d", "names"]))
    with pytest.raises(ValueError, match="real.h5.*no ground-truth params"):
        _run(_settings(hand_model_path, real), tmp_path / "run")


def _job(settings: Settings, folder: Path) -> list[str]:
    folder.mkdir(parents=True)
    record = {
        "settings": asdict(settings),
        "model": str(folder / "model.pt"),
        "history": str(folder / "history.csv"),
        "state_dir": str(folder / "state"),
    }
    (folder / "job.json").write_text(json.dumps(record))
    return [sys.executable, "-m", "hand3d.train", str(folder / "job.json")]


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_weights(hand_model_path, synthetic_packed, tmp_path):
    # the learning rate halves every 7 steps: a resumed run must carry on the schedule where it was
    settings = _settings(hand_model_path, synthetic_packed, iterations=30, checkpoint_every=5, lr_step=7, lr_gamma=0.5)
    subprocess.run(_job(settings, tmp_path / "whole"), check=True, capture_output=True)
    lrs = [row["lr"] for row in _history(tmp_path / "whole/history.csv")]
    assert lrs == pytest.approx([1e-3 * 0.5 ** (step // 7) for step in (5, 10, 15, 20, 25, 30)])
    command = _job(settings, tmp_path / "killed")
    state = tmp_path / "killed/state/state.pt"
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not state.exists() and child.poll() is None:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed_at = torch.load(state, weights_only=True)["step"]
    assert 5 <= killed_at < 30, "the kill must land mid-run"
    assert not (tmp_path / "killed/model.pt").exists()
    # what a kill during the next checkpoint's write leaves: the rerun removes it
    (state.parent / f".state.pt~{_host()}~{child.pid}~k1lled_0.pt").write_bytes(b"half a state")
    resumed = subprocess.run(command, check=True, capture_output=True, text=True)
    assert f"resuming at step {killed_at}" in resumed.stderr
    assert sorted(p.name for p in state.parent.iterdir()) == ["history.csv", "state.pt"]
    whole = torch.load(tmp_path / "whole/model.pt", weights_only=True)["state_dict"]
    again = torch.load(tmp_path / "killed/model.pt", weights_only=True)["state_dict"]
    for name, tensor in whole.items():
        assert torch.equal(tensor, again[name]), name
    assert (tmp_path / "whole/model.pt").read_bytes() == (tmp_path / "killed/model.pt").read_bytes()
    assert (
        _history(tmp_path / "whole/history.csv")[-1]["total"] == _history(tmp_path / "killed/history.csv")[-1]["total"]
    )


def test_history_rows_are_the_means_of_their_steps(hand_model_path, synthetic_packed, tmp_path):
    settings = _settings(hand_model_path, synthetic_packed, stage="train", iterations=6, log_every=1, compile=False)
    _, each = _run(settings, tmp_path / "each")
    _, grouped = _run(replace(settings, log_every=3), tmp_path / "grouped")
    assert [row["step"] for row in grouped] == [3, 6]
    for row, steps in zip(grouped, (each[:3], each[3:]), strict=True):
        for column in ("total", "keypoints_2d", "mask", "error_2d_px"):
            assert row[column] == pytest.approx(sum(s[column] for s in steps) / 3, rel=1e-5), column


def test_pixel_noise_is_drawn_anew_each_step_and_again_on_resume():
    from types import SimpleNamespace

    from hand3d.train import _noise

    def noise(step: int, rank: int = 0) -> torch.Tensor:
        run = SimpleNamespace(
            settings=SimpleNamespace(seed=0, input_size=8), processes=SimpleNamespace(rank=rank), step=step,
            device=torch.device("cpu"),
        )  # fmt: skip
        return _noise(run, torch.Generator(), 2)

    assert torch.equal(noise(3), noise(3))  # a resumed run draws the same noise
    assert not torch.equal(noise(3), noise(4)) and not torch.equal(noise(3), noise(3, rank=1))


def test_a_state_file_carrying_pickled_code_is_ignored_unrun(tmp_path, caplog):
    from hand3d.train_state import STATE_FILE, load_state

    class Trap:  # unpickled, it would create the marker: a stand-in for code a crafted file runs
        def __reduce__(self):
            return Path.touch, (tmp_path / "ran",)

    torch.save({"signature": "s", "step": 3, "trap": Trap()}, tmp_path / STATE_FILE)
    assert load_state(tmp_path, "s") is None
    assert not (tmp_path / "ran").exists() and "unreadable training state" in caplog.text


def test_a_save_that_fails_midway_keeps_the_last_state(tmp_path):
    from hand3d.train_state import STATE_FILE, load_state, save_state

    save_state(tmp_path, {"signature": "s", "step": 3, "weights": torch.ones(1000)})
    with pytest.raises(Exception, match="pickle"):  # torch.save has written the weights when it meets the lambda
        save_state(tmp_path, {"signature": "s", "step": 6, "weights": torch.zeros(1000), "hook": lambda: None})
    assert load_state(tmp_path, "s")["step"] == 3 and os.listdir(tmp_path) == [STATE_FILE]


def test_checkpoints_hold_whole_history_rows(hand_model_path, synthetic_packed, tmp_path, monkeypatch):
    """A state saved mid-row would lose that row's first steps on resume: checkpoints wait for the row's end."""
    import hand3d.train as train_module

    saved = []
    real_save = train_module._save_state

    def save_and_note(run, state_dir):
        saved.append((run.step, run.history[-1][0] if run.history else None))
        real_save(run, state_dir)

    monkeypatch.setattr(train_module, "_save_state", save_and_note)
    _run(_settings(hand_model_path, synthetic_packed, iterations=16, log_every=4, checkpoint_every=6), tmp_path)
    assert saved == [(8, 8), (12, 12), (16, 16)]  # due at 6 and 12, at the rows' ends; then the finished state


def test_a_checkpoint_from_other_settings_is_not_reused(hand_model_path, synthetic_packed, tmp_path, caplog):
    settings = _settings(hand_model_path, synthetic_packed, iterations=10)
    _run(settings, tmp_path)
    first = torch.load(tmp_path / "model.pt", weights_only=True)["meta"]["signature"]
    caplog.set_level("INFO")
    _run(replace(settings, checkpoint_every=2, threads=2), tmp_path)  # how it runs: the finished state is reused
    assert "resuming at step 10" in caplog.text
    caplog.clear()
    _, rows = _run(replace(settings, log_every=2), tmp_path)  # the history's rows are what it computes
    assert "starting afresh" in caplog.text and [r["step"] for r in rows] == [2, 4, 6, 8, 10]
    caplog.clear()
    _, rows = _run(replace(settings, lr=5e-4), tmp_path)
    assert "other settings or inputs; starting afresh" in caplog.text
    assert [r["step"] for r in rows] == [5, 10]
    assert torch.load(tmp_path / "model.pt", weights_only=True)["meta"]["signature"] != first


def test_every_setting_that_decides_the_run_is_in_its_signature(hand_model_path, synthetic_packed):
    """A field added to Settings and left out of the signature would let a changed run finish from an old state."""
    from dataclasses import fields

    from hand3d.train_state import signature

    base = _settings(hand_model_path, synthetic_packed, stage="train", inputs="rgb+2d")
    other = {
        "stage": "pretrain", "hand_model": "other.npz", "datasets": {"other.h5": 1.0}, "iterations": 31,
        "batch_size": 8, "lr": 2e-3, "lr_step": 7, "lr_gamma": 0.1, "backbone": "resnet34", "inputs": "rgb",
        "input_size": 96, "num_pca": 12, "imagenet_weights": "w.pth", "init": "init.pt",
        "three_d_form": "normalized", "loss_weights": {"mask": 1.0}, "augment": {"zoom": 0.0}, "heatmap_sigma": 3.0,
        "seed": 1, "log_every": 6,
    }  # fmt: skip
    decided = [f.name for f in fields(Settings) if f.name not in Settings.RUN_FIELDS]
    assert sorted(other) == sorted(decided), "give the new field another value here"
    for name, value in other.items():
        assert replace(base, **{name: value}).signature_fields() != base.signature_fields(), name
    for name in Settings.RUN_FIELDS:  # how it runs: the same signature
        value = {"device": "cpu", "compile": True, "threads": 2, "readers": "processes", "cuda_graphs": True}
        changed = replace(base, **{name: value.get(name, 999)})
        assert changed.signature_fields() == base.signature_fields(), name
    # an RGB run reads no heatmaps: their sigma is not part of what it computes
    rgb = replace(base, inputs="rgb")
    assert replace(rgb, heatmap_sigma=3.0).signature_fields() == rgb.signature_fields()
    # nor is the number of processes a setting, but it splits each batch: part of the signature
    assert signature(base.signature_fields(), ["d"], 1) != signature(base.signature_fields(), ["d"], 2)


def test_the_signature_digests_imagenet_weights_and_lists_the_fields_read(hand_model_path, synthetic_packed, tmp_path):
    weights = tmp_path / "resnet18.pth"
    weights.write_bytes(b"first")
    settings = _settings(hand_model_path, synthetic_packed, imagenet_weights=str(weights))
    before = settings.input_digests(read_fields(settings, None))
    weights.write_bytes(b"second")  # the same path, other weights: pretraining starts from other filters
    assert settings.input_digests(read_fields(settings, None)) != before
    assert read_fields(settings, None) == ["images", "params", "keypoints_2d"]
    assert read_fields(replace(settings, stage="train", inputs="rgb+2d"), "stored")[-1] == "heatmaps"


def test_a_new_training_code_version_does_not_reuse_the_finished_state(
    hand_model_path, synthetic_packed, tmp_path, caplog, monkeypatch
):
    from hand3d import versions

    settings = _settings(hand_model_path, synthetic_packed, iterations=4)
    _run(settings, tmp_path)
    caplog.set_level("INFO")
    monkeypatch.setattr(versions, "TRAINING", versions.TRAINING + 1)  # what a bump in versions.py does
    _, rows = _run(settings, tmp_path)
    assert "starting afresh" in caplog.text and "resuming" not in caplog.text
    assert [r["step"] for r in rows] == [4]


def test_ddp_with_two_cpu_processes(hand_model_path, synthetic_packed, tmp_path, capfd):
    settings = _settings(hand_model_path, synthetic_packed, iterations=6, batch_size=4, threads=2, log_every=3)
    launch(settings, str(tmp_path / "model.pt"), str(tmp_path / "history.csv"), str(tmp_path / "state"), processes=2)
    rows = _history(tmp_path / "history.csv")
    assert [r["step"] for r in rows] == [3, 6]
    model = load_model(tmp_path / "model.pt")
    assert model.config["backbone"] == "resnet18"
    with pytest.raises(ValueError, match="does not split over 2 processes"):
        launch(replace(settings, batch_size=5), str(tmp_path / "m.pt"), str(tmp_path / "h.csv"), str(tmp_path / "s"), 2)


@pytest.mark.parametrize(("stage", "inputs"), [("pretrain", "rgb"), ("train", "rgb"), ("train", "rgb+2d")])
def test_training_steps_never_make_the_host_wait(hand_model_path, synthetic_packed, tmp_path, stage, inputs):
    """What the loop reads back from the device (``.item()``, list[tensor], data-dependent shapes, ...) stalls a GPU
    every step. Recorded here on the CPU (:class:`hand3d.host_sync.HostSyncs`): two more steps must add none."""
    counts = []
    for iterations in (2, 4):
        settings = _settings(
            hand_model_path, synthetic_packed, stage=stage, inputs=inputs, iterations=iterations, compile=False
        )
        settings = replace(settings, log_every=100, checkpoint_every=100)
        with HostSyncs() as syncs:
            _run(settings, tmp_path / f"{iterations}")
        counts.append(syncs.counts)
    assert not counts[1] - counts[0], describe(counts[1] - counts[0])


@pytest.mark.parametrize(
    ("inputs", "form", "as_on_cuda"), [("rgb", "normalized", False), ("rgb+2d", "weak_perspective", True)]
)
def test_training_objective_compiles_to_one_graph(hand_model_path, synthetic_packed, inputs, form, as_on_cuda):
    """Each graph break costs the host a guard check and separate launches every step (smplx's kinematic chain
    split it into 9 before :class:`hand3d.hand_layer.KinematicTree`, and torch 2.11 into 9 again while the tree was a
    tuple subclass). ``as_on_cuda``: bf16 autocast and channels_last, as the objective runs on a GPU."""
    model = HandRegressor(hand_model_path, backbone="resnet18", inputs=inputs, input_size=64)
    if as_on_cuda:
        model = model.to(memory_format=torch.channels_last)
    objective = TrainObjective(model, TrainWeights(), form, bf16=as_on_cuda, channels_last=as_on_cuda)
    loaded = PackedBatches([Source(str(synthetic_packed))], 4, TRAIN_FIELDS, seed=0).batch(0)
    batch = augment_batch(loaded, 64, "render" if inputs == "rgb+2d" else None)
    explained = torch._dynamo.explain(objective)(batch, torch.tensor(100.0))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons[:2]


@pytest.mark.parametrize("form", ["weak_perspective", "normalized_nodetach"])
def test_training_objective_gives_the_terms_of_its_form_and_the_2d_error_of_visible_keypoints(
    hand_model_path, synthetic_packed, form
):
    model = HandRegressor(hand_model_path, backbone="resnet18", inputs="rgb", input_size=64).eval()
    loaded = PackedBatches([Source(str(synthetic_packed))], 4, TRAIN_FIELDS, seed=0).batch(0)
    batch = augment_batch(loaded, 64, None)
    batch["keypoints_2d"][:, ::2, 2] = 0  # every other keypoint hidden
    batch["has_3d"][:] = True
    objective = TrainObjective(model, TrainWeights(), form)
    with torch.no_grad():
        got = dict(zip(objective.columns, objective(batch, torch.tensor(100.0)).tolist(), strict=True))
        prediction = model.decode(model.regress(batch["images"]))
    want = training_loss(prediction, batch, TrainWeights(), form, mask_weight=100.0)
    for name in ("keypoints_2d", "keypoints_3d", "mask", "regularisation", "total"):
        assert got[name] == pytest.approx(float(want[name]), rel=1e-4), name
    other_form = "normalized" if form == "weak_perspective" else "weak_perspective"
    other = training_loss(prediction, batch, TrainWeights(), other_form, mask_weight=100.0)["keypoints_3d"]
    assert got["keypoints_3d"] != pytest.approx(float(other), rel=1e-2)
    visible = batch["keypoints_2d"][..., 2] > 0
    distance = (prediction.keypoints_2d - batch["keypoints_2d"][..., :2]).norm(dim=-1)
    assert got["error_2d_px"] == pytest.approx(float(distance[visible].mean()), rel=1e-4)
    assert got["error_2d_px"] != pytest.approx(float(distance.mean()), rel=1e-3)


def test_cuda_graphs_without_compiling_are_ignored_with_a_warning(hand_model_path, synthetic_packed, tmp_path, caplog):
    settings = _settings(hand_model_path, synthetic_packed, iterations=2, compile=False, cuda_graphs=True)
    with caplog.at_level(logging.WARNING, logger="hand3d.train"):
        _run(settings, tmp_path)
    assert "cuda_graphs is ignored without torch.compile" in caplog.text


def test_the_compiled_pieces_write_into_none_of_their_inputs(hand_model_path, synthetic_packed):
    """torch makes no CUDA graph of a compiled graph that writes into an input other than a parameter or buffer."""
    loaded = PackedBatches([Source(str(synthetic_packed))], 4, TRAIN_FIELDS, seed=0).batch(0)
    noise = unit_noise(4, 64, torch.device("cpu"), torch.Generator().manual_seed(0))
    versions = [tensor._version for tensor in (*loaded.values(), noise)]  # each in-place write adds 1
    batch = augment_batch(loaded, 64, "render", 6.0, noise)
    model = HandRegressor(hand_model_path, backbone="resnet18", inputs="rgb+2d", input_size=64)
    mask_weight = torch.tensor(100.0)
    versions += [tensor._version for tensor in (*batch.values(), mask_weight)]
    TrainObjective(model, TrainWeights(), "weak_perspective")(batch, mask_weight)[0].backward()
    inputs = (*loaded.values(), noise, *batch.values(), mask_weight)
    assert [tensor._version for tensor in inputs] == versions


@pytest.mark.parametrize(("stage", "inputs"), [("pretrain", "rgb"), ("train", "rgb+2d")])
def test_the_compiled_graphs_hold_nothing_a_cuda_graph_refuses(hand_model_path, synthetic_packed, stage, inputs):
    """Inductor runs a graph kernel by kernel, CUDA graphs asked for or not, if it holds an op unsafe in a CUDA graph
    (one that syncs with the host or allocates by data), a shape that depends on data, or an input that is not a
    tensor. Its own check runs here on the graphs it would get: the augmentation's and the objective's forward and
    backward, after its decompositions."""
    import torch._inductor.lowering  # noqa: F401 (Inductor's decompositions call into it)
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.aot_autograd import make_boxed_func
    from torch._inductor.decomposition import select_decomp_table
    from torch._inductor.utils import get_first_incompatible_cudagraph_node

    refused, checked = [], []

    def check(graph, example_inputs):
        checked.append(graph)
        if (node := get_first_incompatible_cudagraph_node(graph)) is not None:
            refused.append(f"{node.target}: {node.meta.get('stack_trace', '')}")
        kinds = (torch.Tensor, torch.SymInt, torch.Generator)
        refused.extend(f"a {type(x).__name__} input" for x in example_inputs if not isinstance(x, kinds))
        return make_boxed_func(graph)

    backend = aot_autograd(fw_compiler=check, bw_compiler=check, decompositions=select_decomp_table())
    fields = TRAIN_FIELDS if stage == "train" else PRETRAIN_FIELDS
    loaded = PackedBatches([Source(str(synthetic_packed))], 4, fields, seed=0).batch(0)
    noise = unit_noise(4, 64, torch.device("cpu"), torch.Generator().manual_seed(0))
    model = HandRegressor(hand_model_path, backbone="resnet18", inputs=inputs, input_size=64)
    heatmaps = "render" if inputs == "rgb+2d" else None
    torch._dynamo.reset()
    batch = torch.compile(augment_batch, backend=backend)(loaded, 64, heatmaps, 6.0, noise)
    if stage == "train":
        objective = torch.compile(TrainObjective(model, TrainWeights(), "weak_perspective"), backend=backend)
        terms = objective(batch, torch.tensor(100.0))
    else:
        terms = torch.compile(PretrainObjective(model, PretrainWeights()), backend=backend)(batch)
    terms[0].backward()
    torch._dynamo.reset()
    assert len(checked) == 3 and not refused, refused  # augmentation; objective forward and backward


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_compiled_training_matches_eager_in_two_graphs_compiled_once(
    hand_model_path, synthetic_packed, tmp_path, caplog, cuda_graphs
):
    """The default on CUDA, run here on the CPU: the augmentation and the objective are compiled once each (no graph
    break, no recompile when the mask weight switches, no warning of a split step) and give the eager run's losses.
    ``cuda_graphs``: the compiled graphs reach Inductor in its CUDA-graph mode, which runs them here without a
    CUDA graph and counts each (the augmentation, the objective: its backward follows its forward) as skipped."""
    from torch._dynamo.utils import counters

    weights = {"mask_decay_start": 0.5}
    settings = _settings(
        hand_model_path,
        synthetic_packed,
        stage="train",
        inputs="rgb+2d",
        iterations=6,
        log_every=3,
        loss_weights=weights,
    )
    _, eager = _run(replace(settings, compile=False), tmp_path / "eager")
    torch._dynamo.reset()
    counters.clear()
    with caplog.at_level(logging.WARNING, logger="hand3d.train"):
        _, compiled = _run(replace(settings, compile=True, cuda_graphs=cuda_graphs), tmp_path / "compiled")
    assert "split the compiled training step" not in caplog.text and "CUDA graph" not in caplog.text
    assert counters["inductor"]["cudagraph_skips"] == (2 if cuda_graphs else 0)
    assert dict(counters["stats"])["unique_graphs"] == 2 and not counters["graph_break"], dict(counters["graph_break"])
    assert dict(counters["frames"]) == {"total": 2, "ok": 2} and not counters["recompiles"]
    for want, have in zip(eager, compiled, strict=True):
        for column in ("total", "keypoints_2d", "mask", "error_2d_px"):
            assert have[column] == pytest.approx(want[column], rel=2e-2), (column, want, have)


@pytest.mark.cuda
def test_cuda_graphs_on_a_gpu_leave_no_graph_without_one_and_train_as_the_compiled_step(
    hand_model_path, synthetic_packed, tmp_path, caplog
):
    """Replayed graphs overwrite their outputs: a loop that kept one across steps would log other losses."""
    from torch._dynamo.utils import counters

    settings = _settings(
        hand_model_path,
        synthetic_packed,
        stage="train",
        inputs="rgb+2d",
        iterations=8,
        log_every=2,
        loss_weights={"mask_decay_start": 0.5},
        device="cuda",
        compile=True,
    )
    _, compiled = _run(settings, tmp_path / "compiled")
    torch._dynamo.reset()
    counters.clear()
    with caplog.at_level(logging.WARNING, logger="hand3d.train"):
        _, graphed = _run(replace(settings, cuda_graphs=True), tmp_path / "graphed")
    assert counters["inductor"]["cudagraph_skips"] == 0 and "CUDA graph" not in caplog.text
    for want, have in zip(compiled, graphed, strict=True):
        for column in ("total", "keypoints_2d", "mask", "error_2d_px"):
            assert have[column] == pytest.approx(want[column], rel=1e-2), (column, want, have)
