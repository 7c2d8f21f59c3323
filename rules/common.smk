# Helpers shared by the rules: config validation, paths, input functions. No rules here.
from snakemake.utils import validate

from hand3d import versions
from hand3d.config_check import check_integer_settings
from hand3d.datasets import registry
from hand3d.network_inputs import reads_heatmaps

validate(config, "schemas/config.schema.yaml")
check_integer_settings(config, workflow.source_path("schemas/config.schema.yaml"))

HAND_MODEL = "results/hand_model/MANO_RIGHT.npz"


wildcard_constraints:
    split="train|test",
    dataset="|".join(registry.DATASETS),
    experiment="(?!pretrain/)[A-Za-z0-9_]+",
    run="[A-Za-z0-9_]+",
    testset="synthetic|" + "|".join(registry.DATASETS),


def mano_pickle_input(wildcards):
    """The user's MANO pickle when configured: it becomes an input, so replacing it rebuilds the model."""
    path = config["hand_model"]["mano_pkl"]
    return [path] if path else []


def scatter_position(wildcards) -> tuple[int, int]:
    """(index from 0, count) of a scatter item named like "2-of-4"."""
    index, count = wildcards.scatteritem.split("-of-")
    return int(index) - 1, int(count)


def shard_index(wildcards) -> int:
    return scatter_position(wildcards)[0]


def shard_total(wildcards) -> int:
    return scatter_position(wildcards)[1]


def shard_count(wildcards) -> int:
    """Samples in this shard: the split's total spread evenly over the shards."""
    index, count = scatter_position(wildcards)
    total = config["synthetic"][wildcards.split]
    return total // count + (index < total % count)


def dataset_config(wildcards) -> dict:
    return config["datasets"][wildcards.dataset]


def root_of(dataset: str) -> str:
    """Where a dataset's reader looks: the configured root, or the stand-in's root for "demo"."""
    root = config["datasets"][dataset]["root"]
    return registry.demo_root(dataset) if root == "demo" else root


def demo_folder(dataset: str) -> list[str]:
    """The stand-in's folder when the dataset's root is "demo" (a user's own copy is not tracked)."""
    if config["datasets"][dataset]["root"] == "demo":
        return [f"results/demo_raw/{dataset}"]
    return []


def dataset_root(wildcards) -> str:
    return root_of(wildcards.dataset)


def demo_input(wildcards) -> list[str]:
    """The stand-in a split is read from (none for a real root); a split the dataset does not have fails here."""
    if wildcards.split not in registry.SPLITS[wildcards.dataset]:
        raise ValueError(
            f"{wildcards.dataset} has no {wildcards.split} split (it has {registry.SPLITS[wildcards.dataset]})"
        )
    return demo_folder(wildcards.dataset)


def dataset_options(wildcards) -> dict:
    """The dataset's reader options for the split, less the root (a param of its own) and those it does not read."""
    unread = (
        "root",
        *registry.UNREAD_OPTIONS.get((wildcards.dataset, wildcards.split), ()),
    )
    return {k: v for k, v in dataset_config(wildcards).items() if k not in unread}


def num_params(wildcards) -> int:
    """Length of the parameter vector [s, tx, ty, rot(3), pose(n), betas(10)]."""
    return 3 + 3 + config["hand_model"]["num_pca"] + 10


def enabled_datasets() -> list[str]:
    return [d for d in registry.DATASETS if config["datasets"][d]["root"]]


def split_issue_files(wildcards) -> dict[str, str]:
    return {
        split: f"results/real/{wildcards.dataset}/{split}/issues.json"
        for split in registry.SPLITS[wildcards.dataset]
    }


def preview_split(wildcards) -> str:
    split = registry.SPLITS[wildcards.dataset][-1]
    return f"results/datasets/{wildcards.dataset}_{split}.h5"


def real_targets() -> list[str]:
    targets = []
    for dataset in enabled_datasets():
        targets += [
            f"results/datasets/{dataset}_{split}.h5"
            for split in registry.SPLITS[dataset]
        ]
        targets += [
            f"results/real/{dataset}/issues.json",
            f"results/real/{dataset}/preview.png",
        ]
    return targets


def all_targets():
    return [
        HAND_MODEL,
        "results/hand_model/template.obj",
        "results/hand_model/preview.png",
        "results/datasets/synthetic_train.h5",
        "results/datasets/synthetic_test.h5",
        "results/synthetic/preview.png",
        *real_targets(),
        *model_targets(),
        *evaluation_targets(),
    ]


# ---------------------------------------------------------------- training

PRETRAINED = "results/models/pretrain/model.pt"


def experiments() -> list[str]:
    return list(config["experiments"])


def experiment_config(wildcards) -> dict:
    return config["experiments"][wildcards.experiment]


def _training_shared() -> dict:
    shared = config["training"]
    return {
        "backbone": config["model"]["backbone"],
        "input_size": config["model"]["input_size"],
        "imagenet_weights": config["model"]["imagenet_weights"],
        "num_pca": config["hand_model"]["num_pca"],
        "seed": shared["seed"],
        "augment": shared["augment"],
        "log_every": shared["log_every"],
        "checkpoint_every": shared["checkpoint_every"],
        "readers": shared["readers"],
        "cuda_graphs": shared["cuda_graphs"],
    }


def imagenet_weights(wildcards) -> list[str]:
    """The ImageNet weights file, when the config names one: an input, so a new file reruns pretraining."""
    path = config["model"]["imagenet_weights"]
    return [path] if path else []


def _schedule(section: dict) -> dict:
    keys = ("iterations", "batch_size", "lr", "lr_step", "lr_gamma")
    return {key: section[key] for key in keys} | {"loss_weights": section["weights"]}


def pretrain_settings(wildcards) -> dict:
    """hand3d.train.Settings fields of the pretraining run (paths come from the rule's input)."""
    return _training_shared() | _schedule(config["pretrain"])


def train_settings(wildcards) -> dict:
    experiment = experiment_config(wildcards)
    extra = {"inputs": experiment["inputs"], "three_d_form": experiment["three_d_form"]}
    # Only RGB+2D runs read heatmaps: the others stay put when they are redrawn.
    if reads_heatmaps(experiment["inputs"]):
        extra["heatmap_sigma"] = config["real"]["heatmaps"]["sigma"]
    return _training_shared() | _schedule(experiment) | extra


def experiment_datasets(wildcards) -> list[str]:
    """The experiment's datasets (their train splits) in config order, less those whose root is null."""
    listed = list(experiment_config(wildcards)["datasets"])
    names = [name for name in listed if name in enabled_datasets()]
    if not names:
        raise ValueError(
            f"experiment {wildcards.experiment!r} trains on {listed}, but the root of each is null in the config"
        )
    return names


def experiment_data(wildcards) -> list[str]:
    return [
        f"results/datasets/{name}_train.h5" for name in experiment_datasets(wildcards)
    ]


def experiment_weights(wildcards) -> list[float]:
    weights = experiment_config(wildcards)["datasets"]
    return [float(weights[name]) for name in experiment_datasets(wildcards)]


def model_targets() -> list[str]:
    runs = ["pretrain", *experiments()]
    return [
        f"results/models/{run}/{name}"
        for run in runs
        for name in ("model.pt", "history.csv")
    ]


# ---------------------------------------------------------------- evaluation


def test_sets() -> list[str]:
    """The enabled real datasets that have a test split."""
    return [d for d in enabled_datasets() if "test" in registry.SPLITS[d]]


def palm_factor(wildcards) -> float | None:
    """STB's wrist-from-palm factor, which its 3D protocol undoes to get back to the palm root; None for the other
    test sets, which are scored from the wrist (so changing it re-scores STB only)."""
    if wildcards.testset != "stb":
        return None
    return float(config["datasets"]["stb"]["palm_to_wrist"])


def evaluations() -> list[tuple[str, str]]:
    """(run, test set) pairs: the pretraining on the synthetic test set, each experiment on every real one."""
    pairs = [("pretrain", "synthetic")]
    return pairs + [(run, test) for run in experiments() for test in test_sets()]


def freihand_benchmarks() -> list[str]:
    """Experiments scored on FreiHAND's benchmark (RGB-only models, FreiHAND enabled)."""
    if not config["datasets"]["freihand"]["root"]:
        return []
    return [
        run
        for run in experiments()
        if not reads_heatmaps(config["experiments"][run]["inputs"])
    ]


def metric_files(wildcards=None) -> list[str]:
    return [f"results/eval/{run}/{test}/metrics.json" for run, test in evaluations()]


def benchmark_files(wildcards=None) -> list[str]:
    return [
        f"results/eval/{run}/freihand/benchmark.json" for run in freihand_benchmarks()
    ]


def evaluation_targets() -> list[str]:
    targets = [
        f"results/eval/{run}/{test}/{name}"
        for run, test in evaluations()
        for name in ("metrics.json", "pck.png", "samples.png")
    ]
    targets += [
        f"results/eval/{run}/freihand/benchmark.json" for run in freihand_benchmarks()
    ]
    targets += [
        f"results/models/{run}/history.png" for run in ["pretrain", *experiments()]
    ]
    return targets + ["results/eval/summary.tsv", "results/eval/summary.html"]
