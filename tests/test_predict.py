"""predict / localize end to end: tiny real weights, PyAV videos, cache -> store -> head -> CLI."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file, save_file

from actiondiff.cli import main
from actiondiff.features.backbones import feature_identity, weight_file_checksums
from actiondiff.features.svd_extractor import SVDExtractor
from actiondiff.learn.head import HeadSettings
from actiondiff.learn.protocols import ProtocolSettings
from actiondiff.learn.results import Evaluation
from actiondiff.learn.run import evaluate_run, train_seeds
from actiondiff.learn.train import StoreSequences, TrainSettings, read_fitted
from actiondiff.settings import DecodeSettings, ExtractSettings, WeightsSettings
from actiondiff.store.cache import FeatureCache
from actiondiff.store.packed import FeatureStore, pack_store
from actiondiff.tools.demo_data import DOMAINS, render_clip, write_mp4
from actiondiff.tools.localize import localize, parse_grid, patch_bounds, patch_features
from actiondiff.tools.predict import (
    identity_hash,
    load_classifier,
    predict_store,
    predict_videos,
    windows_path,
)
from actiondiff.tools.tiny_weights import make_tiny_weights

TAP = "L04_T20"  # a shallow tap keeps the tiny UNet pass short
ACTIONS = ("pulse", "cross")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Six 8-frame videos (3 domains x 2 actions), extracted, packed, one head trained."""
    root = tmp_path_factory.mktemp("predict")
    paths = make_tiny_weights(root / "weights")
    weights = WeightsSettings(svd=str(paths["svd"]), clip_arch=str(paths["clip_arch"]), clip_checkpoint=str(paths["clip_checkpoint"]))
    decode = DecodeSettings(height=32, width=32, window=2, stride=2)  # small: extraction dominates
    extract = ExtractSettings(layers=(4,), timestep_indices=(20,))
    identity = feature_identity(decode, "svd", extract, weights)  # as the workflow records it
    digest = identity_hash(decode, extract, weights)
    rows = []
    for d, domain in enumerate(DOMAINS[:3]):
        for a, action in enumerate(ACTIONS):
            video_id = f"{domain.name}-{action}"
            path = root / "videos" / f"{video_id}.mp4"
            path.parent.mkdir(exist_ok=True)
            write_mp4(render_clip(domain, action, 8, 48, np.random.default_rng([d, a])), path)
            split = ["train", "val", "test"][d]
            rows.append({"video_id": video_id, "path": str(path), "labels": action, "domain": domain.name, "split": split})
    manifest = pd.DataFrame(rows)
    extractor = SVDExtractor.from_weights(weights, decode, extract)
    cache = FeatureCache(root / "cache", digest)
    for row in rows:
        cache.commit(extractor.extract_video(row["path"], row["video_id"]))
    attrs = {"settings": identity, "settings_hash": digest, "backbone": {"name": "svd", "files": weight_file_checksums("svd", weights)}}
    pack_store(cache, list(manifest.video_id), root / "store.zarr", attrs)
    head = HeadSettings(num_layers=1, num_heads=2, max_length=16)
    train = TrainSettings(epochs=3, batch_size=2, lr=1e-3, warmup_epochs=1, mixup_alpha=0.0)
    protocol = ProtocolSettings(test_domains=(DOMAINS[2].name,))
    checkpoints = train_seeds(root / "store.zarr", manifest, TAP, protocol, head, train, [0, 1], root / "models")
    return {"root": root, "weights": weights, "decode": decode, "extract": extract, "identity": identity, "digest": digest,
            "manifest": manifest, "checkpoint": checkpoints[0], "checkpoints": checkpoints, "cache": cache, "protocol": protocol}


def test_checkpoint_records_the_extraction_identity(trained):
    info = json.loads(trained["checkpoint"].with_suffix(".json").read_text())
    assert info["extraction"] == trained["identity"]
    assert info["settings_hash"] == trained["digest"] == FeatureStore(trained["root"] / "store.zarr").attrs["settings_hash"]
    assert info["tap"] == TAP and info["classes"] == sorted(ACTIONS)
    classifier = load_classifier(trained["checkpoint"])
    assert (classifier.decode, classifier.extract, classifier.weights) == (trained["decode"], trained["extract"], trained["weights"])


def test_predict_extracts_like_training_and_scores_windows(trained):
    video = trained["manifest"].path.iloc[-1]
    table, windows = predict_videos([video], trained["checkpoint"])
    assert table["rank"].tolist() == [1, 2] and table["error"].tolist() == ["", ""]
    assert table.score.iloc[0] >= table.score.iloc[1]
    assert table.score.sum() == pytest.approx(1.0, abs=1e-5)  # softmax over 2 classes
    # the same video's scores from the packed (float16) training features
    from_store = predict_store(trained["root"] / "store.zarr", [trained["manifest"].video_id.iloc[-1]], trained["checkpoint"])
    assert from_store["class"].tolist() == table["class"].tolist()
    assert from_store.score.to_numpy() == pytest.approx(table.score.to_numpy(), abs=1e-2)
    # 4 kept frames (0, 2, 4, 6) in windows of 2: [0, 2], [4, 6]
    assert windows.window.tolist() == [0, 1]
    assert windows.first_frame.tolist() == [0, 4] and windows.last_frame.tolist() == [2, 6]
    assert windows[list(ACTIONS)].sum(axis=1).to_numpy() == pytest.approx([1.0, 1.0], abs=1e-5)


def test_other_settings_are_refused(trained, tmp_path):
    # a store of other settings
    other = dict(trained["identity"], decode={**trained["identity"]["decode"], "stride": 3})
    pack_store(trained["cache"], list(trained["manifest"].video_id), tmp_path / "other.zarr", {"settings": other, "settings_hash": "0123456789ab", "backbone": {}})
    with pytest.raises(ValueError, match=f"settings hash {trained['digest']}.*but got 0123456789ab"):
        predict_store(tmp_path / "other.zarr", None, trained["checkpoint"])
    # a checkpoint whose recorded extraction does not hash to its settings hash
    shutil.copy(trained["checkpoint"], tmp_path / "edited.safetensors")
    info = json.loads(trained["checkpoint"].with_suffix(".json").read_text())
    (tmp_path / "edited.json").write_text(json.dumps({**info, "extraction": other}))
    with pytest.raises(ValueError, match="settings hash"):
        load_classifier(tmp_path / "edited.safetensors")
    # moved weights are fine when the files are the same, refused when they are other files
    moved = tmp_path / "moved"
    shutil.copytree(trained["root"] / "weights", moved)
    same = WeightsSettings(svd=str(moved / "tiny-svd"), clip_arch=str(moved / "tiny-clip/open_clip_config.json"),
                           clip_checkpoint=str(moved / "tiny-clip/open_clip_model.safetensors"))
    assert load_classifier(trained["checkpoint"], same).weights == same
    make_tiny_weights(tmp_path / "reseeded", seed=1)
    different = WeightsSettings(svd=str(tmp_path / "reseeded/tiny-svd"), clip_arch=same.clip_arch,
                                clip_checkpoint=str(tmp_path / "reseeded/tiny-clip/open_clip_model.safetensors"))
    with pytest.raises(ValueError, match="same SHA-256"):
        load_classifier(trained["checkpoint"], different)
    # the weights replaced in place since training: same paths, other content
    unet = moved / "tiny-svd" / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(unet))
    state["conv_in.bias"] = state["conv_in.bias"] + 1.0
    save_file(state, str(unet))
    with pytest.raises(ValueError, match=r"same SHA-256\), but \['svd/unet/weights'\] differ"):
        load_classifier(trained["checkpoint"], same)


def test_evaluate_reports_baseline_and_labels(trained):
    result = evaluate_run(trained["root"] / "store.zarr", trained["manifest"], trained["protocol"], trained["checkpoints"])
    assert len(result.per_seed) == 2 and result.num_test_videos == 2
    baseline = result.baseline
    # train + val hold one video of each action: tie -> the first class, right on 1 of 2 test videos
    assert baseline.class_name == "cross" and baseline.metrics["top1_accuracy"] == pytest.approx(50.0)
    assert set(result.metric_labels) == set(result.metrics)
    assert [row["class"] for row in result.per_class] == sorted(ACTIONS)
    on_disk = result.to_json()
    assert on_disk["baseline"]["class"] == "cross" and "baselines" not in on_disk  # one name for one baseline
    assert Evaluation.from_json(json.loads(json.dumps(on_disk))) == result


@pytest.mark.slow  # 5 extractions of one video (2x2 patches + whole frame)
def test_localize_patches_and_heatmap(trained, tmp_path):
    video = trained["manifest"].path.iloc[-1]
    classifier = load_classifier(trained["checkpoint"])
    extractor = SVDExtractor.from_weights(trained["weights"], trained["decode"], trained["extract"])
    whole = patch_features(video, extractor, TAP, None)
    np.testing.assert_array_equal(whole, extractor.extract_video(video, trained["manifest"].video_id.iloc[-1]).features[TAP])
    scores, chosen, frame, _ = localize(video, trained["checkpoint"], (2, 2), class_name="cross")
    assert scores.shape == (2, 2) and chosen == "cross" and frame.shape == (48, 48, 3)
    assert ((scores >= 0) & (scores <= 1)).all() and np.unique(scores).size > 1
    assert classifier.classes == sorted(ACTIONS)
    with pytest.raises(ValueError, match="--class"):
        localize(video, trained["checkpoint"], (2, 2), class_name="fly")


def test_grid_helpers():
    assert parse_grid("4x3") == (4, 3)
    with pytest.raises(ValueError, match="ROWSxCOLUMNS"):
        parse_grid("4")
    assert patch_bounds(10, 9, (2, 3)) == [(0, 5, 0, 3), (0, 5, 3, 6), (0, 5, 6, 9), (5, 10, 0, 3), (5, 10, 3, 6), (5, 10, 6, 9)]


@pytest.mark.slow  # 2 predictions + a 1x2 localisation through the CLI
def test_cli_predict_and_localize(trained, tmp_path, capsys):
    videos = list(trained["manifest"].path.iloc[-2:])
    out = tmp_path / "preds.csv"
    timelines = tmp_path / "timelines"
    assert main(["predict", *videos, "--model", str(trained["checkpoint"]), "--out", str(out), "--top-k", "1",
                 "--plot", str(timelines)]) == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert table.video_id.tolist() == list(trained["manifest"].video_id.iloc[-2:])
    assert len(pd.read_csv(windows_path(out))) == 4  # 2 videos x 2 windows
    assert sorted(p.stem for p in timelines.glob("*.png")) == sorted(trained["manifest"].video_id.iloc[-2:])
    missing = tmp_path / "nope.mp4"
    assert main(["predict", str(missing), "--model", str(trained["checkpoint"]), "--out", str(out)]) == 1
    assert "ERROR" in capsys.readouterr().out
    png = tmp_path / "heat.png"
    assert main(["localize", videos[0], "--model", str(trained["checkpoint"]), "--grid", "1x2", "--out", str(png), "--csv", str(tmp_path / "heat.csv")]) == 0
    assert png.stat().st_size > 1000
    assert len(pd.read_csv(tmp_path / "heat.csv")) == 2


def test_cli_train_and_evaluate_interface(trained, tmp_path):
    from actiondiff.io.manifest import write_manifest

    write_manifest(trained["manifest"], tmp_path / "manifest.csv")
    settings = {
        "protocol": {"test_domains": [DOMAINS[2].name]},
        "head": {"kind": "mlp", "max_length": 4, "mlp_hidden": 8},
        "train": {"preset": "demo", "seeds": [0, 1], "overrides": {"epochs": 2}, "batch_size": 2},
        "extraction": trained["identity"]["extraction"],
    }
    common = ["--settings", json.dumps(settings), "--store", str(trained["root"] / "store.zarr"), "--manifest", str(tmp_path / "manifest.csv")]
    assert main(["train", *common, "--out", str(tmp_path / "models")]) == 0  # tap from `extraction`: L04_T20
    info = json.loads((tmp_path / "models/seed1.json").read_text())
    assert (info["tap"], info["head"]["kind"], info["train"]["epochs"], info["train"]["batch_size"], info["train"]["seed"]) == (TAP, "mlp", 2, 2, 1)
    assert len(pd.read_csv(tmp_path / "models/history.csv")) == 4  # 2 seeds x 2 epochs
    models = [str(tmp_path / f"models/seed{k}.safetensors") for k in (0, 1)]
    assert main(["evaluate", *common, "--models", *models, "--out", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert len(result["per_seed"]) == 2 and result["baseline"]["class"] in ACTIONS and result["num_excluded_videos"] == 0
    bad = dict(settings, train={"preset": "demo", "epochs": 2, "overrides": {"epochs": 3}})
    assert main(["train", "--settings", json.dumps(bad), *common[2:], "--out", str(tmp_path / "bad")]) == 2


def test_streamed_training_gives_the_same_checkpoints_as_in_memory(trained, tmp_path):
    head = HeadSettings(num_layers=1, num_heads=2, max_length=3)  # 4 kept frames per video are fitted to 3
    train = TrainSettings(epochs=2, batch_size=2, lr=1e-3, warmup_epochs=1, mixup_alpha=0.2)
    args = (trained["root"] / "store.zarr", trained["manifest"], TAP, trained["protocol"], head, train, [3])
    (memory,) = train_seeds(*args, tmp_path / "memory", stream=False)
    (streamed,) = train_seeds(*args, tmp_path / "streamed", stream=True)
    assert memory.read_bytes() == streamed.read_bytes()
    store = FeatureStore(trained["root"] / "store.zarr")
    fitted = read_fitted(store, TAP, np.asarray([4, 1]), head)
    whole = store.read(TAP)
    assert [f.dtype for f in fitted] == [np.float16, np.float16] and fitted[0].shape == (3, store.columns(TAP)[1])
    np.testing.assert_array_equal(fitted[1], whole[store.video_ids[1]][[0, 2, 3]])  # uniform: round(linspace(0, 3, 3))
    lazy = StoreSequences(store, TAP, np.asarray([4, 1]), head)
    assert len(lazy) == 2 and np.array_equal(lazy[0], fitted[0])


def test_evaluation_reads_val_and_test_only_and_its_json_is_unchanged(trained, tmp_path, monkeypatch):
    import actiondiff.learn.run as run

    head = HeadSettings(num_layers=1, num_heads=2, max_length=3)  # 4 kept frames per video are fitted to 3
    train = TrainSettings(epochs=1, batch_size=2, lr=1e-3, warmup_epochs=1, mixup_alpha=0.0)
    store_path = trained["root"] / "store.zarr"
    checkpoints = train_seeds(store_path, trained["manifest"], TAP, trained["protocol"], head, train, [0, 1], tmp_path)
    store = FeatureStore(store_path)
    manifest = trained["manifest"]
    train_positions = set(store.indices(list(manifest.video_id[manifest.split == "train"])).tolist())
    read: list[int] = []
    iter_rows, rows = FeatureStore.iter_rows, FeatureStore.rows

    def recorded_iter_rows(self, tap, indices, *args, **kwargs):
        for i, block in iter_rows(self, tap, indices, *args, **kwargs):
            read.append(i)
            yield i, block

    monkeypatch.setattr(FeatureStore, "iter_rows", recorded_iter_rows)
    monkeypatch.setattr(FeatureStore, "rows", lambda self, tap, index: read.append(index) or rows(self, tap, index))

    def evaluation() -> str:
        result = evaluate_run(store_path, manifest, trained["protocol"], checkpoints)
        return json.dumps(result.to_json(), sort_keys=True)

    fitted = evaluation()
    assert sorted(read) == sorted(set(range(len(store.video_ids))) - train_positions)  # val + test, each once
    read.clear()
    monkeypatch.setattr(run, "available_memory", lambda: 0)  # nothing fits: val and test are streamed
    streamed = evaluation()
    assert train_positions.isdisjoint(read) and len(read) == 2 * 4  # 2 seeds x (2 val + 2 test videos)
    # The evaluation as it was: every role's videos read whole (training videos included).
    load_sets = run.load_sets
    monkeypatch.setattr(run, "load_sets", lambda store, manifest, tap, protocol, **_: load_sets(store, manifest, tap, protocol))
    read.clear()
    whole = evaluation()
    assert train_positions <= set(read)
    assert fitted == streamed == whole


def test_predict_store_streams_the_tap_in_chunks(trained, monkeypatch):
    import actiondiff.tools.predict as predict_module

    store_path = trained["root"] / "store.zarr"
    at_once = predict_store(store_path, None, trained["checkpoint"])
    assert len(at_once) == 6 * 2 and at_once.video_id.unique().tolist() == FeatureStore(store_path).video_ids
    import actiondiff.learn.train as train_module

    reads: list[int] = []  # videos per store read
    monkeypatch.setattr(train_module, "read_fitted",
                        lambda store, tap, indices, head: reads.append(len(indices)) or read_fitted(store, tap, indices, head))
    monkeypatch.setattr(predict_module, "STORE_CHUNK_VIDEOS", 4)
    chunked = predict_store(store_path, None, trained["checkpoint"])
    assert reads == [4, 2]
    pd.testing.assert_frame_equal(chunked.drop(columns="score"), at_once.drop(columns="score"))
    assert chunked.score.to_numpy() == pytest.approx(at_once.score.to_numpy(), abs=1e-6)
