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
import textwrap
from pathlib import Path
from typing import Any

import yaml

from actiondiff.io.datasets import DATASETS
from actiondiff.settings import (
    DecodeSettings,
    ExtractSettings,
    WeightsSettings,
    from_dict,
)
from actiondiff.store.records import atomic_write, remove_stale_temporaries
from actiondiff.tools.cpu_kernels import pin_cpu_kernels

log = logging.getLogger("actiondiff")


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override` merged in, block by block: `{"decode": {"height": 128}}` changes
    one key of `decode` and keeps the others (a non-mapping value replaces the old one)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _load_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The merged settings mapping from --config (YAML) and --settings (JSON, merged in key by key, wins)."""
    merged: dict[str, Any] = {}
    if getattr(args, "config", None):
        merged = yaml.safe_load(Path(args.config).read_text()) or {}
    if getattr(args, "settings", None):
        merged = deep_merge(merged, json.loads(args.settings))
    return merged


def extraction_settings(values: dict[str, Any]) -> tuple[DecodeSettings, ExtractSettings, WeightsSettings]:
    """The three extraction settings objects of the SVD backbone from a config mapping."""
    return (
        from_dict(DecodeSettings, values.get("decode"), "config key `decode`"),
        from_dict(ExtractSettings, values.get("extraction"), "config key `extraction`"),
        from_dict(WeightsSettings, values.get("weights"), "config key `weights`"),
    )


def backbone_settings(values: dict[str, Any]) -> tuple[DecodeSettings, str, Any, WeightsSettings]:
    """(decode, backbone name, its settings, weights) from a config mapping: top-level
    `backbone` (default svd) and the `extraction` keys that backbone takes."""
    from actiondiff.features.backbones import DEFAULT_BACKBONE, resolve_settings

    name, settings = resolve_settings(
        values.get("extraction"), {}, values.get("backbone") or DEFAULT_BACKBONE, "config key `extraction`"
    )
    return (
        from_dict(DecodeSettings, values.get("decode"), "config key `decode`"),
        name,
        settings,
        from_dict(WeightsSettings, values.get("weights"), "config key `weights`"),
    )


def cmd_demo_data(args: argparse.Namespace) -> int:
    from actiondiff.tools.demo_data import make_demo_dataset

    values = _load_settings(args).get("demo", {})
    table = make_demo_dataset(args.out, **values)
    print(f"wrote {len(table)} demo videos and labels.csv to {args.out}")
    return 0


def cmd_make_weights(args: argparse.Namespace) -> int:
    from actiondiff.tools.tiny_weights import make_tiny_weights

    paths = make_tiny_weights(args.out, seed=args.seed, backbones=tuple(args.backbone))
    print(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))
    return 0


def cmd_manifest(args: argparse.Namespace) -> int:
    from actiondiff.io.datasets import CustomColumns, ManifestRequest, build_manifest
    from actiondiff.io.manifest import MISSING_ATTR, format_summary, write_manifest, write_missing

    if not args.out and not args.summary:
        raise ValueError("Expected --out (the manifest CSV to write), --summary, or both, but got neither.")
    values = _load_settings(args).get("dataset", {})
    request = ManifestRequest(
        dataset=args.dataset,
        annotations=tuple(args.annotations or ()),
        videos=tuple(args.videos or (".",) * (2 if args.dataset == "ucf_hmdb" else 1)),
        columns=from_dict(CustomColumns, values.get("columns"), "config key `dataset.columns`"),
        folder_levels=values.get("folder_levels", "label"),
        split_number=args.split_number or values.get("split_number", 1),
        allow_missing=args.allow_missing or bool(values.get("allow_missing", False)),
        check_videos=not args.annotations_only,
    )
    if not args.videos and not args.annotations_only:
        raise ValueError("Expected --videos (the videos folder), or --annotations-only to read the annotations alone.")
    manifest = build_manifest(request)
    source = " + ".join(request.annotations) or " + ".join(request.videos)
    if args.out:
        write_manifest(manifest, args.out)
        print(f"wrote manifest of {len(manifest)} videos to {args.out}"
              + (" (annotations only: video files not checked)" if args.annotations_only else ""))
    dropped = manifest.attrs.get(MISSING_ATTR, [])
    if args.missing:
        write_missing(manifest, args.missing)
    if dropped:
        where = f"listed in {args.missing}" if args.missing else "pass --missing FILE to list them"
        print(f"dropped {len(dropped)} rows whose video file is missing ({where})")
    if args.summary:
        text = format_summary(manifest, source)
        if args.summary == "-":
            print(text, end="")
        else:
            Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
            Path(args.summary).write_text(text)
            print(f"wrote the summary to {args.summary}")
    return 0


def cmd_select_videos(args: argparse.Namespace) -> int:
    from actiondiff.io.manifest import read_manifest, write_manifest
    from actiondiff.plan import select_videos

    values = _load_settings(args)
    manifest = read_manifest(args.manifest)
    selected = select_videos(manifest, values.get("protocols") or [values.get("protocol") or {}])
    write_manifest(selected, args.out)
    print(f"selected {len(selected)} of {len(manifest)} videos (those the feature set's protocols read) into {args.out}")
    return 0


# SVD-XT's UNet widths (its published unet/config.json); the demo's tiny UNet has others.
SVD_XT_BLOCK_OUT_CHANNELS = [320, 640, 1280, 1280]


def warn_if_demo_weights(backbone: str, weights: WeightsSettings) -> None:
    """Warn loudly when ad-hoc extraction would use a UNet that is not SVD-XT's (the demo's tiny
    random weights are the config default): such features show the pipeline, not the method."""
    config = Path(weights.svd) / "unet" / "config.json"
    if backbone not in ("svd", "sdv2") or not config.is_file():
        return
    channels = json.loads(config.read_text()).get("block_out_channels")
    if list(channels or []) != SVD_XT_BLOCK_OUT_CHANNELS:
        log.warning(
            "%s is not SVD-XT's UNet (block_out_channels %s, SVD-XT has %s): these look like the "
            "demo's tiny RANDOM weights, and their features mean nothing. Set `weights.svd` to a real "
            "SVD-XT download (README, Getting the weights).", weights.svd, channels, SVD_XT_BLOCK_OUT_CHANNELS,
        )


def check_one_identity(root: Path, digest: str) -> None:
    """Refuse a cache folder that already holds features of other settings: one folder, one
    identity (the workflow names each cache by its hash; by hand, `--out` must differ)."""
    from actiondiff.features.backbones import feature_hash

    existing = root / "settings.json"
    if existing.is_file():
        other = feature_hash(json.loads(existing.read_text()), str(existing))
        if other != digest:
            raise ValueError(
                f"Expected cache folder {root} to hold one settings identity, but it holds features of "
                f"settings {other} and these settings hash to {digest}. Give another --out (e.g. {root}/{digest})."
            )


def cmd_extract(args: argparse.Namespace) -> int:
    from actiondiff.features.backbones import feature_hash, feature_identity, weight_checksums
    from actiondiff.features.job import BackboneLoader, run_extraction
    from actiondiff.features.multi_device import parse_devices, run_on_devices
    from actiondiff.features.weight_files import WeightsError
    from actiondiff.io.manifest import read_manifest, shard_ids
    from actiondiff.store.cache import FeatureCache
    from actiondiff.store.npy_files import export_committed, npy_folder

    values = _with_extraction_overrides(_load_settings(args), args)
    decode, backbone, extract, weights = backbone_settings(values)
    if args.device and args.devices:
        raise ValueError(f"Expected --device or --devices, but got both ({args.device!r} and {args.devices!r}).")
    devices = parse_devices(args.devices) if args.devices else [args.device or values.get("device", "cpu")]
    if args.manifest and (args.videos or args.list):
        raise ValueError("Expected videos from --manifest or from paths / --list, but got both.")
    # Settle which videos before any weight is hashed: a missing list file fails at once.
    if args.manifest:
        manifest = read_manifest(args.manifest).set_index("video_id")
        ids = shard_ids(manifest.reset_index(), args.shard, args.shard_size) if args.shard is not None else list(manifest.index)
        videos = [(v, manifest.loc[v, "path"]) for v in ids]
    else:
        videos = adhoc_videos([*args.videos, *(p for name in args.list or () for p in read_video_list(name))])
        warn_if_demo_weights(backbone, weights)
    # The identity holds the weights' content (checksums cached by path, size and mtime).
    identity = feature_identity(decode, backbone, extract, weights, weight_checksums(backbone, weights))
    digest = feature_hash(identity)
    if args.settings_hash and args.settings_hash != digest:
        raise WeightsError(
            f"Expected the extraction identity to hash to {args.settings_hash} (as the workflow planned it), but "
            f"it hashes to {digest} now: the weights changed after Snakemake planned the run. Rerun snakemake."
        )
    cache = FeatureCache(Path(args.out), digest)
    check_one_identity(cache.root, cache.settings_hash)
    cache.root.mkdir(parents=True, exist_ok=True)
    for path in [*cache.remove_stale_temporaries(), *remove_stale_temporaries(npy_folder(cache))]:
        log.info("removed %s, left by a killed writer", path)
    atomic_write(cache.root / "settings.json", (json.dumps(identity, indent=2, sort_keys=True) + "\n").encode())
    loader = BackboneLoader(backbone, extract, decode, weights, identity)
    on_committed = (lambda video_id: export_committed(cache, video_id)) if args.format == "npy" else None
    if len(devices) > 1:
        summary = run_on_devices(videos, cache, loader, devices, strict=args.strict, on_committed=on_committed)
    else:
        summary = run_extraction(videos, cache, lambda: loader(devices[0], cache), strict=args.strict, on_committed=on_committed)
    print(summary.line() + (f" on {len(devices)} devices ({', '.join(devices)})" if len(devices) > 1 else ""))
    if args.done:  # the workflow's output: written whole or not at all, so a kill leaves no empty JSON
        Path(args.done).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(Path(args.done), (json.dumps(summary.__dict__, indent=2, sort_keys=True) + "\n").encode())
    # Failed videos are recorded, not an error of the run (the workflow packs the rest and
    # reports them); --strict raised at the first one, which `main` turns into exit status 2.
    return 0


def cmd_extract_shared(args: argparse.Namespace) -> int:
    """One shard of the union of several feature sets' videos, one pass per video for the sets
    that need it (`features/shared.py`), each committed into its own cache."""
    import pandas as pd

    from actiondiff.features.backbones import feature_hash, feature_identity, weight_checksums
    from actiondiff.features.job import BackboneLoader
    from actiondiff.features.shared import SetTarget, run_shared_extraction
    from actiondiff.features.weight_files import WeightsError
    from actiondiff.io.manifest import read_manifest, shard_ids
    from actiondiff.store.cache import FeatureCache

    spec = json.loads(Path(args.sets).read_text() if Path(args.sets).is_file() else args.sets)
    targets, paths, manifests = {}, {}, {}
    for entry in spec["sets"]:  # every manifest first: a conflict fails before any weight is hashed
        manifests[entry["name"]] = manifest = read_manifest(entry["manifest"])
        for video_id, path in zip(manifest.video_id, manifest.path, strict=True):
            if paths.setdefault(video_id, path) != path:
                raise ValueError(
                    f"Expected video {video_id!r} to have one path in every manifest of --sets, but got "
                    f"{paths[video_id]!r} and {path!r} (--sets entry {entry['name']!r}, {entry['manifest']})."
                )
    for entry in spec["sets"]:
        where = f"--sets entry {entry['name']!r}"
        decode, backbone, extract, weights = backbone_settings(entry["settings"])
        manifest = manifests[entry["name"]]
        identity = feature_identity(decode, backbone, extract, weights, weight_checksums(backbone, weights))
        digest = feature_hash(identity)
        if entry.get("settings_hash") and entry["settings_hash"] != digest:
            raise WeightsError(
                f"Expected the extraction identity to hash to {entry['settings_hash']} (as the workflow planned it), but "
                f"it hashes to {digest} now ({where}): the weights changed after Snakemake planned the run. Rerun snakemake."
            )
        cache = FeatureCache(Path(entry["out"]), digest)
        check_one_identity(cache.root, digest)
        cache.root.mkdir(parents=True, exist_ok=True)
        for path in cache.remove_stale_temporaries():
            log.info("removed %s, left by a killed writer", path)
        atomic_write(cache.root / "settings.json", (json.dumps(identity, indent=2, sort_keys=True) + "\n").encode())
        loader = BackboneLoader(backbone, extract, decode, weights, identity)
        targets[entry["name"]] = SetTarget(loader, cache, frozenset(manifest.video_id))
    # the shard: a block of the id-sorted union, as `extract-features` shards one manifest
    union = pd.DataFrame({"video_id": sorted(paths)})
    ids = shard_ids(union, args.shard, args.shard_size) if args.shard is not None else list(union.video_id)
    summaries = run_shared_extraction([(v, paths[v]) for v in ids], targets, args.device or spec.get("device", "cpu"), args.strict)
    for name, summary in summaries.items():
        print(f"{name}: {summary.line()}")
    if args.done:  # written whole or not at all
        Path(args.done).parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({name: s.__dict__ for name, s in summaries.items()}, indent=2, sort_keys=True) + "\n"
        atomic_write(Path(args.done), text.encode())
    return 1 if args.strict and any(s.failed for s in summaries.values()) else 0


def read_video_list(list_file: str | Path) -> list[str]:
    """The video paths of a list file (`extract --list`): one per line; blank lines and `#`
    comments skipped; a relative path is relative to the list file's folder.

    Raises:
        FileNotFoundError: the list file does not exist (a listed video that does not exist is
            not an error here: extraction records it as failed, as a missing path argument).
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"Expected --list to name a file of video paths, but {list_file} does not exist.")
    paths = []
    for line in map(str.strip, list_file.read_text().splitlines()):
        if line and not line.startswith("#"):  # only whole lines are comments: a file name may hold `#`
            paths.append(str(list_file.parent / line))  # an absolute `line` stays as it is
    return paths


def adhoc_videos(paths: list[str]) -> list[tuple[str, str]]:
    """[(video_id, path)] of videos named on the command line: ids are the file stems, or the
    names of frame folders (which may contain dots). A path given twice counts once.

    Raises:
        ValueError: two different files share an id (`a.mp4`, `a.avi`), naming both paths:
            their features and error records would overwrite each other.
    """
    videos: dict[str, str] = {}
    for path in paths:
        video_id = Path(path).name if Path(path).is_dir() else Path(path).stem
        seen = videos.setdefault(video_id, path)
        if Path(seen).resolve() != Path(path).resolve():
            raise ValueError(
                f"Expected the videos to have distinct ids (file stems), but {seen!r} and {path!r} are both "
                f"{video_id!r}. Rename one, or list them in a manifest with ids of their own."
            )
    return list(videos.items())


def _with_extraction_overrides(values: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """`values` with the `backbone` and `extraction` keys given on the command line replaced."""
    if getattr(args, "backbone", None):
        values = {**values, "backbone": args.backbone}
    overrides = {
        "layers": getattr(args, "layers", None),
        "timestep_indices": getattr(args, "timesteps", None),
        "conditioning": getattr(args, "conditioning", None),
    }
    extraction = dict(values.get("extraction") or {})
    extraction.update({k: v for k, v in overrides.items() if v is not None})
    return {**values, "extraction": extraction}


def cmd_layers(args: argparse.Namespace) -> int:
    from actiondiff.tools.flops import format_layer_table

    decode = from_dict(DecodeSettings, _load_settings(args).get("decode"), "config key `decode`")
    print(format_layer_table(args.arch, decode, with_costs=args.gflops))
    return 0


def cmd_flops(args: argparse.Namespace) -> int:
    from actiondiff.tools.flops import cost_table, format_backbone_table, format_cost_table

    if args.backbones:
        print(format_backbone_table(tiny=args.arch == "tiny"))
        return 0
    values = _load_settings(args)
    if args.memory:
        from actiondiff.tools.memory import config_memory, format_config_memory

        title = f"{args.config or 'the config'}: {args.arch}, peak GPU memory of one window (meta-device estimate)"
        print(format_config_memory(config_memory(values, arch=args.arch), title))
        return 0
    if values.get("feature_sets") and not args.per_frame:
        from actiondiff.tools.config_cost import config_cost, format_config_cost

        cost = config_cost(values, videos=args.videos, kept_frames=args.kept_frames, arch=args.arch)
        title = f"{args.config or 'the config'}: {args.arch}, every feature set, separate passes vs one shared pass per video"
        print(format_config_cost(cost, title, fps=args.fps))
        return 0
    decode, extract, _ = extraction_settings(_with_extraction_overrides(_load_settings(args), args))
    title = (
        f"{args.arch} at {decode.height}x{decode.width}, window {decode.window}, layers "
        f"{list(extract.layers)}, timesteps {list(extract.timestep_indices)}, {extract.conditioning}"
    )
    print(format_cost_table(cost_table(args.arch, decode, extract), title))
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from actiondiff.features.backbones import feature_hash, parse_identity
    from actiondiff.io.manifest import read_manifest
    from actiondiff.store.cache import FeatureCache
    from actiondiff.store.packed import pack_store

    where = f"{args.cache}/settings.json"
    identity = json.loads((Path(args.cache) / "settings.json").read_text())
    digest = feature_hash(identity, where)
    cache = FeatureCache(args.cache, digest)
    manifest = read_manifest(args.manifest)
    _, name, _, weights = parse_identity(identity, where)
    files = cache.recorded_weights()
    if files is None:  # a cache extracted before checksums were recorded at load time
        from actiondiff.features.backbones import weight_file_checksums

        log.warning("%s records no weight checksums; taking them from the weights now", args.cache)
        files = weight_file_checksums(name, weights)
    attrs = {"settings": identity, "settings_hash": digest, "backbone": {"name": name, "files": files}}
    # A video neither committed nor recorded as failed lost its features (or never got them):
    # packing over it would leave it out of the store without a word.
    unaccounted = cache.unaccounted(list(manifest.video_id))
    if unaccounted:
        raise ValueError(
            f"Expected every video of {args.manifest} to be committed or recorded as failed in {args.cache}, "
            f"but {len(unaccounted)} are neither: {_first(unaccounted)}. Re-extract them: in the workflow "
            f"`snakemake --forcerun pack_store` twice (README, Resuming); by hand `actiondiff extract` of their shards."
        )
    for path in remove_stale_temporaries(Path(args.out).parent):
        log.info("removed %s, left by a killed writer", path)
    counts = pack_store(cache, list(manifest.video_id), args.out, attrs)
    failures = [f for v in manifest.video_id if (f := cache.failure(v))]
    write_failures(failures, args.failures)
    failed = {f["video_id"]: f"{f['error_type']}: {f['message']}" for f in failures if f["kind"] != "warning"}
    warned = {f["video_id"]: f["message"] for f in failures if f["kind"] == "warning"}
    print(f"packed {counts['packed']} videos into {args.out}; {len(failed)} failed (no features), "
          f"{len(warned)} decoded with warnings")
    for what, records in (("failed", failed), ("with warnings", warned)):
        if records:
            print(f"{what}: {_first(records, 5)}" + (f" (all in {args.failures})" if args.failures else ""))
    return 0


def _first(reasons: dict[str, str], count: int = 10) -> str:
    """The first `count` of {video_id: reason}, as `id (reason); ...`, and how many more."""
    shown = "; ".join(f"{v} ({why:.200})" for v, why in sorted(reasons.items())[:count])
    return shown + (f"; and {len(reasons) - count} more" if len(reasons) > count else "")


def _shards_of(manifest: Any, shard_manifests: list[str], shard_size: int) -> dict[str, int]:
    """{video_id: shard} of the videos of `manifest`, the shards cutting the id-sorted union of
    the videos of `shard_manifests` (one manifest: `extract-features`; a share group's:
    `extract-shared`).

    Raises:
        ValueError: a video of `manifest` that none of `shard_manifests` holds.
    """
    import pandas as pd

    from actiondiff.io.manifest import num_shards, read_manifest, shard_ids

    union = pd.DataFrame({"video_id": sorted({v for m in shard_manifests for v in read_manifest(m).video_id})})
    own = set(manifest.video_id)
    if own - set(union.video_id):
        raise ValueError(
            f"Expected every video of --manifest to be in one of --shard-manifests {shard_manifests}, but "
            f"{len(own - set(union.video_id))} are not: {', '.join(sorted(own - set(union.video_id))[:5])}."
        )
    count = num_shards(union, shard_size)
    return {v: i for i in range(count) for v in shard_ids(union, i, shard_size) if v in own}


def cmd_verify_features(args: argparse.Namespace) -> int:
    """Before packing: every manifest video committed intact or recorded as failed. Otherwise
    set damaged videos aside, remove the summaries of the shards holding the unaccounted
    videos (so the next run re-extracts exactly those videos) and fail, naming them."""
    from actiondiff.features.backbones import feature_hash
    from actiondiff.io.manifest import read_manifest
    from actiondiff.store.cache import FeatureCache

    identity = json.loads((Path(args.cache) / "settings.json").read_text())
    cache = FeatureCache(args.cache, feature_hash(identity, f"{args.cache}/settings.json"))
    manifest = read_manifest(args.manifest)
    shard_of = _shards_of(manifest, args.shard_manifests or [args.manifest], args.shard_size)
    problems = cache.unaccounted(sorted(shard_of), check_data=True)
    for video_id in sorted(problems):
        if cache.is_committed(video_id):  # damaged: uncommit it so that extraction redoes it
            aside = cache.set_aside(video_id)
            problems[video_id] += f" [set aside as {aside}]" if aside else ""
    summaries = {int(Path(p).stem): Path(p) for p in args.shards or ()}
    unreadable = []
    for shard, path in sorted(summaries.items()):
        try:
            summary = json.loads(path.read_text())
            # an extract-shared summary holds one entry per set, named (by the workflow) by its hash
            (summary if "extracted" in summary else summary[cache.settings_hash])["extracted"]
        except (OSError, ValueError, KeyError, TypeError):
            unreadable.append(shard)  # e.g. a 0-byte summary of an older, non-atomic writer
    incomplete = sorted({shard_of[v] for v in problems} | set(unreadable))
    if not incomplete:
        failed = sum(1 for v in shard_of if not cache.is_committed(v))
        counts = {"videos": len(shard_of), "committed": len(shard_of) - failed, "failed": failed}
        atomic_write(Path(args.out), (json.dumps(counts, sort_keys=True) + "\n").encode())
        print(f"verified {counts['committed']} committed videos in {args.cache}; {failed} recorded as failed")
        return 0
    for video_id, why in sorted(problems.items()):
        print(f"UNACCOUNTED {video_id} (shard {shard_of[video_id]}): {why}")
    for shard in unreadable:
        print(f"UNREADABLE shard summary {summaries[shard]}")
    removed = [summaries[s] for s in incomplete if s in summaries]
    for path in removed:
        path.unlink(missing_ok=True)
    if removed:
        print(f"removed the summaries of shards {incomplete}: rerun the same snakemake command to re-extract "
              f"exactly these {len(problems)} videos (committed ones are skipped), then pack")
    else:
        print(f"re-extract shards {incomplete}: `actiondiff extract --manifest {args.manifest} --shard N` "
              f"(committed videos are skipped), then pack")
    return 1


def write_failures(failures: list[dict[str, Any]], path: str | Path | None) -> None:
    if not path:
        return
    import pandas as pd

    columns = ["video_id", "path", "kind", "error_type", "message"]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(failures, columns=columns).sort_values("video_id").to_csv(path, index=False)


def cmd_store_info(args: argparse.Namespace) -> int:
    from actiondiff.store.packed import store_info

    info = store_info(args.store)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print(f"store     {info['path']} (settings {info['settings_hash']}, actiondiff {info['actiondiff_version']})")
    print(f"videos    {info['videos']}")
    print(f"frames    {info['frames']}")
    print(f"layers    {info['layers']}   timesteps {info['timestep_indices']}")
    for tap, tap_info in info["taps"].items():
        print(f"  {tap}  {tap_info['channels']} channels (columns {tap_info['columns'][0]}:{tap_info['columns'][1]})")
    print(f"features  inner chunks {info['chunk']}, shards {info['shard']} (rows x columns)")
    print(f"size      {info['size_bytes']:,} bytes on disk in {info['files']:,} files")
    print(f"ratio     {info['compression_ratio']:.2f} (raw float16 features / stored)")
    print("settings  " + json.dumps(info["settings"], sort_keys=True))
    return 0


def cmd_store_verify(args: argparse.Namespace) -> int:
    from actiondiff.features.backbones import feature_hash
    from actiondiff.store.cache import FeatureCache
    from actiondiff.store.packed import verify_store

    if bool(args.store) == bool(args.cache):
        raise ValueError("Expected exactly one of STORE or --cache DIR, but got " + ("both." if args.store else "neither."))
    if args.store:
        report = verify_store(args.store)
    else:
        identity = json.loads((Path(args.cache) / "settings.json").read_text())
        report = FeatureCache(args.cache, feature_hash(identity, f"{args.cache}/settings.json")).verify()
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def _experiment_settings(values: dict[str, Any]):
    from actiondiff.learn.head import HeadSettings
    from actiondiff.learn.protocols import ProtocolSettings
    from actiondiff.settings import resolve_train

    protocol = from_dict(ProtocolSettings, values.get("protocol"), "config key `protocol`")
    # The protocol decides single- vs multi-label and the paper's preset unless the config says.
    train, seeds = resolve_train(values.get("train"), protocol.spec.preset, protocol.spec.multilabel)
    return (
        protocol,
        from_dict(HeadSettings, values.get("head"), "config key `head`"),
        train,
        seeds,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from actiondiff.io.manifest import read_manifest
    from actiondiff.learn.run import train_seeds

    values = _load_settings(args)
    protocol, head, train, seeds = _experiment_settings(values)
    if args.tap:
        tap = args.tap
    elif head.kind == "aggregate":  # every tap of the store, side by side
        tap = "ALL"
    else:
        from actiondiff.features.backbones import backbone_class

        _, backbone, extract, _ = backbone_settings(values)
        tap = backbone_class(backbone).taps_of(extract)[0]
    device = args.device or values.get("device", "cpu")
    paths = train_seeds(args.store, read_manifest(args.manifest), tap, protocol, head, train, seeds, args.out, device=device)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from actiondiff.io.manifest import read_manifest
    from actiondiff.learn.run import evaluate_run, write_evaluation

    protocol = _experiment_settings(_load_settings(args))[0]
    result = evaluate_run(args.store, read_manifest(args.manifest), protocol, args.models)
    write_evaluation(result, args.out)
    name = protocol.headline_metric
    value, baseline = result.metrics[name], result.baseline
    # Videos without features (failed extraction, see the store's failures.csv) are excluded.
    print(
        f"{name} on {result.num_test_videos} test videos: {value.mean:.1f} +- {value.std:.1f} "
        f"over {len(result.per_seed)} seeds (most-frequent-class baseline "
        f"{baseline.class_name!r}: {baseline.metrics[name]:.1f}); "
        f"micro AP {result.metrics['micro_ap'].mean:.1f}, "
        f"macro AP (classes with positives) {result.metrics['macro_ap_present'].mean:.1f}; "
        f"{len(result.excluded_videos)} videos excluded (no features)"
    )
    return 0


def _weights_override(args: argparse.Namespace):
    """Substitute weight locations from --svd/--clip-arch/--clip-checkpoint (all or none)."""
    given = [args.svd, args.clip_arch, args.clip_checkpoint]  # --clip-checkpoint '': SVD's own image encoder
    if all(g is None for g in given):
        return None
    if any(g is None for g in given):
        raise ValueError("Expected all of --svd, --clip-arch and --clip-checkpoint, or none, but got only some.")
    return WeightsSettings(svd=args.svd, clip_arch=args.clip_arch, clip_checkpoint=args.clip_checkpoint)


def cmd_weights_check(args: argparse.Namespace) -> int:
    from actiondiff.features.weights import WeightsError, check_weights

    failed = 0
    for path in args.paths:
        try:
            lines = check_weights(path, clip_arch=args.clip_arch)
        except WeightsError as error:
            failed += 1
            print(f"FAIL {path}: {error}")
            continue
        print("ok   " + "\n     ".join(lines))
    return 1 if failed else 0


def cmd_predict(args: argparse.Namespace) -> int:
    from actiondiff.tools.predict import (
        PredictSettings,
        predict_store,
        predict_videos,
        windows_path,
    )

    settings = PredictSettings(top_k=args.top_k, device=args.device)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.store:
        table = predict_store(args.store, args.videos or None, args.model, settings)
    else:
        if not args.videos:
            raise ValueError("Expected video files to classify (or --store), but got none.")
        table, windows = predict_videos(args.videos, args.model, settings, _weights_override(args))
        windows.to_csv(windows_path(out), index=False)
        print(f"wrote per-window scores to {windows_path(out)}")
        if args.plot and len(windows):
            from actiondiff.tools.timeline import plot_all

            classes = list(windows.columns[6:])  # after the window columns: one score column per class
            scores = table[table["rank"] > 0].pivot(index="video_id", columns="class", values="score")
            scores = scores.reindex(columns=classes).fillna(0.0)  # classes below the top-k: drawn from windows only
            paths = plot_all(windows, scores, classes, {}, args.plot, min(args.plot_top, settings.top_k))
            print(f"wrote {len(paths)} timelines to {args.plot}")
    table.to_csv(out, index=False)
    for row in table[table["rank"] <= 1].to_dict("records"):
        print(f"{row['video_id']}\t{row['class'] or 'ERROR: ' + row['error']}\t{row['score']:.3f}")
    print(f"wrote top-{settings.top_k} classes per video to {out}")
    return 1 if (table["error"] != "").any() else 0


def cmd_save_model(args: argparse.Namespace) -> int:
    from actiondiff.learn.hub import save_model

    folder = save_model(args.checkpoint, args.out, args.evaluation)
    print(f"wrote model folder {folder} (config.json, model.safetensors, README.md)")
    return 0


def cmd_plot_timelines(args: argparse.Namespace) -> int:
    from actiondiff.io.manifest import read_manifest
    from actiondiff.tools.timeline import plot_store_timelines

    protocol = _experiment_settings(_load_settings(args))[0]
    paths = plot_store_timelines(args.store, read_manifest(args.manifest), protocol, args.model, args.out,
                                 size=args.window, hop=args.hop, top_k=args.top)
    print(f"wrote {len(paths)} timelines to {args.out}")
    return 0


def cmd_localize(args: argparse.Namespace) -> int:
    from actiondiff.tools.localize import localize, parse_grid, plot_heatmap, scores_table

    scores, chosen, frame, _ = localize(
        args.video, args.model, parse_grid(args.grid), args.class_name, args.device, _weights_override(args)
    )
    plot_heatmap(frame, scores, chosen, args.out, title=f"{Path(args.video).name}: {chosen}")
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        scores_table(scores, chosen, args.video).to_csv(args.csv, index=False)
    print(f"wrote heatmap of {chosen!r} over a {args.grid} grid to {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from actiondiff.report.figures import write_results

    write_results(args.evaluation, table=args.table, markdown=args.markdown, figure=args.figure, confusion=args.confusion)
    print(f"wrote {args.table}, {args.markdown}, {args.figure}")
    return 0


def cmd_evaluate_run(args: argparse.Namespace) -> int:
    from actiondiff.io.manifest import read_manifest
    from actiondiff.learn.run import evaluate_run, write_evaluation

    values = _load_settings(args)
    protocol = _experiment_settings(values)[0]
    result = evaluate_run(args.store, read_manifest(args.manifest), protocol, args.models, values.get("run", {}))
    write_evaluation(result, args.out)
    name = protocol.headline_metric
    inside = f"{result.in_domain.metrics[name].mean:.1f}" if result.in_domain else "none (no validation set)"
    print(f"{name}: out-of-domain {result.metrics[name].mean:.1f}, in-domain {inside}, "
          f"most frequent class {result.baseline.metrics[name]:.1f}; epoch: {result.epoch_selection}")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from actiondiff.report.tables import (
        ablation_table,
        load_evaluations,
        results_table,
        write_table,
    )

    evaluations = load_evaluations(args.evaluations)
    frame = results_table(evaluations) if args.kind == "results" else ablation_table(evaluations)
    write_table(frame, args.csv, args.markdown)
    print(f"wrote {len(frame)} rows to {args.csv}")
    return 0


def cmd_plot_grid(args: argparse.Namespace) -> int:
    from actiondiff.report.html_tables import write_csv
    from actiondiff.report.tables import grid_frame, load_evaluations, plot_grid

    evaluations = load_evaluations(args.evaluations)
    metric = args.metric or evaluations[0].protocol["headline_metric"]
    frame = grid_frame(evaluations, metric)
    write_csv(frame, args.csv, title=args.title or "layer x timestep grid")  # and its HTML page
    left_out = plot_grid(frame, metric, args.png, args.pdf, title=args.title)
    print(f"wrote {args.png} ({len(frame)} taps)" + "".join(f"; {note}" for note in left_out))
    return 0


def cmd_compare_taps(args: argparse.Namespace) -> int:
    from actiondiff.report.aggregate import mixing_weights, plot_mixing, tap_comparison
    from actiondiff.report.html_tables import write_csv
    from actiondiff.report.tables import grid_frame, load_evaluations, write_table

    aggregate = load_evaluations([args.aggregate])[0]
    grid, singles = load_evaluations(args.grid or []), load_evaluations(args.singles or [])
    table = tap_comparison(aggregate, grid, singles)
    write_table(table, args.csv, args.markdown)
    weights = mixing_weights(args.models)
    write_csv(weights, args.weights_csv, title="learned mixing weights")  # and its HTML page
    metric = aggregate.protocol["headline_metric"]
    plot_mixing(weights, grid_frame(grid, metric) if grid else None, metric, args.png, args.pdf)
    print(f"wrote {args.csv} ({len(table)} rows) and {args.png}")
    return 0


def cmd_plot_matrix(args: argparse.Namespace) -> int:
    from actiondiff.report import tables as rt
    from actiondiff.report.html_tables import write_csv

    evaluations = rt.load_evaluations(args.evaluations)
    matrices = rt.domain_matrices(evaluations)
    rho = rt.frequency_rho(matrices)
    rt.plot_matrix(matrices, args.matrix_png, args.matrix_pdf, about=rt.runs_note(evaluations))
    frequency = rt.write_frequency(matrices, rho, args.frequency_dir)
    rt.plot_baseline(matrices, args.baseline_png, args.baseline_pdf, about=rt.runs_note(evaluations))
    write_csv(rt.matrix_long(matrices, rho), args.csv, title="domain-to-domain matrix")  # and its HTML page
    print(f"wrote {args.matrix_png} and {args.baseline_png}; {frequency}; frequency correlation: {json.dumps(rho)}")
    return 0


def cmd_extraction_report(args: argparse.Namespace) -> int:
    from actiondiff.report.tables import write_extraction_report

    write_extraction_report(args.store, args.failures, args.settings_csv, args.failures_csv)
    print(f"wrote {args.settings_csv} and {args.failures_csv}")
    return 0


def add_extraction_overrides(parser: argparse.ArgumentParser) -> None:
    """--layers/--timesteps/--conditioning, overriding the config's `extraction` block."""
    parser.add_argument("--layers", type=int, nargs="+", help="UNet taps 1..13 (overrides extraction.layers)")
    parser.add_argument(
        "--timesteps", type=int, nargs="+", help="timestep indices (overrides extraction.timestep_indices)"
    )
    parser.add_argument(
        "--conditioning",
        choices=["middle_frame", "per_frame", "none", "action_text"],
        help="conditioning mode (overrides extraction.conditioning)",
    )


EXTRACT_EPILOG = """\
ad-hoc use:
  actiondiff extract clip.mp4 frames_dir/ --list videos.txt --out feats --config config/config.yaml
  Video ids are the file stems (a frame folder: its name). A video that cannot be decoded, or a
  path that does not exist, is logged and recorded in OUT/failures/<id>.json; the others go on.
  OUT holds one settings identity; a rerun skips committed videos (resume). Two runs at once
  on one OUT share its videos out: each claims a video (OUT/claims/<id>.lock) before extracting.

--format npy writes, once a video is committed to the cache, into OUT/npy/:
  <id>_<tap>.npy          [frames, channels] float32 (tap e.g. L09_T20)
  <id>_timestamp_ms.npy   [frames] float64, each row's time in the video
  <id>_frame_index.npy    [frames] int64, each row's frame in the video; written last
  (each file atomically; a rerun writes only videos whose files are missing).

--devices cuda:0,cuda:1 runs one worker process per device: each loads the backbone once and
  takes the next video left, so a long video holds up only its own worker. Features are the
  same bytes as a single-process run (each video's random draws are seeded by its content;
  on CPU at the same torch thread count). CPU workers (cpu,cpu) each take torch's threads:
  share the cores out, e.g. OMP_NUM_THREADS=1 actiondiff extract ... --devices cpu,cpu.

Each model's loading is logged with its size. On a terminal a bar shows the videos and one the
current video's frames, per window (log lines print above them); a log file gets one line per
video (frames/s, ETA from the end of loading).

Exit status: 0 when every video is committed or recorded as failed, so 0 also with failed
  videos (the summary line counts them, OUT/failures/<id>.json says why); with --strict, 2 at
  the first video that fails (its error logged, the later ones not extracted); 2 for bad
  arguments, settings or weights (before any video), and when --devices workers stop, leaving
  videos neither committed nor recorded (they are named; a rerun does them).
"""


# The verbs of ad-hoc use, listed first and in this order by `actiondiff --help` (by their short
# alias where they have one); every other verb is run by the workflow rule of its name.
USER_VERBS = ("extract-features", "predict", "localize", "weights", "store", "flops", "train-head",
              "evaluate", "layers", "pack-store", "plot-results")


def grouped_verbs(verbs: dict[str, tuple[tuple[str, ...], str]]) -> str:
    """`--help`'s list of verbs ({name: (aliases, help)}): user verbs apart from rule verbs."""
    def lines(names: list[str], short: bool) -> list[str]:
        out = []
        for name in names:
            aliases, help_text = verbs[name]
            shown, full = (aliases[0], f" (= {name})") if short and aliases else (name, "")
            out += textwrap.wrap(help_text + full, 100, initial_indent=f"  {shown:<20} ", subsequent_indent=" " * 23)
        return out

    rules = [name for name in verbs if name not in USER_VERBS]
    return "\n".join(["commands:", *lines(list(USER_VERBS), short=True), "",
                      "workflow rule verbs (each run by the rule of its name: rule pack_store runs pack-store):",
                      *lines(rules, short=False), "", "`actiondiff <verb> --help` describes a verb."])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actiondiff", description=__doc__.splitlines()[0], usage="%(prog)s [-h] [-v] <verb> ...",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    # The verbs are listed in the epilog, grouped (argparse lists subcommands in one flat list).
    sub = parser.add_subparsers(dest="command", required=True, metavar="<verb>", help=argparse.SUPPRESS)
    verbs: dict[str, tuple[tuple[str, ...], str]] = {}

    def add(name: str, func, help_text: str, settings: bool = True, aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
        # Each workflow rule runs the verb of its own name (rule `pack_store`: `pack-store`);
        # the short aliases are the verbs of ad-hoc use.
        verbs[name] = (aliases, help_text)
        command = sub.add_parser(name, help=help_text, description=help_text, aliases=list(aliases))
        command.set_defaults(func=func)
        if settings:
            command.add_argument("--config", help="YAML config file (e.g. config/config.yaml)")
            command.add_argument("--settings", help="JSON object of settings; overrides --config")
        return command

    p = add("make-demo-data", cmd_demo_data, "write the embedded demo videos and labels.csv", aliases=("demo-data",))
    p.add_argument("--out", required=True, help="output folder")

    p = add("make-tiny-weights", cmd_make_weights, "write seeded tiny backbone weights (SVD + OpenCLIP, VideoMAE, V-JEPA 2)",
            settings=False, aliases=("make-weights",))
    p.add_argument("--out", required=True, help="output folder (tiny-svd/ + tiny-clip/, tiny-videomae/, tiny-vjepa2/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backbone", nargs="+", choices=["svd", "videomae", "vjepa2"], default=["svd"],
                   help="which tiny backbones to write (default: svd)")

    p = add("build-manifest", cmd_manifest, "build the canonical manifest of a dataset", aliases=("manifest",))
    p.add_argument("dataset", choices=list(DATASETS), help="dataset adapter")
    p.add_argument(
        "--annotations", nargs="+",
        help="annotation file or folder as shipped: custom: the label table (CSV/TSV; omit for one sub-folder "
        "per class); animal_kingdom: AR_metadata.xlsx; charades_ego: the CSV folder; ucf101: ucfTrainTestlist/; "
        "hmdb51: testTrainMulti_7030_splits/; ucf_hmdb: both, UCF first",
    )
    p.add_argument("--videos", nargs="+", help="videos folder (ucf_hmdb: UCF-101/ then hmdb51/); optional with "
                   "--annotations-only (paths are then relative to it, default the current folder)")
    p.add_argument("--out", help="manifest CSV to write (and its class list, NAME.classes.csv)")
    p.add_argument("--allow-missing", action="store_true",
                   help="drop rows whose video file is missing; a one-line count is printed (or config `dataset.allow_missing`)")
    p.add_argument("--missing", help="CSV listing the rows dropped by --allow-missing (video_id, path)")
    p.add_argument("--annotations-only", action="store_true",
                   help="read the annotations alone: keep every listed video, look at no video file (to plan and "
                   "count protocols before the download)")
    p.add_argument("--summary", nargs="?", const="-",
                   help="print (or write to FILE) videos per split, per domain and per class")
    p.add_argument("--split-number", type=int, help="ucf101 / hmdb51: official split 1-3 (default: config "
                   "`dataset.split_number`, else 1)")

    p = add("select-videos", cmd_select_videos, "the manifest rows a feature set extracts: those its experiments' "
            "protocols read (settings: {\"protocols\": [protocol blocks]})")
    p.add_argument("--manifest", required=True, help="the dataset's manifest CSV")
    p.add_argument("--out", required=True, help="manifest CSV of the selected videos")

    p = add("extract-shared", cmd_extract_shared, "one shard of several feature sets' videos, one pass per video "
            "(decode, VAE and CLIP shared), each set committed into its own cache", settings=False)
    p.add_argument("--sets", required=True, help='JSON (or a JSON file): {"sets": [{"name", "manifest", "out", '
                   '"settings": {backbone, decode, extraction, weights}, "settings_hash" (optional)}], "device"}')
    p.add_argument("--shard", type=int, help="shard index within the id-sorted union of the sets' manifests")
    p.add_argument("--shard-size", type=int, default=16, help="videos per shard")
    p.add_argument("--done", help="write a JSON summary per set here when the shard is finished")
    p.add_argument("--device", help="torch device (overrides the JSON's `device`; default cpu)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad video")

    p = add("extract-features", cmd_extract, "extract features of videos (a manifest shard, or files) into a cache",
            aliases=("extract",))
    p.epilog = EXTRACT_EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("videos", nargs="*", help="video files or frame folders (ad-hoc use; ids are the file stems)")
    p.add_argument("--list", action="append", metavar="FILE",
                   help="text file of video paths, one per line (blank lines and lines starting with # skipped; "
                   "relative paths are relative to the list file's folder); with or without path arguments; repeatable")
    p.add_argument("--format", choices=["zarr", "npy"], default="zarr",
                   help="zarr (default): the per-video cache, which `pack-store` packs into a Zarr store; npy: the "
                   "same cache, and also OUT/npy/<video_id>_<tap>.npy per video and tap (see below)")
    p.add_argument("--manifest", help="manifest CSV (instead of video files)")
    p.add_argument("--shard", type=int, help="shard index within the manifest")
    p.add_argument("--shard-size", type=int, default=16, help="videos per shard")
    p.add_argument("--out", required=True, help="cache folder for these settings")
    p.add_argument("--done", help="write a JSON summary here when the shard is finished")
    p.add_argument("--settings-hash", help="the hash the workflow planned (an error if the weights changed since)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad video (exit status 2)")
    add_extraction_overrides(p)
    p.add_argument("--backbone", help="backbone name: svd | sdv2 | videomae | vjepa2 | an entry point (overrides config key `backbone`)")
    p.add_argument("--device", help="torch device, e.g. cuda (overrides config key `device`; default cpu)")
    p.add_argument("--devices", metavar="LIST",
                   help="several devices, separated by commas (cuda:0,cuda:1): one worker process per device over the "
                   "videos (cpu,cpu: two CPU workers)")

    p = add("weights", None, "check downloaded weights against the architectures they load as", settings=False)
    weights_sub = p.add_subparsers(dest="weights_command", required=True)
    q = weights_sub.add_parser("check", help="every expected tensor present with its shape, on the meta device (no values read)")
    q.set_defaults(func=cmd_weights_check)
    q.add_argument("paths", nargs="+", help="SVD snapshot folder / hub id / svd_xt.safetensors / image_encoder/ / "
                   "OpenCLIP checkpoint / VideoMAE (v2) or V-JEPA 2 folder")
    q.add_argument("--clip-arch", default="ViT-H-14", help="OpenCLIP architecture of OpenCLIP-format weights (default ViT-H-14)")

    p = add("layers", cmd_layers, "the UNet layer map, read from the model built on the meta device")
    p.add_argument("--arch", choices=["svd-xt", "tiny"], default="svd-xt", help="architecture")
    p.add_argument("--gflops", action="store_true", help="add cumulative GFLOP/frame (slower)")

    p = add("flops", cmd_flops, "GFLOP per frame, authors' procedure vs ours, counted on the meta device; with a "
            "config's feature_sets: GFLOP and GPU-hours of each set and the whole config, separate vs shared passes")
    p.add_argument("--arch", choices=["svd-xt", "tiny"], default="svd-xt", help="architecture")
    p.add_argument("--memory", action="store_true",
                   help="instead: peak GPU memory of one window per feature set and vae_chunk, and the cards (24/40/80 GB) it fits")
    p.add_argument("--per-frame", action="store_true",
                   help="with feature_sets in the config: the authors' vs ours table of the `extraction` block instead")
    p.add_argument("--videos", type=int, help="videos every feature set reads (default: the annotations-only "
                   "manifest if the annotations are on disk, else the published counts per protocol)")
    p.add_argument("--kept-frames", type=int, help="kept frames per video (default: README's assumed clip length of the dataset)")
    p.add_argument("--fps", type=float, default=20.0,
                   help="frames/s of the paper settings the GPU-hours assume (default 20: README's as-shipped H200 estimate)")
    p.add_argument("--backbones", action="store_true",
                   help="instead: GFLOP per frame of each backbone (SVD, SDv2, VideoMAE v2 ViT-g, V-JEPA 2 ViT-L/ViT-g)")
    add_extraction_overrides(p)

    p = add("verify-features", cmd_verify_features, "before packing: every video committed intact or recorded "
            "as failed; else set damaged ones aside and mark their shards for re-extraction", settings=False)
    p.add_argument("--cache", required=True, help="cache folder (results/features/<dataset>/<hash>)")
    p.add_argument("--manifest", required=True)
    p.add_argument("--shard-size", type=int, required=True, help="videos per shard, as extraction used")
    p.add_argument("--shards", nargs="*", help="the shards' summary JSONs (<shard>.json): removed for shards to redo")
    p.add_argument("--shard-manifests", nargs="+", metavar="MANIFEST",
                   help="the manifests whose id-sorted union the shards cut, when one `extract-shared` job per shard "
                   "extracted several sets (its summaries hold one entry per set, keyed by the set's hash); default: --manifest")
    p.add_argument("--out", required=True, help="JSON of the counts, written when every video is accounted for")

    p = add("pack-store", cmd_pack, "pack committed per-video features into a Zarr store", settings=False, aliases=("pack",))
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

    p = add("train-head", cmd_train, "train heads (one per seed) on a packed store", aliases=("train",))
    p.add_argument("--store", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--tap", help="feature to train on, e.g. L09_T20 (default: first layer/timestep)")
    p.add_argument("--out", required=True, help="folder for seed{k}.safetensors/.json")
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: config key `device`, else cpu)")

    p = add("evaluate", cmd_evaluate, "evaluate trained heads on the protocol's test videos")
    p.add_argument("--store", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--models", nargs="+", required=True, help="checkpoints (.safetensors)")
    p.add_argument("--out", required=True, help="evaluation JSON")

    def add_weights_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N, for the backbone and the head")
        p.add_argument("--svd", help="the training weights moved: SVD snapshot dir (checksums must match)")
        p.add_argument("--clip-arch", help="with --svd: OpenCLIP model name or config JSON")
        p.add_argument("--clip-checkpoint", help="with --svd: OpenCLIP checkpoint (checksum must match)")

    p = add("predict", cmd_predict, "classify videos with a trained head (extracting as at training time)", settings=False)
    p.add_argument("videos", nargs="*", help="video files (ids are the file stems); with --store: video ids")
    p.add_argument("--model", required=True,
                   help="checkpoint (.safetensors with its .json), model folder (`save-model`) or Hugging Face repo id")
    p.add_argument("--out", default="predictions.csv", help="per-video top-k CSV; per-window scores go to NAME.windows.csv")
    p.add_argument("--top-k", type=int, default=5, help="classes listed per video")
    p.add_argument("--store", help="classify features of a packed store instead (its settings must match)")
    p.add_argument("--plot", help="folder: one timeline PNG per video (top classes' window scores over time)")
    p.add_argument("--plot-top", type=int, default=3, help="classes drawn per timeline")
    add_weights_options(p)

    p = add("save-model", cmd_save_model, "write a checkpoint as a model folder (config, safetensors, model card)",
            settings=False)
    p.add_argument("--checkpoint", required=True, help="checkpoint (.safetensors with its .json)")
    p.add_argument("--evaluation", help="the run's evaluation JSON: its numbers go into the model card")
    p.add_argument("--out", required=True, help="model folder (loadable with HeadModel.from_pretrained)")

    p = add("plot-timelines", cmd_plot_timelines, "timelines of a protocol's held-out videos from a packed store")
    p.add_argument("--store", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--model", required=True, help="checkpoint, model folder or Hugging Face repo id")
    p.add_argument("--out", required=True, help="folder: one PNG per held-out video")
    p.add_argument("--window", type=int, default=0, help="window length in kept frames (0: the backbone's window)")
    p.add_argument("--hop", type=int, default=0, help="window step in kept frames (0: the window length)")
    p.add_argument("--top", type=int, default=3, help="classes drawn per timeline")

    p = add("localize", cmd_localize, "heatmap of where in the frame a class is seen (patch grid)", settings=False)
    p.add_argument("video", help="video file")
    p.add_argument("--model", required=True, help="checkpoint (.safetensors with its .json)")
    p.add_argument("--grid", default="4x4", help="patch grid ROWSxCOLUMNS")
    p.add_argument("--class", dest="class_name", help="class to map (default: the video's top-1 class)")
    p.add_argument("--out", default="localization.png", help="heatmap PNG")
    p.add_argument("--csv", help="also write the patch scores as CSV")
    add_weights_options(p)

    p = add("plot-results", cmd_report, "tables and figures of an evaluation", settings=False, aliases=("report",))
    p.add_argument("--evaluation", required=True, help="evaluation JSON")
    p.add_argument("--table", required=True, help="results CSV")
    p.add_argument("--markdown", required=True, help="results Markdown")
    p.add_argument("--figure", required=True, help="per-domain accuracy PNG")
    p.add_argument("--confusion", required=True, help="confusion matrix PNG")

    p = add("evaluate-head", cmd_evaluate_run, "evaluate one experiment run: out-of-domain, in-domain, baseline",
            aliases=("evaluate-run",))
    p.add_argument("--store", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--models", nargs="+", required=True, help="checkpoints (.safetensors)")
    p.add_argument("--out", required=True, help="evaluation JSON")

    for kind, what in (("results", "results (Tables 1-3)"), ("ablation", "ablation (Table 4)")):
        p = add(f"make-{kind}-table", cmd_table, f"{what} table of evaluations", settings=False)
        p.set_defaults(kind=kind)
        p.add_argument("--evaluations", nargs="+", required=True, help="evaluation JSONs of `evaluate-head`")
        p.add_argument("--csv", required=True)
        p.add_argument("--markdown", required=True)

    p = add("plot-grid", cmd_plot_grid, "layer x timestep heatmaps (Fig. 5) of evaluations", settings=False)
    p.add_argument("--evaluations", nargs="+", required=True, help="one evaluation JSON per tap")
    p.add_argument("--metric", help="metric (default: the protocol's headline metric)")
    p.add_argument("--title", default="")
    p.add_argument("--csv", required=True)
    p.add_argument("--png", required=True)
    p.add_argument("--pdf", required=True)

    p = add("compare-taps", cmd_compare_taps, "aggregate head vs. single taps: table and mixing-weight figure (issue 28)",
            settings=False)
    p.add_argument("--aggregate", required=True, help="the aggregate head's evaluation JSON")
    p.add_argument("--models", nargs="+", required=True, help="the aggregate head's checkpoints (its mixing weights)")
    p.add_argument("--grid", nargs="*", help="evaluations of a grid experiment (one per tap)")
    p.add_argument("--singles", nargs="*", help="evaluations of single-tap experiments (e.g. L09_T20)")
    for name in ("csv", "markdown", "weights-csv", "png", "pdf"):
        p.add_argument(f"--{name}", required=True)

    p = add("plot-matrix", cmd_plot_matrix, "domain-to-domain matrix, frequency correlation, baseline (Fig. 4, S12-S16)",
            settings=False)
    p.add_argument("--evaluations", nargs="+", required=True, help="one evaluation JSON per training domain")
    p.add_argument("--csv", required=True)
    for name in ("matrix", "baseline"):
        p.add_argument(f"--{name}-png", required=True)
        p.add_argument(f"--{name}-pdf", required=True)
    p.add_argument("--frequency-dir", required=True,
                   help="folder of Fig. S12/S13: frequency.png and .pdf, or frequency_not_drawn.html saying why "
                        "(fewer than 3 domain pairs with a defined action-frequency correlation)")

    p = add("report-extraction", cmd_extraction_report, "extraction settings and failures of a store", settings=False,
            aliases=("extraction-report",))
    p.add_argument("--store", required=True)
    p.add_argument("--failures", required=True, help="failures CSV of `pack`")
    p.add_argument("--settings-csv", required=True)
    p.add_argument("--failures-csv", required=True)
    parser.epilog = grouped_verbs(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from tqdm.contrib.logging import logging_redirect_tqdm

    # Log lines print above the progress bars, not into them (the same lines where no bar is drawn).
    try:
        pin_cpu_kernels()  # before any torch work: the workflow's jobs run the portable kernels
        with logging_redirect_tqdm():
            return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        log.error("%s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
