# Helpers shared by the rules: config validation, paths, input functions. No rules here.
from snakemake.utils import validate

from hand3d import versions

validate(config, "schemas/config.schema.yaml")

HAND_MODEL = "results/hand_model/MANO_RIGHT.npz"


wildcard_constraints:
    split="train|test",


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


def shard_count(wildcards) -> int:
    """Samples in this shard: the split's total spread evenly over the shards."""
    index, count = scatter_position(wildcards)
    total = config["synthetic"][wildcards.split]
    return total // count + (index < total % count)


def all_targets():
    return [
        HAND_MODEL,
        "results/hand_model/template.obj",
        "results/hand_model/preview.png",
        "results/datasets/synthetic_train.h5",
        "results/datasets/synthetic_test.h5",
        "results/synthetic/preview.png",
    ]
