"""Named experiments: feature sets x protocol x head x training, expanded into training runs.

The config's `feature_sets` are named overrides of its `extraction` (and `decode`) blocks; each is one
extraction pass (one settings hash, one store) serving every layer x timestep it lists. Its
`experiments` name a feature set plus overrides of the `protocol`, `head` and `train` blocks.
An experiment expands into *runs*, one trained head (per seed) each:

| experiment | runs (variant, tap) |
|---|---|
| plain | ("main", tap) for each of its taps |
| `grid: true` | the same; its taps are drawn as a layer x timestep grid (Fig. 5) |
| `matrix: [d1, ..., dn]` | ("from_<d>", tap) per domain d: train on d, test on every other (Fig. 4) |

Each run is evaluated by `actiondiff.learn.run.evaluate_run`. A feature set extracts only the
videos its experiments read (`select_videos`: the rows their protocols give a role). This module
only parses the config and the manifest, so that Snakemake plans a workflow without importing torch. The paper's published
numbers live in `actiondiff.report.paper`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from actiondiff.features.backbones import (
    DEFAULT_BACKBONE,
    backbone_class,
    feature_hash,
    feature_identity,
    resolve_settings,
)
from actiondiff.features.backbones.registry import canonical_name
from actiondiff.io.datasets.charades_ego import view_files
from actiondiff.io.datasets.custom import CustomColumns
from actiondiff.learn.protocols import VIEW_SIDES, ProtocolSettings, assign_roles
from actiondiff.settings import (
    ALL_TAPS,
    DecodeSettings,
    HeadSettings,
    WeightsSettings,
    _doc,
    from_dict,
    is_tap_name,
    resolve_train,
    to_dict,
)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_]+$")
TABLES = ("results", "ablation")
MAIN_VARIANT = "main"



@dataclass(frozen=True)
class ExperimentSettings:
    """One named experiment of the config's `experiments` block."""

    feature_set: str = _doc("default", "name of the feature set (config `feature_sets`) it trains on")
    taps: tuple[str, ...] = _doc((), "features to train on, e.g. L09_T20 (empty: every layer x timestep of the set)")
    grid: bool = _doc(False, "draw its taps as a layer x timestep heatmap (Fig. 5)")
    matrix: tuple[str, ...] = _doc((), "domains of a domain-to-domain matrix (Fig. 4): train on each, test on the others")
    tables: tuple[str, ...] = _doc(("results",), "tables listing its rows: results (per protocol) | ablation")
    ablation: str = _doc("", "what it varies in the ablation table (head, window, loss, conditioning, layer...)")
    label: str = _doc("", "row label in tables (empty: the experiment's name)")
    timelines: bool = _doc(False, "draw action timelines of its held-out (test) videos with its first seed's head")
    compare: tuple[str, ...] = _doc(
        (), "aggregate head: experiments it is compared with (a grid, for the best tap on validation and on test; single taps)"
    )
    protocol: dict[str, Any] = field(default_factory=dict, metadata={"doc": "overrides of the `protocol` block"})
    head: dict[str, Any] = field(default_factory=dict, metadata={"doc": "overrides of the `head` block"})
    train: dict[str, Any] = field(default_factory=dict, metadata={"doc": "overrides of the `train` block (preset, seeds, ...)"})

    def __post_init__(self) -> None:
        for tap in self.taps:
            if not is_tap_name(tap):
                raise ValueError(f"Expected each of `taps` to look like L09_T20, but got {tap!r}.")
        unknown = sorted(set(self.tables) - set(TABLES))
        if unknown:
            raise ValueError(f"Expected `tables` to be among {list(TABLES)}, but got {unknown}.")
        if self.matrix and len(self.matrix) < 2:
            raise ValueError(f"Expected `matrix` to name at least two domains, but got {list(self.matrix)}.")
        if len(set(self.matrix)) != len(self.matrix):
            raise ValueError(f"Expected `matrix` domains to be distinct, but got {list(self.matrix)}.")


@dataclass(frozen=True)
class FeatureSet:
    """One extraction pass: its backbone, settings objects and their hash (names the store).

    `extract` is the backbone's settings object (`ExtractSettings` for SVD and SDv2).
    """

    name: str
    decode: DecodeSettings
    extract: Any
    weights: WeightsSettings
    settings_hash: str
    backbone: str = DEFAULT_BACKBONE
    share: bool = True  # config `share: false`: always its own pass (e.g. a set too large for the others' cards)

    @property
    def taps(self) -> list[str]:
        return backbone_class(self.backbone).taps_of(self.extract)

    @property
    def weight_inputs(self) -> list[str]:
        """Weight files the backbone reads that a workflow can wait for (e.g. built demo weights)."""
        return [str(f) for f in backbone_class(self.backbone).weight_inputs(self.weights)]

    @property
    def window(self) -> int | str:
        """Frames per backbone window: `decode.window`, or "checkpoint" where the backbone's
        checkpoint sets its clip length (VideoMAE, V-JEPA 2)."""
        if "window" in backbone_class(self.backbone).replaces_decode:
            return "checkpoint"
        return self.decode.window

    @property
    def backbone_label(self) -> str:
        """The backbone as tables name it: `sdv2` for SVD with `sdv2: true`."""
        return canonical_name(self.backbone, self.extract)


@dataclass(frozen=True)
class Experiment:
    """A validated experiment with its feature set resolved."""

    name: str
    settings: ExperimentSettings
    feature_set: FeatureSet
    protocol: ProtocolSettings
    head: HeadSettings
    seeds: tuple[int, ...]
    blocks: dict[str, Any]  # the protocol, head and train blocks after the overrides

    @property
    def taps(self) -> list[str]:
        """The taps it trains on, one run each; the aggregate head's one run reads them all (`ALL`)."""
        if self.head.kind == "aggregate":
            return [ALL_TAPS]
        return list(self.settings.taps) or self.feature_set.taps

    @property
    def variants(self) -> list[str]:
        """`main`, or one `from_<domain>` per matrix domain."""
        if not self.settings.matrix:
            return [MAIN_VARIANT]
        return [variant_name(d) for d in self.settings.matrix]

    def runs(self) -> list[tuple[str, str]]:
        """Every (variant, tap) it trains."""
        return [(variant, tap) for variant in self.variants for tap in self.taps]

    def protocol_block(self, variant: str) -> dict[str, Any]:
        """The protocol block of one variant: a matrix variant trains on its one domain."""
        block = dict(self.blocks["protocol"])
        if variant != MAIN_VARIANT:
            domain = dict(zip(self.variants, self.settings.matrix, strict=True))[variant]
            block["train_domains"] = [domain]
            block["test_domains"] = [d for d in self.settings.matrix if d != domain]
        return block

    def run_settings(self, config: dict[str, Any], variant: str) -> dict[str, Any]:
        """Every settings block the stage commands need for one run, plus a `run` block naming it."""
        return {
            "backbone": self.feature_set.backbone,
            "decode": to_dict(self.feature_set.decode),
            "extraction": to_dict(self.feature_set.extract),
            "weights": to_dict(self.feature_set.weights),
            "device": config.get("device", "cpu"),
            "protocol": self.protocol_block(variant),
            "head": self.blocks["head"],
            "train": self.blocks["train"],
            "run": {
                "experiment": self.name,
                "variant": variant,
                "label": self.settings.label or self.name,
                "feature_set": self.feature_set.name,
                "ablation": self.settings.ablation,
                "head": self.head.kind,
                "backbone": self.feature_set.backbone_label,
                "conditioning": getattr(self.feature_set.extract, "conditioning", ""),
                "window": self.feature_set.window,
                "sdv2": bool(getattr(self.feature_set.extract, "sdv2", False)),
                "settings_hash": self.feature_set.settings_hash,
            },
        }


def variant_name(domain: str) -> str:
    """`from_<domain>` with every run of characters outside [A-Za-z0-9_.-] replaced by `_`."""
    return "from_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", domain).strip("_")


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"Expected {kind} names to match {NAME_PATTERN.pattern}, but got {name!r}.")


# Named feature-set presets (`feature_sets.<name>.preset`); the set's own keys override them.
# `authors_code`: the authors' script as they ran it (generate_svd_maps.py on sgm, issue 30):
# every frame conditions itself, z from the first-stage encoder copy (single-file weights only),
# sgm's GroupNorm eps, and only the first 180 s of each video (`read_video(end_pts=180)`).
FEATURE_SET_PRESETS: dict[str, dict[str, Any]] = {
    "authors_code": {
        "conditioning": "per_frame",
        "z_encoder": "first_stage",
        "resnet_norm_eps": "sgm",
        "decode": {"max_seconds": 180},
    },
}


def _with_preset(overrides: dict[str, Any], where: str) -> dict[str, Any]:
    """A feature set's block with its `preset` expanded (its own keys win; `decode` merged)."""
    name = overrides.pop("preset", None)
    if name is None:
        return overrides
    if name not in FEATURE_SET_PRESETS:
        raise ValueError(f"Expected `preset` to be one of {sorted(FEATURE_SET_PRESETS)}, but got {name!r} ({where}).")
    preset = dict(FEATURE_SET_PRESETS[name])
    decode = {**preset.pop("decode", {}), **(overrides.pop("decode", None) or {})}
    return {**preset, **overrides, "decode": decode}


def feature_sets(config: dict[str, Any], checksums: dict[str, dict[str, str]] | None = None) -> dict[str, FeatureSet]:
    """The config's feature sets (default: one, `default`, the `extraction` block as is).

    Each is a named override of the `extraction` block (optionally on top of a `preset`,
    `FEATURE_SET_PRESETS`), plus optionally a `decode` block
    overriding the config's `decode` (window length, stride, size) and a `backbone` (default:
    the config's top-level `backbone`, else `svd`); see
    `actiondiff.features.backbones.registry.resolve_settings` for what each backbone inherits.

    Args:
        checksums: {backbone: {role: SHA-256}} of its weights, as planning reads them
            (`actiondiff.tools.demo_weights.planning_checksums`); None: computed here through
            the configured checksum cache, a file missing now counting as `missing`.
    Raises:
        ValueError: a bad name, an unknown backbone, key or value in an override.
    """
    blocks = config.get("feature_sets") or {"default": {}}
    weights = from_dict(WeightsSettings, config.get("weights"), "config key `weights`")
    default_backbone = config.get("backbone") or DEFAULT_BACKBONE
    sets = {}
    for name, overrides in blocks.items():
        _check_name("feature set", name)
        overrides = _with_preset(dict(overrides or {}), f"config key `feature_sets.{name}`")
        share = overrides.pop("share", True)
        if not isinstance(share, bool):
            raise ValueError(f"Expected `share` to be true or false, but got {share!r} (config key `feature_sets.{name}`).")
        # A `decode` block overrides the config's (e.g. the window length of Table 4).
        decode_values = {**(config.get("decode") or {}), **(overrides.pop("decode", None) or {})}
        decode = from_dict(DecodeSettings, decode_values, f"config key `feature_sets.{name}.decode`")
        backbone, extract = resolve_settings(
            config.get("extraction"), overrides, default_backbone, f"config key `feature_sets.{name}`"
        )
        identity = feature_identity(decode, backbone, extract, weights, None if checksums is None else checksums[backbone])
        sets[name] = FeatureSet(name, decode, extract, weights, feature_hash(identity), backbone, share)
    by_hash: dict[str, list[str]] = {}
    for name, feature_set in sets.items():
        by_hash.setdefault(feature_set.settings_hash, []).append(name)
    same = [names for names in by_hash.values() if len(names) > 1]
    if same:
        raise ValueError(
            f"Expected feature sets to differ in their settings, but {' and '.join(map(str, same))} are identical "
            "(each would extract the same features twice). If you passed --configfile, Snakemake merged it into "
            "config/config.yaml, whose demo feature sets stay: add --replace-workflow-config to use only your file."
        )
    return sets


def config_errors(config: dict[str, Any], schema: dict[str, Any], source: str = "the config") -> list[str]:
    """Schema violations of `config` as short lines naming the key, what was expected and the
    source; empty when valid (Snakemake's own message dumps the whole schema)."""
    import jsonschema

    lines = []
    for error in sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.path)
        if error.validator == "additionalProperties":
            known = sorted(error.schema.get("properties", {}))
            unknown = sorted(set(error.instance) - set(known))
            key = ".".join([where, *unknown[:1]]) if where else unknown[0]
            lines.append(f"Expected config key `{key}` to be one of {known}, but it is unknown ({source}). Check the spelling.")
        elif error.validator == "enum":
            lines.append(f"Expected config key `{where}` to be one of {error.validator_value}, but got {error.instance!r} ({source}).")
        elif error.validator == "required":
            lines.append(f"Expected config key `{where or 'the top level'}` to have {error.message.split(' is a required')[0]} ({source}).")
        else:
            lines.append(f"Expected config key `{where}` to satisfy {error.validator} {error.validator_value!r}, but got {error.instance!r} ({source}).")
    return lines


def check_config(config: dict[str, Any], schema_path: str | Path, source: str) -> None:
    """Raise one short ValueError listing the first schema violations of `config`."""
    import yaml

    errors = config_errors(config, yaml.safe_load(Path(schema_path).read_text()), source)
    if errors:
        more = f"\n  ... and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise ValueError("Invalid config:\n  " + "\n  ".join(errors[:5]) + more)


def parse_experiments(config: dict[str, Any], sets: dict[str, FeatureSet] | None = None) -> dict[str, Experiment]:
    """The config's experiments, validated with every reference resolved, before any job runs.

    Default: one experiment `main` on the feature set `default`.

    Args:
        sets: the config's feature sets when already built (`feature_sets`).
    Raises:
        ValueError: a bad name, an unknown feature set (named, with the known ones), a tap the
            feature set does not extract, or an invalid override.
    """
    sets = feature_sets(config) if sets is None else sets
    experiments = {}
    for name, values in (config.get("experiments") or {"main": {}}).items():
        _check_name("experiment", name)
        where = f"config key `experiments.{name}`"
        settings = from_dict(ExperimentSettings, values, where)
        if settings.feature_set not in sets:
            raise ValueError(
                f"Expected `feature_set` to be one of the feature sets {sorted(sets)}, but got "
                f"{settings.feature_set!r} ({where}). Add it under `feature_sets`."
            )
        feature_set = sets[settings.feature_set]
        missing = sorted(set(settings.taps) - set(feature_set.taps))
        if missing:
            raise ValueError(
                f"Expected `taps` to be among the feature set's {feature_set.taps}, but got {missing} ({where})."
            )
        blocks = {key: {**(config.get(key) or {}), **getattr(settings, key)} for key in ("protocol", "head", "train")}
        protocol = from_dict(ProtocolSettings, blocks["protocol"], f"{where} `protocol`")
        if settings.matrix and protocol.name not in ("custom", "ak_unseen_species"):
            raise ValueError(
                f"Expected a `matrix` experiment's protocol to be custom or ak_unseen_species, but got {protocol.name!r} ({where})."
            )
        head = from_dict(HeadSettings, blocks["head"], f"{where} `head`")
        _, seeds = resolve_train(blocks["train"], protocol.spec.preset, protocol.spec.multilabel, f"{where} `train`")
        experiment = Experiment(name, settings, feature_set, protocol, head, tuple(seeds), blocks)
        for variant in experiment.variants:
            from_dict(ProtocolSettings, experiment.protocol_block(variant), f"{where} variant {variant}")
        if len(set(experiment.variants)) != len(experiment.variants):
            raise ValueError(f"Expected matrix domains to have distinct names, but got {list(settings.matrix)} ({where}).")
        experiments[name] = experiment
    for experiment in experiments.values():
        check_compare(experiment, experiments)
    return experiments


def check_compare(experiment: Experiment, experiments: dict[str, Experiment]) -> None:
    """An aggregate experiment's `compare` names other experiments of its protocol and feature
    set: at most one grid (the best tap on validation and on test) and single-tap runs.

    Raises:
        ValueError: naming the experiment and what is wrong.
    """
    where = f"config key `experiments.{experiment.name}.compare`"
    if experiment.settings.compare and experiment.head.kind != "aggregate":
        raise ValueError(f"Expected `compare` only on an experiment with head.kind aggregate, but {experiment.name!r} has {experiment.head.kind!r} ({where}).")
    for other in experiment.settings.compare:
        if other not in experiments:
            raise ValueError(f"Expected `compare` to name experiments among {sorted(experiments)}, but got {other!r} ({where}).")
        theirs = experiments[other]
        if theirs.settings.matrix or theirs.head.kind == "aggregate" or theirs.feature_set.name != experiment.feature_set.name:
            raise ValueError(
                f"Expected `compare` to name single-tap experiments (no matrix) on feature set {experiment.feature_set.name!r}, "
                f"but {other!r} is not one ({where})."
            )
        if theirs.protocol_block(MAIN_VARIANT) != experiment.protocol_block(MAIN_VARIANT):
            raise ValueError(f"Expected `compare` experiments to share the protocol of {experiment.name!r}, but {other!r} has another ({where}).")
    if sum(experiments[o].settings.grid for o in experiment.settings.compare) > 1:
        raise ValueError(f"Expected `compare` to name at most one grid experiment, but got {list(experiment.settings.compare)} ({where}).")



def check_protocols(experiments: dict[str, Experiment], manifest: Any, where: str) -> None:
    """Apply every run's protocol to the manifest, so that an unknown domain or species group,
    a missing column or an empty role fails when planning, before any extraction.

    Args:
        manifest: the canonical manifest (a DataFrame), read from `where`.
    Raises:
        ValueError: the protocol's own error (naming the bad domains and the known ones), with
            the experiment, its variant and the manifest.
    """
    for name, experiment in experiments.items():
        for variant in experiment.variants:
            protocol = from_dict(ProtocolSettings, experiment.protocol_block(variant), f"config key `experiments.{name}`")
            try:
                assign_roles(manifest, protocol)
            except ValueError as error:
                raise ValueError(
                    f"{str(error).rstrip('.')} (config key `experiments.{name}`, variant {variant}; manifest {where})."
                ) from error


def feature_set_protocols(experiments: dict[str, Experiment], name: str) -> list[dict[str, Any]]:
    """The protocol block of every run variant of every experiment on feature set `name`
    (distinct, in experiment order): together they name the videos the set must extract."""
    blocks: list[dict[str, Any]] = []
    for experiment in experiments.values():
        if experiment.feature_set.name == name:
            blocks += [b for v in experiment.variants if (b := experiment.protocol_block(v)) not in blocks]
    return blocks


def select_videos(manifest: pd.DataFrame, protocol_blocks: list[dict[str, Any]]) -> pd.DataFrame:
    """The manifest rows some protocol gives a role (train, val or test): the videos a feature
    set extracts. A feature set read only by `ak_unseen_species` extracts its 5,749 clips of the
    published Animal Kingdom file, not all 30,100.

    Raises:
        ValueError: no protocol block, or one that fails on this manifest (named).
    """
    if not protocol_blocks:
        raise ValueError("Expected at least one protocol block to select videos for, but got none.")
    used = pd.Series(False, index=manifest.index)
    for block in protocol_blocks:
        protocol = from_dict(ProtocolSettings, block, "protocol block of `select-videos`")
        used |= assign_roles(manifest, protocol) != ""
    return manifest[used].reset_index(drop=True)


def annotation_warnings(dataset: dict[str, Any], experiments: dict[str, Experiment]) -> list[str]:
    """Warnings, before any job runs, about experiments whose annotation files are absent
    (Charades-Ego: the `_only<view>` or combined CSV of each side a protocol reads)."""
    warnings = []
    folder = Path(str(dataset.get("annotations", "")))
    if dataset.get("adapter") != "charades_ego" or not folder.is_dir():
        return warnings
    for name, experiment in experiments.items():
        views = VIEW_SIDES.get(experiment.protocol.name)
        if not views:
            continue
        for split, view in zip(("train", "test"), views, strict=True):
            candidates = view_files(split, view)
            if not any((folder / c).is_file() for c in candidates):
                warnings.append(
                    f"experiment {name!r} ({experiment.protocol.name}) needs the {split} rows of view {view}, but "
                    f"neither {candidates[0]} nor {candidates[1]} is in {folder}: its jobs will fail."
                )
    return warnings


# Where each `weights` key of the demo points, under `weights_dir`, and which tiny backbone
# builds it (`actiondiff make-tiny-weights`, rule make_tiny_weights).
DEMO_WEIGHTS = {
    "svd": ("tiny-svd", "svd"),
    "clip_arch": ("tiny-clip/open_clip_config.json", "svd"),
    "clip_checkpoint": ("tiny-clip/open_clip_model.safetensors", "svd"),
    "videomae": ("tiny-videomae", "videomae"),
    "vjepa2": ("tiny-vjepa2", "vjepa2"),
}
# A `weights` value that names a file by its form, not only by existing.
WEIGHT_FILE_SUFFIXES = (".json", ".safetensors", ".bin", ".pt", ".pth", ".ckpt")
DEVICE_PATTERN = re.compile(r"^(cpu|cuda|mps|xpu)(:\d+)?$")


def demo_weight_paths(config: dict[str, Any]) -> dict[str, Path]:
    """{`weights` key: the demo's own path under `weights_dir`} (what `make_tiny_weights` writes)."""
    folder = Path(config.get("weights_dir", "resources/weights"))
    return {key: folder / relative for key, (relative, _) in DEMO_WEIGHTS.items()}


def used_backbones(config: dict[str, Any]) -> list[str]:
    """The backbone names the config's feature sets use (default: the top-level `backbone`, else svd)."""
    default = config.get("backbone") or DEFAULT_BACKBONE
    sets = config.get("feature_sets") or {"default": {}}
    return sorted({(overrides or {}).get("backbone") or default for overrides in sets.values()})


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)] if value else []


def path_errors(config: dict[str, Any], source: str) -> list[str]:
    """One line per configured input that does not exist, naming its config key and path.

    Checked: `dataset.annotations` (files or folders), `dataset.videos` (folders), the
    `weights` keys of every backbone a feature set uses when their value is a path (a hub id or
    an OpenCLIP model name is checked when the weights are read), the custom adapter's
    `dataset.columns` against the table's header. The demo's own files (labels under
    `demo_dir`, tiny weights under `weights_dir`) are excepted while still to be built.
    """
    dataset, lines = config.get("dataset") or {}, []
    demo = Path(config.get("demo_dir", "resources/demo"))
    for path in _as_list(dataset.get("annotations")):
        if not Path(path).exists() and Path(path) != demo / "labels.csv":
            lines.append(f"Expected config key `dataset.annotations` to name an existing file or folder, but {path} does not exist ({source}).")
    for path in _as_list(dataset.get("videos")):
        if not Path(path).is_dir() and Path(path) != demo:
            what = "is not a folder" if Path(path).exists() else "does not exist"
            lines.append(f"Expected config key `dataset.videos` to name an existing folder, but {path} {what} ({source}).")
    weights, own = config.get("weights") or {}, demo_weight_paths(config)
    keys = sorted({k for name in used_backbones(config) for k in _weight_keys(name)})
    for key in keys:
        value = str(weights.get(key) or "")
        if _names_a_path(value) and not Path(value).expanduser().exists() and Path(value) != own.get(key):
            lines.append(f"Expected config key `weights.{key}` to name an existing file or folder, but {value} does not exist ({source}).")
    device = str(config.get("device", "cpu"))
    if not DEVICE_PATTERN.match(device):
        lines.append(f"Expected config key `device` to be a torch device such as cpu, cuda, cuda:1 or mps, but got {device!r} ({source}).")
    return lines + column_errors(dataset, source)


def _names_a_path(value: str) -> bool:
    """A `weights` value meant as a local path: not empty, not `hf-hub:<repo>`, not a hub id
    (`org/name`: checked in the local cache when read), not a name (`ViT-H-14`)."""
    if not value or value.startswith("hf-hub:"):
        return False
    hub_id = value.count("/") == 1 and not value.startswith((".", "/", "~"))
    return not hub_id and ("/" in value or value.startswith((".", "~")) or value.endswith(WEIGHT_FILE_SUFFIXES))


def _weight_keys(name: str) -> tuple[str, ...]:
    try:
        return backbone_class(name).weight_keys
    except ValueError:  # an unknown backbone: named by feature_sets
        return ()


def column_errors(dataset: dict[str, Any], source: str) -> list[str]:
    """The custom adapter's configured columns missing from its table's header (read now)."""
    files = _as_list(dataset.get("annotations"))
    if dataset.get("adapter") != "custom" or len(files) != 1 or not Path(files[0]).is_file():
        return []
    table = Path(files[0])
    sep = "\t" if table.suffix in (".tsv", ".tab") else ","  # as the custom adapter reads it
    try:
        header = [c.strip() for c in pd.read_csv(table, sep=sep, nrows=0, dtype=str, encoding="utf-8-sig").columns]
    except (ValueError, OSError, UnicodeDecodeError) as error:
        return [f"Expected config key `dataset.annotations` to name a readable CSV/TSV table, but reading {table} failed: {error} ({source})."]
    columns = to_dict(from_dict(CustomColumns, dataset.get("columns"), "config key `dataset.columns`"))
    return [
        f"Expected config key `dataset.columns.{key}` to name a column of {table}, but {name!r} is not among {header} ({source})."
        for key, name in columns.items()
        if name and name not in header
    ]


def check_paths(config: dict[str, Any], source: str) -> None:
    """Raise one short ValueError listing every missing input and bad value (`path_errors`)."""
    errors = path_errors(config, source)
    if errors:
        raise ValueError("Invalid config:\n  " + "\n  ".join(errors))


# Annotation files whose content names the manifest (a folder's other files, e.g. videos, do not).
ANNOTATION_SUFFIXES = (".csv", ".tsv", ".tab", ".txt", ".json", ".xlsx", ".xls")


def annotation_checksums(config: dict[str, Any], cache: str | Path) -> dict[str, str]:
    """{path: SHA-256} of the dataset's annotation files (a folder: its annotation files, by
    suffix), cached by path, size and mtime in `cache`. Empty for the demo's own label table,
    whose content the demo settings name (rule make_demo_data).

    The workflow passes it to build_manifest as a parameter: an edited annotation file reruns
    the manifest by its content, with or without a new mtime, and a copied one does not.
    """
    from actiondiff.features.weight_files import ChecksumCache

    demo = Path(config.get("demo_dir", "resources/demo")) / "labels.csv"
    files: dict[str, Path] = {}
    for path in map(Path, _as_list((config.get("dataset") or {}).get("annotations"))):
        if path == demo:
            continue
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in ANNOTATION_SUFFIXES) if path.is_dir() else [path]
        files.update({str(p): p for p in found if p.is_file()})
    return ChecksumCache(cache).checksums(files) if files else {}


def content_digest(checksums: dict[str, str]) -> str:
    """One SHA-256 of {path: SHA-256}: a short parameter however many annotation files there are."""
    return hashlib.sha256("".join(f"{path}\t{sha}\n" for path, sha in sorted(checksums.items())).encode()).hexdigest()


def manifest_is_current(manifest: str | Path, dataset: dict[str, Any]) -> bool:
    """Whether `manifest` exists and is newer than every annotation file: then planning checks
    the protocols against it when it parses the workflow (one line), not only once the
    checkpoint is read (a traceback). A stale or copied one is left to the checkpoint."""
    manifest = Path(manifest)
    if not manifest.is_file():
        return False
    built = manifest.stat().st_mtime
    paths = [Path(p) for p in _as_list(dataset.get("annotations"))]
    return all(p.exists() and p.stat().st_mtime <= built for p in paths)


def set_share_key(fs: FeatureSet) -> tuple | None:
    """What must be equal for `fs` to share a pass with another set (`features.sharing.share_key`);
    None: it runs alone (another backbone, or `share: false`)."""
    from actiondiff.features.sharing import share_key

    return share_key(fs.backbone, fs.decode, fs.extract, fs.weights) if fs.share else None


def share_groups(sets: dict[str, FeatureSet]) -> list[list[str]]:
    """Which feature sets go together in one pass per video (`features/shared.py`, `actiondiff
    extract-shared`): the SVD sets of one `share_key` (same weights, decode but for the window,
    dtypes and tuning); every other set alone. Groups and their members in config order."""
    groups: dict[Any, list[str]] = {}
    for name, fs in sets.items():
        key = set_share_key(fs)
        groups.setdefault(("alone", name) if key is None else key, []).append(name)
    return list(groups.values())


def shared_extraction_groups(sets: dict[str, FeatureSet]) -> dict[str, list[str]]:
    """{group id: settings hashes} of the `share_groups` of two or more distinct hashes: the
    workflow extracts each such group with `extract_shared` jobs over the union of its sets'
    videos, and every other set alone with `extract_features` jobs (today's files and names).

    The group id is the first 12 hex digits of the SHA-256 of its sorted hashes: it names the
    shard summaries (`results/features/<dataset>/shared/<id>/shards/`), so a config that adds
    or drops a member plans new shard jobs, which skip every (video, set) already committed.
    """
    groups = {}
    for names in share_groups(sets):
        hashes = list(dict.fromkeys(sets[name].settings_hash for name in names))  # one cache per identity
        if len(hashes) > 1:
            groups[hashlib.sha256("+".join(sorted(hashes)).encode()).hexdigest()[:12]] = hashes
    return groups
