# hand3d: 3D hand shape and pose from a single RGB image (Boukhayma, de Bem, Torr, CVPR 2019).
# This file is the table of contents; rules live in rules/<stage>.smk, helpers in rules/common.smk.
from snakemake.utils import min_version

min_version("9.19")


configfile: "config.yaml"


report: "rules/report/workflow.rst"


# Synthetic rendering and real-data cropping are split into this many shards per split (parallel jobs); tests
# shrink them with --set-scatter.
scattergather:
    render=4,
    real=4,


include: "rules/common.smk"
include: "rules/hand_model.smk"
include: "rules/synthetic.smk"
include: "rules/real_data.smk"
include: "rules/training.smk"
include: "rules/evaluation.smk"


# A job killed by a signal it cannot catch (SIGKILL, a node's failure) leaves its temporary files beside its outputs;
# Snakemake knows only the outputs. Those of writers that are gone go before the jobs start.
onstart:
    from hand3d.atomic import sweep_stale_temps

    for stale in sweep_stale_temps("results", recursive=True):
        print(f"removed {stale}, left by a killed job")


rule all:
    default_target: True
    input:
        all_targets(),
