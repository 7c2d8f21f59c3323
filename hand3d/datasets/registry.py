"""Which real datasets exist and their splits, importable at Snakefile parse time (no heavy imports)."""

SPLITS = {
    "mpii_nzsl": ("train", "test"),  # CMU hand_labels manual_train / manual_test
    "panoptic": ("train",),  # CMU hand143_panopticdb: all for training
    "stb": ("train", "test"),  # B2-B6 / B1
    "freihand": ("train", "test"),  # training / evaluation
}
DATASETS = tuple(SPLITS)
# Where a stand-in's reader root lies inside results/demo_raw/<dataset>.
DEMO_ROOT = {"freihand": "FreiHAND_pub_v2"}


def demo_root(dataset: str) -> str:
    base = f"results/demo_raw/{dataset}"
    return f"{base}/{DEMO_ROOT[dataset]}" if dataset in DEMO_ROOT else base
