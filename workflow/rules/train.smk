# Training and evaluation read only the packed store and the manifest: no GPU, no videos.


rule train_head:
    input:
        store="results/stores/{dataset}/{settings_hash}.zarr",
        manifest="results/manifests/{dataset}.csv",
    output:
        models=expand("results/models/{{dataset}}/{{settings_hash}}/{{tap}}/seed{seed}.safetensors", seed=SEEDS),
        history="results/models/{dataset}/{settings_hash}/{tap}/history.csv",
    params:
        out="results/models/{dataset}/{settings_hash}/{tap}",
        settings=get_settings_json(),
    log:
        "logs/train_head/{dataset}/{settings_hash}/{tap}.log",
    shell:
        "actiondiff train --store {input.store} --manifest {input.manifest} --tap {wildcards.tap}"
        " --out {params.out} --settings {params.settings:q} > {log} 2>&1"


rule evaluate_head:
    input:
        store="results/stores/{dataset}/{settings_hash}.zarr",
        manifest="results/manifests/{dataset}.csv",
        models=expand("results/models/{{dataset}}/{{settings_hash}}/{{tap}}/seed{seed}.safetensors", seed=SEEDS),
    output:
        evaluation="results/eval/{dataset}/{settings_hash}/{tap}/evaluation.json",
    params:
        settings=get_settings_json(),
    log:
        "logs/evaluate_head/{dataset}/{settings_hash}/{tap}.log",
    shell:
        "actiondiff evaluate --store {input.store} --manifest {input.manifest} --models {input.models}"
        " --out {output.evaluation} --settings {params.settings:q} > {log} 2>&1"
