rule colored_meshes:
    input:
        model=HAND_MODEL,
    output:
        npz="results/synthetic/colors.npz",
    log:
        "results/logs/colored_meshes/colored_meshes.log",
    conda:
        "../envs/hand3d.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        colors=lookup(dpath="synthetic/colors", within=config),
        seed=lookup(dpath="synthetic/seed", within=config),
        version=versions.SYNTHETIC,
    script:
        "../workflow_scripts/colored_meshes.py"


rule backgrounds:
    output:
        h5="results/synthetic/backgrounds.h5",
    log:
        "results/logs/backgrounds/backgrounds.log",
    conda:
        "../envs/hand3d.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        backgrounds=lookup(dpath="synthetic/backgrounds", within=config),
        seed=lookup(dpath="synthetic/seed", within=config),
        version=versions.SYNTHETIC,
    script:
        "../workflow_scripts/backgrounds.py"


rule render_synthetic:
    input:
        model=HAND_MODEL,
        colors=rules.colored_meshes.output.npz,
        backgrounds=rules.backgrounds.output.h5,
    output:
        h5=temp("results/synthetic/shards/{split}_{scatteritem}.h5"),
    log:
        "results/logs/render_synthetic/{split}_{scatteritem}.log",
    benchmark:
        "results/benchmarks/render_synthetic/{split}_{scatteritem}.tsv"
    conda:
        "../envs/hand3d.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        shard=shard_index,
        samples=shard_count,
        seed=lookup(dpath="synthetic/seed", within=config),
        sampler=lookup(dpath="synthetic/sampler", within=config),
        num_pca=lookup(dpath="hand_model/num_pca", within=config),
        msaa=lookup(dpath="synthetic/msaa", within=config),
        store_vertices=lookup(dpath="synthetic/store_vertices", within=config),
        version=versions.SYNTHETIC,
    script:
        "../workflow_scripts/render_synthetic.py"


rule pack_synthetic:
    input:
        shards=gather.render("results/synthetic/shards/{{split}}_{scatteritem}.h5"),
    output:
        h5="results/datasets/synthetic_{split}.h5",
    log:
        "results/logs/pack_synthetic/{split}.log",
    benchmark:
        "results/benchmarks/pack_synthetic/{split}.tsv"
    conda:
        "../envs/hand3d.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../workflow_scripts/pack_synthetic.py"


rule synthetic_preview:
    input:
        h5="results/datasets/synthetic_train.h5",
    output:
        png=report(
            "results/synthetic/preview.png",
            caption="report/synthetic_preview.rst",
            category="2. Synthetic data",
            labels={"figure": "training renders"},
        ),
    log:
        "results/logs/synthetic_preview/synthetic_preview.log",
    conda:
        "../envs/hand3d.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/synthetic_preview.py"
