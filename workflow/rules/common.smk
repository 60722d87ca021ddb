# Config validation, derived names (feature-set hashes, experiment runs, shards) and input functions.
# Logic lives in the actiondiff package (actiondiff.plan); this file only hands config values to it.

import json
import os
import sys
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

from actiondiff.plan import (
    annotation_checksums,
    annotation_warnings,
    check_config,
    check_paths,
    check_protocols,
    content_digest,
    feature_set_protocols,
    feature_sets,
    manifest_is_current,
    parse_experiments,
    shared_extraction_groups,
)
from actiondiff.io.manifest import num_shards, read_manifest
from actiondiff.settings import ALL_TAPS
from actiondiff.tools.demo_weights import planning_checksums

# Our own short message first (key, allowed values, source); Snakemake's validate then fills
# in the schema's defaults. Then every input the config names must exist (the demo's own files
# excepted while still to be built), one line per missing path, naming its key.
SOURCE = "config/config.yaml, --configfile or --config"
check_config(config, workflow.source_path("../schemas/config.schema.yaml"), SOURCE)
validate(config, "../schemas/config.schema.yaml")
check_paths(config, SOURCE)

# The feature hash names the weights' content. Planning writes nothing outside .snakemake/: it
# keeps its checksum cache there and reads the demo's tiny weights, until the first run builds
# them (rule make_tiny_weights), from a seeded copy built there once.
PLANNING = ".snakemake/actiondiff"

# The settings objects check values, names and references (an unknown feature set, a tap the
# feature set does not extract) and refuse unknown keys too, before any job runs.
FEATURE_SETS = feature_sets(config, planning_checksums(config, PLANNING))
EXPERIMENTS = parse_experiments(config, FEATURE_SETS)
BY_HASH = {fs.settings_hash: fs for fs in FEATURE_SETS.values()}
USED_SETS = sorted({e.feature_set.name for e in EXPERIMENTS.values()})
DATASET = config["dataset"]["name"]
# Used sets that share one pass per video (plan.share_groups): {group id: their hashes}. Each
# group's extract_shared jobs shard the union of its sets' videos; every other set keeps its own
# extract_features jobs. Every set keeps its own cache, verify and store either way.
SHARED = shared_extraction_groups({name: FEATURE_SETS[name] for name in USED_SETS})
GROUP_OF = {digest: group for group, hashes in SHARED.items() for digest in hashes}
for warning in annotation_warnings(config["dataset"], EXPERIMENTS):
    print(f"WARNING: {warning}", file=sys.stderr)

# Every experiment's protocol against the manifest's domains, now when a current manifest is
# there (one line); otherwise once the checkpoint is read (get_shard_outputs).
_CHECKED = set()
_MANIFEST = f"results/manifests/{DATASET}.csv"
if manifest_is_current(_MANIFEST, config["dataset"]):
    check_protocols(EXPERIMENTS, read_manifest(_MANIFEST), _MANIFEST)
    _CHECKED.add(_MANIFEST)

# build_manifest's settings: the dataset block, plus one SHA-256 of the annotation files' content
# (not for the demo's own labels), so an edited file reruns it and a copied one (new mtime) does not.
_ANNOTATIONS = annotation_checksums(config, f"{PLANNING}/annotations-sha256.json")
_DIGEST = {"annotations_sha256": content_digest(_ANNOTATIONS)} if _ANNOTATIONS else {}
MANIFEST_SETTINGS = json.dumps({"dataset": config["dataset"], **_DIGEST})

RUN = "{dataset}/{experiment}/{variant}/{tap}"


wildcard_constraints:
    dataset=r"[^/]+",
    settings_hash=r"[0-9a-f]{12}",
    group=r"[0-9a-f]{12}",
    shard=r"\d+",
    tap=r"L\d\d_T\d\d|ALL",
    experiment=r"[A-Za-z0-9_]+",
    variant=r"[A-Za-z0-9_.-]+",
    protocol=r"[a-z0-9_]+",


def _store(fs):
    return f"results/stores/{DATASET}/{fs.settings_hash}.zarr"


def _evaluation(name, variant, tap):
    return f"results/eval/{DATASET}/{name}/{variant}/{tap}/evaluation.json"


def _in_table(table):
    return [e for e in EXPERIMENTS.values() if table in e.settings.tables and not e.settings.matrix]


def table_protocols():
    """Protocols with a results table (Tables 1-3 style)."""
    return sorted({e.protocol.name for e in _in_table("results")})


def get_final_outputs():
    """Every table and figure of every experiment, plus the extraction report of each store."""
    outputs = []
    for protocol in table_protocols():
        outputs += expand(
            "results/tables/{dataset}/results_{protocol}.{ext}",
            dataset=DATASET,
            protocol=protocol,
            ext=["csv", "md"],
        )
    if _in_table("ablation"):
        outputs += expand(
            "results/tables/{dataset}/ablation.{ext}", dataset=DATASET, ext=["csv", "md"]
        )
    for name, experiment in EXPERIMENTS.items():
        figures = f"results/figures/{DATASET}/{name}"
        if experiment.settings.grid:
            outputs += [f"{figures}/grid.png", f"{figures}/grid.pdf"]
        if experiment.settings.matrix:
            outputs += expand(
                f"{figures}/{{plot}}.{{ext}}", plot=["matrix", "baseline"], ext=["png", "pdf"]
            )
            # the figure, or a page saying why it is not drawn
            outputs.append(f"{figures}/frequency")
        if "results" in experiment.settings.tables and not experiment.settings.matrix:
            outputs += [f"{figures}/per_domain_accuracy.png", f"{figures}/confusion.png"]
        if experiment.head.kind == "aggregate" and not experiment.settings.matrix:
            outputs += [f"{figures}/mixing.png", f"results/tables/{DATASET}/{name}/taps.md"]
    for name in [name for name, e in EXPERIMENTS.items() if e.settings.timelines]:
        outputs.append(f"results/figures/{DATASET}/{name}/timelines")
    for name in USED_SETS:
        outputs.append(
            f"results/tables/{DATASET}/extraction/{FEATURE_SETS[name].settings_hash}.settings.csv"
        )
    return outputs


def _settings(settings_hash):
    """The extraction settings blocks of one feature set (by its hash)."""
    fs = BY_HASH[settings_hash]
    experiment = next(e for e in EXPERIMENTS.values() if e.feature_set.name == fs.name)
    values = experiment.run_settings(config, "main")
    return {k: values[k] for k in ("backbone", "decode", "extraction", "weights", "device")}


def get_settings_json(wildcards=None):
    """The extraction settings blocks of one feature set (by its hash), as one JSON object."""
    return json.dumps(_settings(wildcards.settings_hash), sort_keys=True)


def get_group_manifests(wildcards):
    """The selected videos of each feature set of one share group (checkpoint select_videos)."""
    return [f"results/manifests/{wildcards.dataset}/{h}.csv" for h in SHARED[wildcards.group]]


def get_group_sets_json(wildcards):
    """`actiondiff extract-shared --sets` of one share group: per set (named by its hash) its
    videos, its cache and its settings blocks, as extract_features hands them over one by one."""
    sets = []
    for digest in SHARED[wildcards.group]:
        manifest = f"results/manifests/{wildcards.dataset}/{digest}.csv"
        out = f"results/features/{wildcards.dataset}/{digest}"
        sets.append(
            {
                "name": digest,
                "manifest": manifest,
                "out": out,
                "settings": _settings(digest),
                "settings_hash": digest,
            }
        )
    return json.dumps({"sets": sets, "device": sets[0]["settings"]["device"]}, sort_keys=True)


def get_selection_settings(wildcards):
    """The protocol blocks of every run on one feature set (by its hash): they choose its videos."""
    return json.dumps(
        {"protocols": feature_set_protocols(EXPERIMENTS, BY_HASH[wildcards.settings_hash].name)},
        sort_keys=True,
    )


def get_run_settings(wildcards, variant=None):
    """Every settings block of one experiment run (feature set, protocol, head, train, run)."""
    return json.dumps(
        EXPERIMENTS[wildcards.experiment].run_settings(config, variant or wildcards.variant),
        sort_keys=True,
    )


def get_timeline_settings(wildcards):
    """The settings of an experiment's first run (its protocol names the held-out videos)."""
    return get_run_settings(wildcards, EXPERIMENTS[wildcards.experiment].runs()[0][0])


def get_aggregate_models(wildcards):
    """An aggregate experiment's checkpoints (one per seed): its mixing weights."""
    seeds = EXPERIMENTS[wildcards.experiment].seeds
    return [
        f"results/models/{DATASET}/{wildcards.experiment}/main/{ALL_TAPS}/seed{seed}.safetensors"
        for seed in seeds
    ]


def get_timeline_history(wildcards):
    """The history of an experiment's first run: written with its checkpoints."""
    variant, tap = EXPERIMENTS[wildcards.experiment].runs()[0]
    return f"results/models/{DATASET}/{wildcards.experiment}/{variant}/{tap}/history.csv"


def get_timeline_model(wildcards):
    """The first seed's head of an experiment's first run: it draws the timelines."""
    experiment = EXPERIMENTS[wildcards.experiment]
    variant, tap = experiment.runs()[0]
    return f"results/models/{DATASET}/{experiment.name}/{variant}/{tap}/seed{experiment.seeds[0]}.safetensors"


def get_run_store(wildcards):
    """The run's store, ancient: a folder (no checksum), named by its features' identity; a
    re-pack of the same cache writes the same bytes."""
    return ancient(_store(EXPERIMENTS[wildcards.experiment].feature_set))


def get_model_files(wildcards):
    seeds = EXPERIMENTS[wildcards.experiment].seeds
    return [
        f"results/models/{RUN}/seed{seed}.safetensors".format(**wildcards, seed=seed)
        for seed in seeds
    ]


def get_protocol_evaluations(wildcards):
    """The evaluations of every run listed in the results table of one protocol."""
    return [
        _evaluation(e.name, variant, tap)
        for e in _in_table("results")
        if e.protocol.name == wildcards.protocol
        for variant, tap in e.runs()
    ]


def get_ablation_evaluations(wildcards):
    return [
        _evaluation(e.name, variant, tap)
        for e in _in_table("ablation")
        for variant, tap in e.runs()
    ]


def get_experiment_evaluations(wildcards):
    experiment = EXPERIMENTS[wildcards.experiment]
    return [_evaluation(experiment.name, variant, tap) for variant, tap in experiment.runs()]


def get_first_evaluation(wildcards):
    experiment = EXPERIMENTS[wildcards.experiment]
    return _evaluation(experiment.name, *experiment.runs()[0])


def get_compare_inputs(wildcards):
    """An aggregate experiment's evaluation and checkpoints, and those of the experiments it
    names in `compare`: a grid's (one per tap) and single taps'."""
    experiment = EXPERIMENTS[wildcards.experiment]
    others = [EXPERIMENTS[name] for name in experiment.settings.compare]
    return {
        "aggregate": _evaluation(
            experiment.name, "main", ALL_TAPS
        ),  # written after its models (params)
        "grid": [_evaluation(e.name, v, t) for e in others if e.settings.grid for v, t in e.runs()],
        "singles": [
            _evaluation(e.name, v, t) for e in others if not e.settings.grid for v, t in e.runs()
        ],
    }


def get_weight_files(wildcards):
    """The backbone weight files of the feature set (or of every set of the share group) as
    inputs when they are local files (the demo's are built by a rule). Ancient: their content
    names the feature hash (the cache and store paths), so a copy with new mtimes reruns nothing
    and other bytes plan a new store."""
    hashes = SHARED[wildcards.group] if "group" in wildcards.keys() else [wildcards.settings_hash]
    files = dict.fromkeys(f for h in hashes for f in BY_HASH[h].weight_inputs)
    demo = config["weights_dir"]
    return [ancient(f) for f in files if f.startswith(demo) or os.path.exists(f)]


def get_annotations(wildcards):
    """The dataset's annotation files. A user's are ancient: their content is in build_manifest's
    settings (MANIFEST_SETTINGS), so a copy reruns nothing and an edit reruns the manifest. The
    demo's own labels are a plain input: rebuilt by make_demo_data when the demo settings change."""
    files = config["dataset"]["annotations"]
    files = files if isinstance(files, list) else [files]
    own = os.path.normpath(f"{config['demo_dir']}/labels.csv")
    return [f if os.path.normpath(f) == own else ancient(f) for f in files]


def get_shard_manifests(wildcards):
    """The manifests whose id-sorted union the feature set's extraction shards cut: its own, or
    those of every set of its share group."""
    group = GROUP_OF.get(wildcards.settings_hash)
    hashes = SHARED[group] if group else [wildcards.settings_hash]
    return [f"results/manifests/{wildcards.dataset}/{h}.csv" for h in hashes]


def get_shard_outputs(wildcards):
    """One done-file per shard of the feature set's videos, or of the union of its share group's
    videos (extract_shared); the count is read from those checkpoints. Every experiment's
    protocol is first checked against the whole manifest's domains (once per manifest), so a
    typo fails before any extraction."""
    full = checkpoints.build_manifest.get(dataset=wildcards.dataset).output.manifest
    if full not in _CHECKED:
        check_protocols(EXPERIMENTS, read_manifest(full), full)
        _CHECKED.add(full)
    group = GROUP_OF.get(wildcards.settings_hash)
    videos = set()
    for digest in SHARED[group] if group else [wildcards.settings_hash]:
        manifest = checkpoints.select_videos.get(
            dataset=wildcards.dataset, settings_hash=digest
        ).output.manifest
        videos.update(read_manifest(manifest).video_id)
    count = num_shards(pd.DataFrame({"video_id": sorted(videos)}), config["shard_size"])
    folder = f"shared/{group}" if group else wildcards.settings_hash
    shards = expand(
        "results/features/{dataset}/{folder}/shards/{shard}.json",
        dataset=wildcards.dataset,
        folder=folder,
        shard=range(count),
    )
    # A shared shard's summary is rewritten whenever one set of the group needs the shard again
    # (verify removed it for a damaged video): the other sets only skip, so their stores (the
    # grid's: hundreds of GB) must not be repacked for it. A missing store still packs.
    return [ancient(shard) for shard in shards] if group else shards


# Folders passed to the CLI come from the rule's own output (or the config), never as literal
# path prefixes in the rule: `snakemake --lint` flags those, as they break without a shared
# filesystem.
def get_demo_dir(wildcards, output):
    """The demo folder: where make_demo_data's labels.csv lies."""
    return str(Path(output.labels).parent)


def get_weights_dir(wildcards, output):
    """The tiny-weights folder: `{weights_dir}/tiny-<name>/...` of the rule's first output."""
    first = Path(output[0])
    return str(first.parents[2] if first.parent.name in ("unet", "vae") else first.parents[1])


def get_cache_dir(wildcards):
    """The per-video cache of one (dataset, feature identity): never a declared output, since
    Snakemake would delete a failed job's committed videos with it."""
    return f"results/features/{wildcards.dataset}/{wildcards.settings_hash}"


def get_videos_dir(wildcards):
    """The dataset's video folder(s), as configured."""
    return config["dataset"]["videos"]
