# Training and evaluation read only the packed store and the manifest: no GPU, no videos.
# One run = one experiment, one variant (`main`, or `from_<domain>` of a matrix), one tap.


rule train_head:
    input:
        store=get_run_store,
        manifest="results/manifests/{dataset}.csv",
    output:
        history="results/models/{dataset}/{experiment}/{variant}/{tap}/history.csv",
    log:
        "logs/train_head/{dataset}/{experiment}/{variant}/{tap}.log",
    conda:
        "../../envs/actiondiff.yaml"
    params:
        out="results/models/{dataset}/{experiment}/{variant}/{tap}",
        settings=get_run_settings,
    shell:
        "actiondiff train-head --store {input.store} --manifest {input.manifest} --tap {wildcards.tap}"
        " --out {params.out} --settings {params.settings:q} > {log} 2>&1"


rule evaluate_head:
    input:
        store=get_run_store,
        manifest="results/manifests/{dataset}.csv",
        history="results/models/{dataset}/{experiment}/{variant}/{tap}/history.csv",
    output:
        evaluation="results/eval/{dataset}/{experiment}/{variant}/{tap}/evaluation.json",
    log:
        "logs/evaluate_head/{dataset}/{experiment}/{variant}/{tap}.log",
    conda:
        "../../envs/actiondiff.yaml"
    params:
        models=get_model_files,
        settings=get_run_settings,
    shell:
        "actiondiff evaluate-head --store {input.store} --manifest {input.manifest} --models {params.models}"
        " --out {output.evaluation} --settings {params.settings:q} > {log} 2>&1"
