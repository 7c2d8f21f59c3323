rule hand_model:
    input:
        mano_pkl=mano_pickle_input,
    output:
        npz=HAND_MODEL,
        obj="results/hand_model/template.obj",
    log:
        "results/logs/hand_model/hand_model.log",
    benchmark:
        "results/benchmarks/hand_model/hand_model.tsv"
    conda:
        "../envs/hand3d.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        mano_pkl=lookup(dpath="hand_model/mano_pkl", within=config),
        version=versions.HAND_MODEL,
    script:
        "../workflow_scripts/hand_model.py"


rule hand_model_preview:
    input:
        npz=HAND_MODEL,
    output:
        png=report(
            "results/hand_model/preview.png",
            caption="report/hand_model.rst",
            category="1. Hand model",
            labels={"figure": "template and PCA poses"},
        ),
    log:
        "results/logs/hand_model_preview/hand_model_preview.log",
    conda:
        "../envs/hand3d.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        num_pca=lookup(dpath="hand_model/num_pca", within=config),
    script:
        "../workflow_scripts/hand_model_preview.py"
