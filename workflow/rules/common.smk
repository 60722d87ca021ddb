# Config validation, derived names (settings hash, shards) and input functions.
# Logic lives in the actiondiff package; this file only hands config values to it.

import json

from snakemake.utils import validate

from actiondiff.cli import extract_identity, extraction_settings
from actiondiff.manifest import num_shards, read_manifest
from actiondiff.settings import settings_hash, tap_name


validate(config, "../schemas/config.schema.yaml")

# The settings objects check values and refuse unknown keys too, before any job runs.
DECODE, EXTRACT, WEIGHTS = extraction_settings(config)
SETTINGS_HASH = settings_hash(extract_identity(DECODE, EXTRACT, WEIGHTS))
DATASET = config["dataset"]["name"]
TAP = tap_name(EXTRACT.layers[0], EXTRACT.timestep_indices[0])
SEEDS = config["train"]["seeds"]

FEATURES = f"results/features/{DATASET}/{SETTINGS_HASH}"
STORE = f"results/stores/{DATASET}/{SETTINGS_HASH}.zarr"
MODELS = f"results/models/{DATASET}/{SETTINGS_HASH}/{TAP}"
EVALUATION = f"results/eval/{DATASET}/{SETTINGS_HASH}/{TAP}/evaluation.json"


wildcard_constraints:
    dataset=r"[^/]+",
    settings_hash=r"[0-9a-f]{12}",
    shard=r"\d+",
    tap=r"L\d\d_T\d\d",


def get_final_outputs():
    return [
        STORE,
        f"results/tables/{DATASET}/results.csv",
        f"results/tables/{DATASET}/results.md",
        f"results/figures/{DATASET}/per_domain_accuracy.png",
        f"results/figures/{DATASET}/confusion.png",
    ]


def get_settings_json():
    """Every settings block a stage command needs, as one JSON object."""
    keys = ("decode", "extraction", "weights", "device", "protocol", "head", "train")
    return json.dumps({k: config[k] for k in keys if k in config}, sort_keys=True)


def get_weight_files(wildcards):
    """Weight files as inputs when they are local files (the demo's are built by a rule)."""
    files = [
        f"{WEIGHTS.svd}/unet/config.json",
        f"{WEIGHTS.svd}/vae/config.json",
        WEIGHTS.clip_arch,
        WEIGHTS.clip_checkpoint,
    ]
    demo = config["weights_dir"]
    return [f for f in files if f.startswith(demo) or os.path.exists(f)]


def get_shard_outputs(wildcards):
    """One done-file per shard; the shard count is read from the manifest checkpoint."""
    manifest = checkpoints.build_manifest.get(dataset=wildcards.dataset).output.manifest
    count = num_shards(read_manifest(manifest), config["shard_size"])
    return expand(
        "results/features/{dataset}/{settings_hash}/shards/{shard}.json",
        dataset=wildcards.dataset,
        settings_hash=wildcards.settings_hash,
        shard=range(count),
    )
