"""The Snakemake workflow driven through its real command line, in temporary working directories."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted(p.parent for p in (REPO / "profiles").glob("*/config.yaml"))


# A tiny run: a few renders in two shards, so the whole DAG takes seconds.
TINY = {
    "synthetic": {
        "train": 6,
        "test": 4,
        "colors": {"count": 2, "registered_meshes": None, "scans": None},
        "backgrounds": {"folder": None, "size": 320, "procedural": 1},
    },
    "real": {"demo_scale": 1},
    "model": {"backbone": "resnet18", "input_size": 64},
    "training": {"log_every": 2, "checkpoint_every": 2},
    "pretrain": {"iterations": 4, "batch_size": 4},
    "experiments": {
        "rgb": {"inputs": "rgb", "iterations": 4, "batch_size": 4},
        "rgb_2d": {"inputs": "rgb+2d", "iterations": 4, "batch_size": 4, "datasets": {"mpii_nzsl": 1.0, "stb": 2.0}},
    },
}
SCATTER = ("--set-scatter", "render=2")


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    cmd += SCATTER
    result = subprocess.run([*cmd, *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def write_config(workdir: Path, **overrides) -> Path:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for section, values in {**TINY, **overrides}.items():
        if section == "experiments":
            config[section] = values  # the experiments are replaced, not merged
        else:
            config.setdefault(section, {}).update(values)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))  # the order of keys means something (datasets)
    return path


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    write_config(tmp_path)
    return tmp_path


def test_shipped_config_dry_runs_every_stage(workdir):
    out = snakemake(workdir, "-n", "--cores", "2", "--workflow-profile", "none").stdout
    rules = ("hand_model", "hand_model_preview", "colored_meshes", "backgrounds", "render_synthetic")
    for rule in (*rules, "pack_synthetic", "synthetic_preview", "pretrain", "train", "all"):
        assert f"rule {rule}:" in out, rule


def _leaves(tree: dict, prefix: str = "") -> dict:
    """{"a/b/c": value} of a nested config."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        out.update(_leaves(value, path + "/") if isinstance(value, dict) and value else {path: value})
    return out


def test_paper_scale_is_one_config_switch_away(workdir):
    snakemake(workdir, "-n", "--cores", "2", "--configfile", str(REPO / "configs/paper.yaml"))  # Snakemake takes it
    from snakemake.utils import update_config, validate

    shipped = yaml.safe_load((REPO / "config.yaml").read_text())
    merged = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(merged, yaml.safe_load((REPO / "configs/paper.yaml").read_text()))  # what --configfile does
    for config in (shipped, merged):
        validate(config, str(REPO / "rules/schemas/config.schema.yaml"))  # and fills the defaults, as the Snakefile
    before, after = _leaves(shipped), _leaves(merged)
    changed = {key: after[key] for key in after if before.get(key) != after[key]}
    assert changed == {  # the sizes, as the README says, the reference mask weight and the checkpoint interval
        "training/checkpoint_every": 2000,
        "synthetic/train": 18000,
        "synthetic/test": 2000,
        "model/backbone": "resnet34",
        "model/input_size": 256,
        "pretrain/iterations": 180000,
        "pretrain/batch_size": 32,
        **{f"experiments/{run}/iterations": 100000 for run in ("rgb", "rgb_2d")},
        **{f"experiments/{run}/batch_size": 16 for run in ("rgb", "rgb_2d")},
        **{f"experiments/{run}/weights/mask": 100.0 for run in ("rgb", "rgb_2d")},
    }


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_every_shipped_profile_dry_runs(workdir, profile):
    snakemake(workdir, "-n", "--workflow-profile", str(profile))


def test_slurm_profile_gives_training_a_gpu(workdir):
    out = snakemake(workdir, "-n", "--profile", str(REPO / "profiles/slurm")).stdout  # as the README runs it
    jobs = {}  # each rule's first job: its lines up to the next job's
    for job in re.split(r"^rule ", out, flags=re.M)[1:]:
        jobs.setdefault(job.split(":", 1)[0], job.split("\n[", 1)[0])
    resources = {rule: re.search(r"resources: (.*)", job).group(1).split(", ") for rule, job in jobs.items()}
    for rule in ("pretrain", "train", "evaluate", "freihand_predict"):
        assert {"gpu=1", "slurm_partition=gpu"} <= set(resources[rule]), resources[rule]
        assert ("nodes=1" in resources[rule]) == (rule in ("pretrain", "train"))  # DDP's processes share one node
    assert "slurm_partition=cpu" in resources["render_synthetic"]
    assert not any(r.startswith(("gpu=", "nodes=")) for r in resources["render_synthetic"])


def test_the_workflow_profile_leaves_the_cluster_profile_its_settings(tmp_path, monkeypatch):
    """Snakemake loads profiles/default beside every --profile, and it wins where both set something."""
    from snakemake.cli import parse_args
    from snakemake.settings.enums import RerunTrigger

    monkeypatch.chdir(tmp_path)
    _, args = parse_args(["--snakefile", str(REPO / "Snakefile"), "--profile", str(REPO / "profiles/slurm")])
    assert args.show_failed_logs and args.rerun_incomplete  # the workflow profile is loaded
    assert args.cores is None  # so a job's threads are not capped at the submitting machine's cores
    assert args.latency_wait == 60 and RerunTrigger.SOFTWARE_ENV in args.rerun_triggers  # the cluster's own
    assert args.retries == 1 and args.slurm_requeue is True  # a preempted training job goes back into the queue


def test_a_dataset_with_a_null_root_is_left_out_of_every_experiment(tmp_path):
    off = {"panoptic": {"root": None}, "freihand": {"root": None}}
    write_config(tmp_path, datasets=off)
    out = snakemake(tmp_path, "-n", "--cores", "1", "--workflow-profile", "none").stdout
    assert "panoptic" not in out and "freihand" not in out
    inputs = re.findall(r"rule train:\n    input: (.*)", out)
    assert len(inputs) == 2 and all("mpii_nzsl_train.h5" in i and "stb_train.h5" in i for i in inputs), inputs
    write_config(tmp_path, datasets={**off, "mpii_nzsl": {"root": None}, "stb": {"root": None}})
    failed = snakemake(tmp_path, "-n", "--cores", "1", "--workflow-profile", "none", check=False)
    assert failed.returncode != 0 and "but the root of each is null" in failed.stdout + failed.stderr


def test_a_split_the_dataset_lacks_fails_when_the_dag_is_built(workdir):
    failed = snakemake(workdir, "-n", "--cores", "1", "results/datasets/panoptic_test.h5", check=False)
    assert failed.returncode != 0 and "panoptic has no test split (it has ('train',))" in failed.stdout + failed.stderr


def test_lint_is_clean():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt_is_clean():
    result = subprocess.run(["snakefmt", "--check", "Snakefile", "rules"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_misspelled_config_key_is_refused(tmp_path):
    (tmp_path / "config.yaml").write_text("hand_model:\n  mano_pickle: /x/MANO_RIGHT.pkl\n")
    result = snakemake(tmp_path, "-n", "--cores", "1", check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert "mano_pickle" in message and "Additional properties" in message


def test_a_whole_number_written_with_a_decimal_point_is_refused_naming_it(tmp_path):
    """JSON Schema's integer takes 6.0; smplx's PCA size and range() do not."""
    (tmp_path / "config.yaml").write_text("hand_model:\n  num_pca: 6.0\nsynthetic:\n  train: 100.0\n")
    result = snakemake(tmp_path, "-n", "--cores", "1", check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert "hand_model.num_pca is 6.0, synthetic.train is 100.0; these settings take whole numbers" in message


@pytest.mark.parametrize("factor", [-2.0, 0.0, 0.5, 4.0])
def test_a_palm_to_wrist_factor_outside_1_to_3_is_refused(factor):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    with pytest.raises(WorkflowError, match=r"\['palm_to_wrist'\]"):
        validate({"datasets": {"stb": {"palm_to_wrist": factor}}}, str(REPO / "rules/schemas/config.schema.yaml"))


def test_a_plain_install_can_write_the_report():
    """The README installs with `pip install -e .`; `snakemake --report` then needs pygments, which this suite gets
    only through pytest (so the report test above passes either way)."""
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    snakemake = next(r for r in map(Requirement, project["dependencies"]) if r.name == "snakemake")
    assert "reports" in snakemake.extras, snakemake


@pytest.mark.workflow
def test_hand_model_target_builds_then_is_up_to_date(workdir):
    snakemake(workdir, "--cores", "2", "results/hand_model/MANO_RIGHT.npz")
    import smplx

    npz = workdir / "results/hand_model/MANO_RIGHT.npz"
    smplx.MANO(str(npz), ext="npz", use_pca=True, num_pca_comps=6, flat_hand_mean=False)
    assert (workdir / "results/hand_model/template.obj").stat().st_size > 100_000
    assert (workdir / "results/logs/hand_model/hand_model.log").read_text().count("closed': True") == 1
    assert "Nothing to be done" in snakemake(workdir, "-n", "--cores", "2", "results/hand_model/MANO_RIGHT.npz").stdout


@pytest.mark.workflow
def test_default_run_reruns_only_what_a_parameter_change_touches(workdir):
    snakemake(workdir, "--cores", "2")
    assert (workdir / "results/hand_model/preview.png").stat().st_size > 50_000
    assert (workdir / "results/synthetic/preview.png").stat().st_size > 50_000
    assert not list((workdir / "results/synthetic").glob("shards/*.h5")), "shards are temporary"
    assert "Nothing to be done" in snakemake(workdir, "-n", "--cores", "2").stdout
    for run in ("pretrain", "rgb", "rgb_2d"):
        history = (workdir / f"results/models/{run}/history.csv").read_text().splitlines()
        assert history[0].startswith("step,lr,total") and len(history) == 3, run
        assert (workdir / f"results/models/.state/{run}/state.pt").is_file(), run
    from hand3d.model import load_model

    hand = workdir / "results/hand_model/MANO_RIGHT.npz"  # the stored path is relative to the workflow directory
    assert load_model(workdir / "results/models/rgb_2d/model.pt", hand_model=hand).uses_heatmaps
    check_evaluation(workdir)
    write_config(workdir, experiments={**TINY["experiments"], "rgb": {**TINY["experiments"]["rgb"], "lr": 2e-4}})
    dry = snakemake(workdir, "-n", "--cores", "2").stdout
    assert re.search(r"^train\s+1$", dry, re.M), "only the changed experiment retrains"
    for untouched in ("pretrain", "render_synthetic", "crop", "pack_real"):
        assert f"rule {untouched}:" not in dry, untouched
    shares = yaml.safe_load((REPO / "config.yaml").read_text())["experiments"]["rgb"]["datasets"]
    assert len(set(shares.values())) == 1, "equal shares: only the order changes below"
    swapped = {**TINY["experiments"]["rgb"], "datasets": dict(reversed(shares.items()))}
    write_config(workdir, experiments={**TINY["experiments"], "rgb": swapped})
    dry = snakemake(workdir, "-n", "--cores", "2").stdout
    assert re.search(r"^train\s+1$", dry, re.M), "the datasets' order decides the batches"
    heatmaps = yaml.safe_load((REPO / "config.yaml").read_text())["real"]["heatmaps"]
    write_config(workdir, real={**TINY["real"], "heatmaps": {**heatmaps, "sigma": heatmaps["sigma"] + 1}})
    dry = snakemake(workdir, "-n", "--cores", "2").stdout
    assert "rule heatmaps:" in dry and "rule pretrain:" not in dry, "pretraining reads no heatmaps"
    snakemake(workdir, "--cores", "2", "results/models/rgb/model.pt", "results/models/rgb_2d/model.pt")
    logs = workdir / "results/logs/train"
    assert "resuming at step 4" in (logs / "rgb.log").read_text(), "the RGB model reads no heatmaps: not retrained"
    assert "starting afresh" in (logs / "rgb_2d.log").read_text()
    shipped = yaml.safe_load((REPO / "config.yaml").read_text())["datasets"]
    stb = {**shipped["stb"], "palm_to_wrist": shipped["stb"]["palm_to_wrist"] + 0.1}
    freihand = {**shipped["freihand"], "eval_root": str(workdir / "elsewhere")}
    write_config(workdir, datasets={"stb": stb, "freihand": freihand})
    dry = snakemake(workdir, "-n", "--cores", "2").stdout
    assert "output: results/eval/pretrain/synthetic/metrics.json" not in dry, "the palm factor is STB's only"
    assert "output: results/eval/rgb/stb/metrics.json" in dry
    assert "output: results/real/freihand/test/samples.json" in dry, "the test split reads eval_root"
    assert "output: results/real/freihand/train/samples.json" not in dry, "the train split does not"
    write_config(workdir, hand_model={"num_pca": 8})
    dry = snakemake(workdir, "-n", "--cores", "2").stdout
    assert "rule hand_model_preview:" in dry and "rule render_synthetic:" in dry and "rule hand_model:" not in dry
    write_config(workdir, synthetic={**TINY["synthetic"], "sampler": {"pose_range": 1.0}})
    dry = snakemake(workdir, "-n", "--cores", "2").stdout
    assert "rule render_synthetic:" in dry and "rule synthetic_preview:" in dry
    for untouched in ("hand_model", "colored_meshes", "backgrounds"):
        assert f"rule {untouched}:" not in dry, untouched


EVALUATIONS = [("pretrain", "synthetic")]
EVALUATIONS += [(run, test) for run in ("rgb", "rgb_2d") for test in ("mpii_nzsl", "stb", "freihand")]


def check_evaluation(workdir: Path) -> None:
    """Every run on its test sets, the FreiHAND benchmark for the RGB model, loss plots, the table and the report."""
    for run, test in EVALUATIONS:
        folder = workdir / "results/eval" / run / test
        record = json.loads((folder / "metrics.json").read_text())
        assert record["samples"] > 0 and record["dataset"] == test, (run, test)
        assert set(record["scores"]["model"]) == set(record["scores"]["mean_hand"])
        assert ("pck_3d" in record["scores"]["model"]) == (test != "mpii_nzsl"), (run, test)
        assert (folder / "pck.png").stat().st_size > 10_000 and (folder / "samples.png").stat().st_size > 50_000
    assert json.loads((workdir / "results/eval/rgb/freihand/benchmark.json").read_text())["scores"]["count"] == 4
    assert not (workdir / "results/eval/rgb_2d/freihand/benchmark.json").exists(), "rgb+2d has no FreiHAND format"
    for run in ("pretrain", "rgb", "rgb_2d"):
        assert (workdir / f"results/models/{run}/history.png").stat().st_size > 10_000
    table = (workdir / "results/eval/summary.tsv").read_text().splitlines()
    assert table[0].startswith("run\ttest set") and len(table) > len(EVALUATIONS)
    snakemake(workdir, "--report", "results/report.html")
    report = (workdir / "results/report.html").read_text()
    for needle in ("Evaluation", "Training", "Real data", "pck.png", "samples.png", "history.png", "summary.html"):
        assert needle in report, needle


@pytest.mark.workflow
def test_synthetic_test_set_builds_then_is_up_to_date_and_reproduces(workdir, tmp_path_factory):
    target = "results/datasets/synthetic_test.h5"
    snakemake(workdir, "--cores", "2", target)
    assert "Nothing to be done" in snakemake(workdir, "-n", "--cores", "2", target).stdout
    other = tmp_path_factory.mktemp("again")
    write_config(other)
    snakemake(other, "--cores", "2", target)
    from hand3d.h5io import validate_packed

    first, second = validate_packed(workdir / target), validate_packed(other / target)
    assert first["num_samples"] == 4 and first["split"] == "test"
    assert first["content_sha256"] == second["content_sha256"], "same config and seed, same arrays"


@pytest.mark.workflow
def test_configured_mano_pickle_is_converted(tmp_path):
    from py2_pickle import write_mano_like_pickle
    from test_hand_model import _mano_like

    from hand3d.procedural_hand import build_procedural_hand

    pkl = tmp_path / "mano" / "MANO_RIGHT.pkl"
    pkl.parent.mkdir()
    write_mano_like_pickle(pkl, _mano_like(build_procedural_hand(grid_spacing=0.006)))
    write_config(tmp_path, hand_model={"mano_pkl": str(pkl)})
    snakemake(tmp_path, "--cores", "1", "results/hand_model/MANO_RIGHT.npz")
    with np.load(tmp_path / "results/hand_model/MANO_RIGHT.npz") as data:
        assert str(data["source"]) == "mano_pkl"
        np.testing.assert_array_equal(data["tip_vertex_ids"], [744, 320, 443, 555, 672])


@pytest.mark.workflow
def test_failed_conversion_leaves_no_output_and_logs_why(tmp_path):
    pkl = tmp_path / "MANO_RIGHT.pkl"
    pkl.write_bytes(b"\x80\x02cposix\nsystem\nq\x00.")
    write_config(tmp_path, hand_model={"mano_pkl": str(pkl)})
    result = snakemake(tmp_path, "--cores", "1", "results/hand_model/MANO_RIGHT.npz", check=False)
    assert result.returncode != 0
    assert not (tmp_path / "results/hand_model/MANO_RIGHT.npz").exists()
    assert "posix.system" in (tmp_path / "results/logs/hand_model/hand_model.log").read_text()


def test_workflow_scripts_reach_the_library_without_install():
    link = REPO / "workflow_scripts" / "hand3d"
    assert link.is_symlink() and link.resolve() == (REPO / "hand3d").resolve()
    assert shutil.which("snakemake") is not None


def test_readme_dag_picture_is_current(workdir):
    """docs/rulegraph.svg (shown in the README) names exactly the rules of the workflow."""
    import re

    dot = snakemake(workdir, "--rulegraph", "--cores", "1", "--workflow-profile", "none").stdout
    rules = set(re.findall(r'label = "(\w+)"', dot))
    pictured = set(re.findall(r">(\w+)</text>", (REPO / "docs" / "rulegraph.svg").read_text()))
    assert rules and rules == pictured, "regenerate: snakemake --rulegraph | dot -Tsvg > docs/rulegraph.svg"


def test_schema_fills_defaults(tmp_path):
    """A config naming no keys still plans the whole DAG: the schema supplies every default."""
    (tmp_path / "config.yaml").write_text("hand_model: {}\n")
    out = snakemake(tmp_path, "-n", "--cores", "1", "--workflow-profile", "none", "--printshellcmds").stdout
    for rule in ("hand_model_preview", "render_synthetic", "crop", "pretrain", "train", "evaluate", "eval_summary"):
        assert f"rule {rule}:" in out, rule


def test_schema_model_defaults_are_the_designs(tmp_path):
    """A config naming no model gets DESIGN section 6's network, the library's own defaults (ResNet-34, 256 px)."""
    import inspect

    from snakemake.utils import validate

    from hand3d.model import HandRegressor
    from hand3d.train import Settings

    config = {"hand_model": {}}
    validate(config, str(REPO / "rules/schemas/config.schema.yaml"))
    signature = inspect.signature(HandRegressor).parameters
    for key, design in (("backbone", "resnet34"), ("input_size", 256)):
        assert config["model"][key] == signature[key].default == Settings.__dataclass_fields__[key].default == design
