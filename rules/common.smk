# Helpers shared by the rules: config validation, paths, input functions. No rules here.
from snakemake.utils import validate

from hand3d import versions
from hand3d.datasets import registry

validate(config, "schemas/config.schema.yaml")

HAND_MODEL = "results/hand_model/MANO_RIGHT.npz"


wildcard_constraints:
    split="train|test",
    dataset="|".join(registry.DATASETS),


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


def dataset_root(wildcards) -> str:
    root = dataset_config(wildcards)["root"]
    return registry.demo_root(wildcards.dataset) if root == "demo" else root


def demo_input(wildcards) -> list[str]:
    """The stand-in's folder when the dataset's root is "demo" (a user's own copy is not tracked)."""
    if dataset_config(wildcards)["root"] == "demo":
        return [f"results/demo_raw/{wildcards.dataset}"]
    return []


def dataset_options(wildcards) -> dict:
    return {k: v for k, v in dataset_config(wildcards).items() if k != "root"}


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
    ]
