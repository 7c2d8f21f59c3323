# Evaluation: each run on its test sets (metrics with the mean-hand baseline, PCK plots, sample overlays), FreiHAND's
# benchmark through its published prediction format, the loss curves, and one summary table for the report.
# The rules that run the network ask for a GPU (gpu=1): they use one where there is one, so they queue for it.


rule evaluate:
    input:
        model="results/models/{run}/model.pt",
        test="results/datasets/{testset}_test.h5",
        hand_model=HAND_MODEL,
    output:
        metrics="results/eval/{run}/{testset}/metrics.json",
        plot=report(
            "results/eval/{run}/{testset}/pck.png",
            caption="report/pck.rst",
            category="5. Evaluation",
            subcategory="{run}",
            labels={"run": "{run}", "test set": "{testset}", "figure": "PCK"},
        ),
        samples=report(
            "results/eval/{run}/{testset}/samples.png",
            caption="report/samples.rst",
            category="5. Evaluation",
            subcategory="{run}",
            labels={"run": "{run}", "test set": "{testset}", "figure": "samples"},
        ),
    log:
        "results/logs/evaluate/{run}_{testset}.log",
    benchmark:
        "results/benchmarks/evaluate/{run}_{testset}.tsv"
    conda:
        "../envs/hand3d.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1,
    params:
        palm_factor=palm_factor,
        version=versions.EVALUATION,
    script:
        "../workflow_scripts/evaluate.py"


rule freihand_predict:
    input:
        model="results/models/{run}/model.pt",
        hand_model=HAND_MODEL,
        demo=demo_folder("freihand"),
    output:
        pred="results/eval/{run}/freihand/pred.json",
    log:
        "results/logs/freihand_predict/{run}.log",
    benchmark:
        "results/benchmarks/freihand_predict/{run}.tsv"
    conda:
        "../envs/hand3d.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1,
    params:
        root=root_of("freihand"),
        version=versions.EVALUATION,
    script:
        "../workflow_scripts/freihand_predict.py"


rule freihand_benchmark:
    input:
        pred="results/eval/{run}/freihand/pred.json",
        demo=demo_folder("freihand"),
    output:
        scores="results/eval/{run}/freihand/benchmark.json",
    log:
        "results/logs/freihand_benchmark/{run}.log",
    conda:
        "../envs/hand3d.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        root=root_of("freihand"),
        eval_root=lookup(dpath="datasets/freihand/eval_root", within=config),
        version=versions.EVALUATION,
    script:
        "../workflow_scripts/freihand_benchmark.py"


rule plot_history:
    input:
        history="results/models/{run}/history.csv",
    output:
        png=report(
            "results/models/{run}/history.png",
            caption="report/history.rst",
            category="4. Training",
            labels={"run": "{run}", "figure": "loss curves"},
        ),
    log:
        "results/logs/plot_history/{run}.log",
    conda:
        "../envs/hand3d.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/plot_history.py"


rule eval_summary:
    input:
        metrics=metric_files,
        benchmarks=benchmark_files,
    output:
        tsv="results/eval/summary.tsv",
        html=report(
            "results/eval/summary.html",
            caption="report/summary.rst",
            category="5. Evaluation",
            labels={"figure": "metrics table"},
        ),
    log:
        "results/logs/eval_summary/summary.log",
    conda:
        "../envs/hand3d.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/eval_summary.py"
