"""The `actiondiff` command: one subcommand per pipeline stage, used by the Snakemake rules.

Settings arrive as JSON objects (`--settings '{"decode": {...}, ...}'`, as the rules pass
them) or from a YAML config file (`--config config/config.yaml`); both are validated by the
same settings classes, so an unknown key fails before any work starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from .datasets import DATASETS
from .settings import (
    DecodeSettings,
    ExtractSettings,
    WeightsSettings,
    from_dict,
    settings_hash,
    to_dict,
)

log = logging.getLogger("actiondiff")


def _load_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The merged settings mapping from --config (YAML) and --settings (JSON, wins)."""
    merged: dict[str, Any] = {}
    if getattr(args, "config", None):
        merged.update(yaml.safe_load(Path(args.config).read_text()) or {})
    if getattr(args, "settings", None):
        merged.update(json.loads(args.settings))
    return merged


def extraction_settings(values: dict[str, Any]) -> tuple[DecodeSettings, ExtractSettings, WeightsSettings]:
    """The three extraction settings objects from a config mapping."""
    return (
        from_dict(DecodeSettings, values.get("decode"), "config key `decode`"),
        from_dict(ExtractSettings, values.get("extraction"), "config key `extraction`"),
        from_dict(WeightsSettings, values.get("weights"), "config key `weights`"),
    )


def cmd_demo_data(args: argparse.Namespace) -> int:
    from .demo_data import make_demo_dataset

    values = _load_settings(args).get("demo", {})
    table = make_demo_dataset(args.out, **values)
    print(f"wrote {len(table)} demo videos and labels.csv to {args.out}")
    return 0


def cmd_make_weights(args: argparse.Namespace) -> int:
    from .weights import make_tiny_weights

    paths = make_tiny_weights(args.out, seed=args.seed)
    print(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))
    return 0


def cmd_manifest(args: argparse.Namespace) -> int:
    from .datasets import CustomColumns, ManifestRequest, build_manifest
    from .manifest import MISSING_ATTR, write_manifest, write_missing

    values = _load_settings(args).get("dataset", {})
    request = ManifestRequest(
        dataset=args.dataset,
        annotations=tuple(args.annotations or ()),
        videos=tuple(args.videos),
        columns=from_dict(CustomColumns, values.get("columns"), "config key `dataset.columns`"),
        folder_levels=values.get("folder_levels", "label"),
        split_number=args.split_number or values.get("split_number", 1),
        allow_missing=args.allow_missing or bool(values.get("allow_missing", False)),
    )
    manifest = build_manifest(request)
    write_manifest(manifest, args.out)
    dropped = manifest.attrs.get(MISSING_ATTR, [])
    if args.missing:
        write_missing(manifest, args.missing)
    print(f"wrote manifest of {len(manifest)} videos to {args.out}")
    if dropped:
        print(f"dropped {len(dropped)} rows whose video file is missing:")
        for row in dropped:
            print(f"  {row['video_id']}\t{row['path']}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from .extract_job import run_extraction
    from .extractor import SVDExtractor
    from .feature_cache import FeatureCache
    from .manifest import read_manifest, shard_ids

    values = _load_settings(args)
    decode, extract, weights = extraction_settings(values)
    digest = settings_hash(extract_identity(decode, extract, weights))
    cache = FeatureCache(Path(args.out), digest)
    cache.root.mkdir(parents=True, exist_ok=True)
    (cache.root / "settings.json").write_text(
        json.dumps(extract_identity(decode, extract, weights), indent=2, sort_keys=True) + "\n"
    )
    if args.manifest:
        manifest = read_manifest(args.manifest).set_index("video_id")
        ids = shard_ids(manifest.reset_index(), args.shard, args.shard_size) if args.shard is not None else list(manifest.index)
        videos = [(v, manifest.loc[v, "path"]) for v in ids]
    else:
        videos = [(Path(p).stem, p) for p in args.videos]
    device = values.get("device", "cpu")
    summary = run_extraction(
        videos, cache, lambda: SVDExtractor.from_weights(weights, decode, extract, device), strict=args.strict
    )
    print(summary.line())
    if args.done:
        Path(args.done).parent.mkdir(parents=True, exist_ok=True)
        Path(args.done).write_text(json.dumps(summary.__dict__, indent=2, sort_keys=True) + "\n")
    return 1 if args.strict and summary.failed else 0


def extract_identity(decode: DecodeSettings, extract: ExtractSettings, weights: WeightsSettings) -> dict[str, Any]:
    """Everything that determines the features: its hash names the cache and the store."""
    return {"decode": to_dict(decode), "extraction": to_dict(extract), "weights": to_dict(weights)}


def cmd_pack(args: argparse.Namespace) -> int:
    from .feature_cache import FeatureCache
    from .manifest import read_manifest
    from .store import pack_store
    from .weights import weights_identity

    identity = json.loads((Path(args.cache) / "settings.json").read_text())
    digest = settings_hash_of(identity)
    cache = FeatureCache(args.cache, digest)
    manifest = read_manifest(args.manifest)
    attrs = {
        "settings": identity,
        "settings_hash": digest,
        "backbone": {"name": "svd", "files": weights_identity(identity["weights"]["svd"], identity["weights"]["clip_checkpoint"])},
    }
    counts = pack_store(cache, list(manifest.video_id), args.out, attrs)
    failures = [f for v in manifest.video_id if (f := cache.failure(v))]
    write_failures(failures, args.failures)
    print(f"packed {counts['packed']} videos into {args.out}; {counts['missing']} without features ({len(failures)} failed)")
    return 0


def settings_hash_of(identity: dict[str, Any]) -> str:
    """The settings hash of a stored identity mapping (same as for the settings objects)."""
    decode = from_dict(DecodeSettings, identity["decode"], "settings.json `decode`")
    extract = from_dict(ExtractSettings, identity["extraction"], "settings.json `extraction`")
    weights = from_dict(WeightsSettings, identity["weights"], "settings.json `weights`")
    return settings_hash(extract_identity(decode, extract, weights))


def write_failures(failures: list[dict[str, Any]], path: str | Path | None) -> None:
    if not path:
        return
    import pandas as pd

    columns = ["video_id", "path", "kind", "error_type", "message"]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(failures, columns=columns).sort_values("video_id").to_csv(path, index=False)


def cmd_store_info(args: argparse.Namespace) -> int:
    from .store import store_info

    info = store_info(args.store)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print(f"store     {info['path']} (settings {info['settings_hash']}, actiondiff {info['actiondiff_version']})")
    print(f"videos    {info['videos']}")
    print(f"frames    {info['frames']}")
    print(f"layers    {info['layers']}   timesteps {info['timestep_indices']}")
    for tap, tap_info in info["taps"].items():
        print(f"  {tap}  {tap_info['channels']} channels, {tap_info['chunk_rows']} rows/chunk, {tap_info['bytes']:,} bytes")
    print(f"size      {info['size_bytes']:,} bytes on disk")
    print(f"ratio     {info['compression_ratio']:.2f} (raw float16 features / stored)")
    print("settings  " + json.dumps(info["settings"], sort_keys=True))
    return 0


def cmd_store_verify(args: argparse.Namespace) -> int:
    from .feature_cache import FeatureCache
    from .store import verify_store

    if bool(args.store) == bool(args.cache):
        raise ValueError("Expected exactly one of STORE or --cache DIR, but got " + ("both." if args.store else "neither."))
    if args.store:
        report = verify_store(args.store)
    else:
        identity = json.loads((Path(args.cache) / "settings.json").read_text())
        report = FeatureCache(args.cache, settings_hash_of(identity)).verify()
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def _experiment_settings(values: dict[str, Any]):
    from .head import HeadSettings
    from .protocols import ProtocolSettings
    from .train import train_settings

    protocol = from_dict(ProtocolSettings, values.get("protocol"), "config key `protocol`")
    train_values = dict(values.get("train", {}))
    # The protocol decides single- vs multi-label and the paper's preset unless the config says.
    preset = train_values.pop("preset", protocol.spec.preset)
    train_values.setdefault("multilabel", protocol.spec.multilabel)
    seeds = train_values.pop("seeds", [0])
    return (
        protocol,
        from_dict(HeadSettings, values.get("head"), "config key `head`"),
        train_settings(preset, train_values),
        list(seeds),
    )


def cmd_train(args: argparse.Namespace) -> int:
    from .experiment import train_seeds
    from .manifest import read_manifest
    from .settings import tap_name

    values = _load_settings(args)
    protocol, head, train, seeds = _experiment_settings(values)
    extract = from_dict(ExtractSettings, values.get("extraction"), "config key `extraction`")
    tap = args.tap or tap_name(extract.layers[0], extract.timestep_indices[0])
    paths = train_seeds(args.store, read_manifest(args.manifest), tap, protocol, head, train, seeds, args.out)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .experiment import evaluate_models, write_json
    from .manifest import read_manifest

    protocol = _experiment_settings(_load_settings(args))[0]
    result = evaluate_models(args.store, read_manifest(args.manifest), protocol, args.models)
    # The protocol's own metrics (headline first), so tables label what they show.
    result["protocol"] = {**to_dict(protocol), "metrics": list(protocol.spec.metrics), "headline_metric": protocol.headline_metric}
    # Videos without features (failed extraction, see the store's failures.csv) are excluded.
    result["num_excluded_videos"] = len(result.get("excluded_videos", []))
    write_json(result, args.out)
    name = protocol.headline_metric
    value = result["metrics"][name]
    print(f"{name} on {result['num_test_videos']} test videos: {value['mean']:.1f} +- {value['std']:.1f}"
          f" ({result['num_excluded_videos']} videos excluded: no features)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .figures import write_results

    write_results(args.evaluation, table=args.table, markdown=args.markdown, figure=args.figure, confusion=args.confusion)
    print(f"wrote {args.table}, {args.markdown}, {args.figure}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actiondiff", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_text: str, settings: bool = True) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(func=func)
        if settings:
            command.add_argument("--config", help="YAML config file (e.g. config/config.yaml)")
            command.add_argument("--settings", help="JSON object of settings; overrides --config")
        return command

    p = add("demo-data", cmd_demo_data, "write the embedded demo videos and labels.csv")
    p.add_argument("--out", required=True, help="output folder")

    p = add("make-weights", cmd_make_weights, "write seeded tiny SVD + OpenCLIP weights", settings=False)
    p.add_argument("--out", required=True, help="output folder (tiny-svd/, tiny-clip/)")
    p.add_argument("--seed", type=int, default=0)

    p = add("manifest", cmd_manifest, "build the canonical manifest of a dataset")
    p.add_argument("dataset", choices=list(DATASETS), help="dataset adapter")
    p.add_argument(
        "--annotations", nargs="+",
        help="annotation file or folder as shipped: custom: the label table (CSV/TSV; omit for one sub-folder "
        "per class); animal_kingdom: AR_metadata.xlsx; charades_ego: the CSV folder; ucf101: ucfTrainTestlist/; "
        "hmdb51: testTrainMulti_7030_splits/; ucf_hmdb: both, UCF first",
    )
    p.add_argument("--videos", nargs="+", required=True, help="videos folder (ucf_hmdb: UCF-101/ then hmdb51/)")
    p.add_argument("--out", required=True, help="manifest CSV to write")
    p.add_argument("--allow-missing", action="store_true",
                   help="drop rows whose video file is missing, listing them (or config `dataset.allow_missing`)")
    p.add_argument("--missing", help="CSV listing the rows dropped by --allow-missing")
    p.add_argument("--split-number", type=int, help="ucf101 / hmdb51: official split 1-3 (default: config "
                   "`dataset.split_number`, else 1)")

    p = add("extract", cmd_extract, "extract features of videos (a manifest shard, or files) into a cache")
    p.add_argument("videos", nargs="*", help="video files (ad-hoc use; ids are the file stems)")
    p.add_argument("--manifest", help="manifest CSV (instead of video files)")
    p.add_argument("--shard", type=int, help="shard index within the manifest")
    p.add_argument("--shard-size", type=int, default=16, help="videos per shard")
    p.add_argument("--out", required=True, help="cache folder for these settings")
    p.add_argument("--done", help="write a JSON summary here when the shard is finished")
    p.add_argument("--strict", action="store_true", help="stop at the first bad video")

    p = add("pack", cmd_pack, "pack committed per-video features into a Zarr store", settings=False)
    p.add_argument("--cache", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True, help="store path (.zarr)")
    p.add_argument("--failures", help="CSV of videos that failed extraction")

    p = add("store", None, "inspect or verify a packed store (or a per-video cache)", settings=False)
    store_sub = p.add_subparsers(dest="store_command", required=True)
    q = store_sub.add_parser("info", help="videos, frames, taps, settings, size, compression ratio")
    q.set_defaults(func=cmd_store_info)
    q.add_argument("store", help="store path (.zarr)")
    q.add_argument("--json", action="store_true", help="print the summary as JSON")
    q = store_sub.add_parser("verify", help="check every video; exit 1 naming the damaged ones")
    q.set_defaults(func=cmd_store_verify)
    q.add_argument("store", nargs="?", help="store path (.zarr)")
    q.add_argument("--cache", help="verify a per-video cache folder instead (results/features/<dataset>/<hash>)")

    p = add("train", cmd_train, "train heads (one per seed) on a packed store")
    p.add_argument("--store", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--tap", help="feature to train on, e.g. L09_T20 (default: first layer/timestep)")
    p.add_argument("--out", required=True, help="folder for seed{k}.safetensors/.json")

    p = add("evaluate", cmd_evaluate, "evaluate trained heads on the protocol's test videos")
    p.add_argument("--store", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--models", nargs="+", required=True, help="checkpoints (.safetensors)")
    p.add_argument("--out", required=True, help="evaluation JSON")

    p = add("report", cmd_report, "tables and figures of an evaluation", settings=False)
    p.add_argument("--evaluation", required=True, help="evaluation JSON")
    p.add_argument("--table", required=True, help="results CSV")
    p.add_argument("--markdown", required=True, help="results Markdown")
    p.add_argument("--figure", required=True, help="per-domain accuracy PNG")
    p.add_argument("--confusion", required=True, help="confusion matrix PNG")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        log.error("%s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
