rule demo_raw:
    input:
        model=HAND_MODEL,
    output:
        root=directory("results/demo_raw/{dataset}"),
    log:
        "results/logs/demo_raw/{dataset}.log",
    conda:
        "../envs/hand3d.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        seed=lookup(dpath="real/seed", within=config),
        scale=lookup(dpath="real/demo_scale", within=config),
        version=versions.REAL_DATA,
    script:
        "../workflow_scripts/demo_raw.py"


rule read_annotations:
    input:
        demo=demo_input,
    output:
        index="results/real/{dataset}/{split}/samples.json",
    log:
        "results/logs/read_annotations/{dataset}_{split}.log",
    wildcard_constraints:
        dataset="mpii_nzsl|panoptic|freihand",
    conda:
        "../envs/hand3d.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        root=dataset_root,
        options=dataset_options,
        version=versions.REAL_DATA,
    script:
        "../workflow_scripts/read_annotations.py"


# STB's labels are 3D millimetres: its reader projects them to pixels for the configured cameras.
use rule read_annotations as stb_mm2px with:
    log:
        "results/logs/stb_mm2px/{dataset}_{split}.log",
    wildcard_constraints:
        dataset="stb",


rule crop:
    input:
        index="results/real/{dataset}/{split}/samples.json",
    output:
        h5=temp("results/real/{dataset}/{split}/crops_{scatteritem}.h5"),
        issues=temp("results/real/{dataset}/{split}/crop_issues_{scatteritem}.json"),
    log:
        "results/logs/crop/{dataset}_{split}_{scatteritem}.log",
    benchmark:
        "results/benchmarks/crop/{dataset}_{split}_{scatteritem}.tsv"
    conda:
        "../envs/hand3d.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        shard=shard_index,
        shards=shard_total,
        box_scale=lookup(dpath="real/box_scale", within=config),
        num_params=num_params,
        version=versions.REAL_DATA,
    script:
        "../workflow_scripts/crop.py"


rule segment:
    input:
        h5="results/real/{dataset}/{split}/crops_{scatteritem}.h5",
    output:
        h5=temp("results/real/{dataset}/{split}/masks_{scatteritem}.h5"),
    log:
        "results/logs/segment/{dataset}_{split}_{scatteritem}.log",
    benchmark:
        "results/benchmarks/segment/{dataset}_{split}_{scatteritem}.tsv"
    conda:
        "../envs/hand3d.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,  # GrabCut at about 0.26 s a crop: a shard of STB's 45,000 frames from 3 cameras takes ~50 min
    params:
        grabcut=lookup(dpath="real/segment", within=config),
        version=versions.REAL_DATA,
    script:
        "../workflow_scripts/segment.py"


rule heatmaps:
    input:
        h5="results/real/{dataset}/{split}/crops_{scatteritem}.h5",
        index="results/real/{dataset}/{split}/samples.json",
    output:
        h5=temp("results/real/{dataset}/{split}/heatmaps_{scatteritem}.h5"),
    log:
        "results/logs/heatmaps/{dataset}_{split}_{scatteritem}.log",
    benchmark:
        "results/benchmarks/heatmaps/{dataset}_{split}_{scatteritem}.tsv"
    conda:
        "../envs/hand3d.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        heatmaps=lookup(dpath="real/heatmaps", within=config),
        version=versions.REAL_DATA,
    script:
        "../workflow_scripts/heatmaps.py"


rule pack_real:
    input:
        crops=gather.real("results/real/{{dataset}}/{{split}}/crops_{scatteritem}.h5"),
        masks=gather.real("results/real/{{dataset}}/{{split}}/masks_{scatteritem}.h5"),
        heatmaps=gather.real(
            "results/real/{{dataset}}/{{split}}/heatmaps_{scatteritem}.h5"
        ),
        crop_issues=gather.real(
            "results/real/{{dataset}}/{{split}}/crop_issues_{scatteritem}.json"
        ),
        index="results/real/{dataset}/{split}/samples.json",
    output:
        h5="results/datasets/{dataset}_{split}.h5",
        issues="results/real/{dataset}/{split}/issues.json",
    log:
        "results/logs/pack_real/{dataset}_{split}.log",
    wildcard_constraints:
        dataset="mpii_nzsl|panoptic|stb|freihand",
    conda:
        "../envs/hand3d.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,  # FreiHAND's 4 versions: reads ~53 GB of shards and writes a ~71 GB file
    script:
        "../workflow_scripts/pack_real.py"


rule real_issues:
    input:
        unpack(split_issue_files),
    output:
        json="results/real/{dataset}/issues.json",
    log:
        "results/logs/real_issues/{dataset}.log",
    conda:
        "../envs/hand3d.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/real_issues.py"


rule real_preview:
    input:
        h5=preview_split,
    output:
        png=report(
            "results/real/{dataset}/preview.png",
            caption="report/real_preview.rst",
            category="3. Real data",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "crops"},
        ),
    log:
        "results/logs/real_preview/{dataset}.log",
    conda:
        "../envs/hand3d.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/synthetic_preview.py"
