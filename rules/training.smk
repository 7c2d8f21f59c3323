# Pretraining on the synthetic set, then one training run per experiment in config["experiments"].
# Resumable state lives in results/models/.state/<run>/ (Snakemake deletes declared outputs before a job runs).
# resources.gpu is the number of processes: more than 1 runs DDP under torchrun.


rule pretrain:
    input:
        hand_model=HAND_MODEL,
        data="results/datasets/synthetic_train.h5",
        imagenet=imagenet_weights,
    output:
        model="results/models/pretrain/model.pt",
        history="results/models/pretrain/history.csv",
    log:
        "results/logs/pretrain/pretrain.log",
    benchmark:
        "results/benchmarks/pretrain/pretrain.tsv"
    conda:
        "../envs/hand3d.yaml"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=1440,
        gpu=1,
    params:
        settings=pretrain_settings,
        weights=[1.0],
        state_dir="results/models/.state/pretrain",
        version=versions.TRAINING,
    script:
        "../workflow_scripts/train.py"


rule train:
    input:
        hand_model=HAND_MODEL,
        init=PRETRAINED,
        data=experiment_data,
    output:
        model="results/models/{experiment}/model.pt",
        history="results/models/{experiment}/history.csv",
    log:
        "results/logs/train/{experiment}.log",
    benchmark:
        "results/benchmarks/train/{experiment}.tsv"
    conda:
        "../envs/hand3d.yaml"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=720,
        gpu=1,
    params:
        settings=train_settings,
        datasets=experiment_datasets,  # their order decides the batches' mix, as the weights do
        weights=experiment_weights,
        state_dir="results/models/.state/{experiment}",
        version=versions.TRAINING,
    script:
        "../workflow_scripts/train.py"
