# Extraction: manifest -> the videos a feature set's experiments read -> sharded GPU jobs
# committing each video atomically (extract_features; extract_shared for the sets that share one
# pass per video) -> verify -> packed store.
# Per-video files under results/features/ are never declared outputs: a failed or killed job
# must not lose the videos it already committed (Snakemake deletes failed jobs' outputs).
# verify_features runs before every pack (its output is temp, so forcing pack_store forces it):
# a video neither committed intact nor recorded as failed fails it before the store is touched,
# and it removes the summaries of those videos' shards, so the next run re-extracts exactly them.


localrules:
    build_manifest,
    select_videos,
    verify_features,
    pack_store,


checkpoint build_manifest:
    input:
        annotations=get_annotations,
    output:
        manifest="results/manifests/{dataset}.csv",
        classes="results/manifests/{dataset}.classes.csv",
        missing="results/manifests/{dataset}.missing.csv",
    log:
        "logs/build_manifest/{dataset}.log",
    conda:
        "../../envs/actiondiff.yaml"
    params:
        adapter=config["dataset"]["adapter"],
        videos=get_videos_dir,
        settings=MANIFEST_SETTINGS,
    shell:
        "actiondiff build-manifest {params.adapter} --annotations {input.annotations:q} --videos {params.videos:q}"
        " --out {output.manifest} --missing {output.missing} --settings {params.settings:q} > {log} 2>&1"


checkpoint select_videos:
    input:
        manifest="results/manifests/{dataset}.csv",
    output:
        manifest="results/manifests/{dataset}/{settings_hash}.csv",
        classes="results/manifests/{dataset}/{settings_hash}.classes.csv",
    log:
        "logs/select_videos/{dataset}/{settings_hash}.log",
    conda:
        "../../envs/actiondiff.yaml"
    params:
        settings=get_selection_settings,
    shell:
        "actiondiff select-videos --manifest {input.manifest} --out {output.manifest} --settings {params.settings:q} > {log} 2>&1"


rule extract_features:
    input:
        manifest="results/manifests/{dataset}/{settings_hash}.csv",
        weights=get_weight_files,
    output:
        done="results/features/{dataset}/{settings_hash}/shards/{shard}.json",
    log:
        "logs/extract_features/{dataset}/{settings_hash}/{shard}.log",
    conda:
        "../../envs/extract.yaml"
    params:
        cache=get_cache_dir,
        shard_size=config["shard_size"],
        settings=get_settings_json,
    shell:
        "actiondiff extract-features --manifest {input.manifest} --shard {wildcards.shard} --shard-size {params.shard_size}"
        " --out {params.cache} --done {output.done} --settings-hash {wildcards.settings_hash} --settings {params.settings:q}"
        " > {log} 2>&1"


# Feature sets of one share group (common.smk, SHARED): one job per shard of the union of their
# videos (id-sorted, as extract_features shards one set's), one pass per video for the sets that
# still need it, each set committed into its own cache, so verify, pack and everything after
# read the same per-set caches as for a lone set.
rule extract_shared:
    input:
        manifests=get_group_manifests,
        weights=get_weight_files,
    output:
        done="results/features/{dataset}/shared/{group}/shards/{shard}.json",
    log:
        "logs/extract_shared/{dataset}/{group}/{shard}.log",
    conda:
        "../../envs/extract.yaml"
    params:
        shard_size=config["shard_size"],
        sets=get_group_sets_json,
    shell:
        "actiondiff extract-shared --sets {params.sets:q} --shard {wildcards.shard} --shard-size {params.shard_size}"
        " --done {output.done} > {log} 2>&1"


rule verify_features:
    input:
        manifest="results/manifests/{dataset}/{settings_hash}.csv",
        shard_manifests=get_shard_manifests,
        shards=get_shard_outputs,
    output:
        verified=temp("results/features/{dataset}/{settings_hash}/verified.json"),
    log:
        "logs/verify_features/{dataset}/{settings_hash}.log",
    retries: 0  # a deterministic check: a retry would only overwrite its log
    conda:
        "../../envs/actiondiff.yaml"
    params:
        cache=get_cache_dir,
        shard_size=config["shard_size"],
    shell:
        "actiondiff verify-features --cache {params.cache} --manifest {input.manifest} --shard-size {params.shard_size}"
        " --shard-manifests {input.shard_manifests} --shards {input.shards} --out {output.verified} > {log} 2>&1"


rule pack_store:
    input:
        manifest="results/manifests/{dataset}/{settings_hash}.csv",
        shards=get_shard_outputs,
        verified="results/features/{dataset}/{settings_hash}/verified.json",
    output:
        store=directory("results/stores/{dataset}/{settings_hash}.zarr"),
        failures="results/stores/{dataset}/{settings_hash}.failures.csv",
    log:
        "logs/pack_store/{dataset}/{settings_hash}.log",
    conda:
        "../../envs/actiondiff.yaml"
    params:
        cache=get_cache_dir,
    shell:
        "actiondiff pack-store --cache {params.cache} --manifest {input.manifest} --out {output.store}"
        " --failures {output.failures} > {log} 2>&1"
