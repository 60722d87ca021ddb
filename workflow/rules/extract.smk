# Extraction: manifest -> sharded GPU jobs committing each video atomically -> packed store.
# Per-video files under results/features/ are never declared outputs: a failed or killed job
# must not lose the videos it already committed (Snakemake deletes failed jobs' outputs).


localrules:
    build_manifest,
    pack_store,


checkpoint build_manifest:
    input:
        annotations=config["dataset"]["annotations"],
    output:
        manifest="results/manifests/{dataset}.csv",
        missing="results/manifests/{dataset}.missing.csv",
    params:
        adapter=config["dataset"]["adapter"],
        videos=config["dataset"]["videos"],
        settings=json.dumps({"dataset": config["dataset"]}),
    log:
        "logs/build_manifest/{dataset}.log",
    shell:
        "actiondiff build-manifest {params.adapter} --annotations {input.annotations:q} --videos {params.videos:q}"
        " --out {output.manifest} --missing {output.missing} --settings {params.settings:q} > {log} 2>&1"


rule extract_features:
    input:
        manifest="results/manifests/{dataset}.csv",
        weights=get_weight_files,
    output:
        done="results/features/{dataset}/{settings_hash}/shards/{shard}.json",
    params:
        cache="results/features/{dataset}/{settings_hash}",
        shard_size=config["shard_size"],
        settings=get_settings_json,
    log:
        "logs/extract_features/{dataset}/{settings_hash}/{shard}.log",
    shell:
        "actiondiff extract-features --manifest {input.manifest} --shard {wildcards.shard} --shard-size {params.shard_size}"
        " --out {params.cache} --done {output.done} --settings-hash {wildcards.settings_hash} --settings {params.settings:q}"
        " > {log} 2>&1"


rule pack_store:
    input:
        manifest="results/manifests/{dataset}.csv",
        shards=get_shard_outputs,
    output:
        store=directory("results/stores/{dataset}/{settings_hash}.zarr"),
        failures="results/stores/{dataset}/{settings_hash}.failures.csv",
    params:
        cache="results/features/{dataset}/{settings_hash}",
    log:
        "logs/pack_store/{dataset}/{settings_hash}.log",
    shell:
        "actiondiff pack-store --cache {params.cache} --manifest {input.manifest} --out {output.store}"
        " --failures {output.failures} > {log} 2>&1"
