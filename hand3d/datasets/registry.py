"""Which real datasets exist and their splits, importable at Snakefile parse time (no heavy imports)."""

SPLITS = {
    "mpii_nzsl": ("train", "test"),  # CMU hand_labels manual_train / manual_test
    "panoptic": ("train",),  # CMU hand143_panopticdb: all for training
    "stb": ("train", "test"),  # B2-B6 / B1
    "freihand": ("train", "test"),  # training / evaluation
}
DATASETS = tuple(SPLITS)
# Config options a split's reader does not read: left out of its job's params, so changing them reruns nothing there.
UNREAD_OPTIONS = {("freihand", "train"): ("eval_root",), ("freihand", "test"): ("versions",)}
# Where a stand-in's reader root lies inside results/demo_raw/<dataset>.
DEMO_ROOT = {"freihand": "FreiHAND_pub_v2"}


def demo_root(dataset: str) -> str:
    base = f"results/demo_raw/{dataset}"
    return f"{base}/{DEMO_ROOT[dataset]}" if dataset in DEMO_ROOT else base
