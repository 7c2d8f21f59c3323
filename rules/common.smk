# Helpers shared by the rules: config validation, paths, input functions. No rules here.
from snakemake.utils import validate

from hand3d import versions

validate(config, "schemas/config.schema.yaml")

HAND_MODEL = "results/hand_model/MANO_RIGHT.npz"


def mano_pickle_input(wildcards):
    """The user's MANO pickle when configured: it becomes an input, so replacing it rebuilds the model."""
    path = config["hand_model"]["mano_pkl"]
    return [path] if path else []


def all_targets():
    return [
        HAND_MODEL,
        "results/hand_model/template.obj",
        "results/hand_model/preview.png",
    ]
