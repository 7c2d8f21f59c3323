"""Semantic versions of the pipeline's stages, passed to rules as params.

Snakemake reruns a job when its params change, not when code inside `hand3d/` changes: bump a stage's number when
its output would change, and every artifact built from it rebuilds. Kept import-free: Snakemake reads it at parse
time.
"""

HAND_MODEL = 1
SYNTHETIC = 1
REAL_DATA = 2  # the stand-ins and the real-data stages (hand3d.real_data, datasets, crop, segment, heatmaps)
TRAINING = 2  # pretraining and training (hand3d.train, data, augment, objectives)
EVALUATION = 3  # evaluation, FreiHAND benchmark (hand3d.evaluate, metrics, freihand_benchmark)
