"""Heads as models (issue 28): a checkpoint saved as a Hugging Face model folder, loaded offline in
a fresh process, predicts the same scores; its model card names the feature identity."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from actiondiff.cli import main
from actiondiff.learn.head import HeadSettings
from actiondiff.learn.hub import HeadModel, load_model, save_model
from actiondiff.learn.protocols import ProtocolSettings
from actiondiff.learn.run import evaluate_run, train_seeds, write_evaluation
from actiondiff.learn.train import TrainSettings
from actiondiff.tools.predict import predict_store, window_starts
from actiondiff.tools.timeline import file_name, plot_store_timelines

PROTOCOL = ProtocolSettings(test_domains=("blue",))
TAP = "L06_T20"


@pytest.fixture(scope="module")
def model_folder(grid_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    head = HeadSettings(num_layers=1, num_heads=2, max_length=8)
    train = TrainSettings(epochs=2, batch_size=4, lr=3e-3, warmup_epochs=1, loss="ce", multilabel=False)
    (checkpoint,) = train_seeds(grid_store["store"], grid_store["manifest"], TAP, PROTOCOL, head, train, [0], root / "models")
    evaluation = root / "evaluation.json"
    write_evaluation(evaluate_run(grid_store["store"], grid_store["manifest"], PROTOCOL, [checkpoint]), evaluation)
    assert main(["save-model", "--checkpoint", str(checkpoint), "--evaluation", str(evaluation), "--out", str(root / "model")]) == 0
    return {"root": root, "checkpoint": checkpoint, "folder": root / "model", "evaluation": evaluation}


def test_folder_holds_config_weights_and_card(model_folder, grid_store):
    folder = model_folder["folder"]
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config == json.loads(model_folder["checkpoint"].with_suffix(".json").read_text())  # the checkpoint's JSON as is
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: actiondiff")
    for fact in (grid_store["digest"], "a" * 64, "c" * 64, f"{TAP} (width 8)", "stride 2", "window 4 frames",
                 "layers [3, 6], timestep indices [10, 20]", "`cross`, `pulse`", "protocol `custom`", "top1_accuracy"):
        assert fact in card, fact


def test_fresh_process_loads_offline_and_predicts_the_same(model_folder, grid_store, tmp_path):
    expected = predict_store(grid_store["store"], None, model_folder["checkpoint"])  # every video of the store
    code = (
        "import sys; from actiondiff.tools.predict import predict_store\n"
        "from actiondiff.learn.hub import HeadModel\n"
        "model = HeadModel.from_pretrained(sys.argv[1])\n"
        "assert not model.training and model.info['tap'] == 'L06_T20'\n"
        "predict_store(sys.argv[2], None, sys.argv[1]).to_csv(sys.argv[3], index=False)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    out = tmp_path / "scores.csv"
    subprocess.run([sys.executable, "-c", code, str(model_folder["folder"]), str(grid_store["store"]), str(out)],
                   check=True, env=env, timeout=300)
    actual = pd.read_csv(out, keep_default_na=False)
    pd.testing.assert_frame_equal(actual[["video_id", "rank", "class"]], expected[["video_id", "rank", "class"]])
    assert actual.score.tolist() == pytest.approx(expected.score.tolist(), abs=1e-6)


def test_repo_id_is_read_from_the_cache_offline(model_folder, tmp_path, monkeypatch):
    # a Hugging Face cache laid out as a download leaves it: models--<org>--<name>/snapshots/<commit>/
    cache = tmp_path / "hf"
    snapshot = cache / "models--lab--ak-head" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "README.md"):
        (snapshot / name).write_bytes((model_folder["folder"] / name).read_bytes())
    (cache / "models--lab--ak-head" / "refs").mkdir()
    (cache / "models--lab--ak-head" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = HeadModel.from_pretrained("lab/ak-head", cache_dir=str(cache))
    assert model.info["tap"] == TAP


def test_old_checkpoints_and_bad_folders(model_folder, tmp_path):
    model, info = load_model(model_folder["checkpoint"])  # a checkpoint file still loads as before
    assert info["tap"] == TAP
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_model(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"\['classes'"):
        HeadModel({"head": {}, "train": {}})
    assert save_model(model_folder["checkpoint"], tmp_path / "again") == tmp_path / "again"
    assert "Not evaluated" in (tmp_path / "again" / "README.md").read_text()


def test_timelines_of_held_out_videos(model_folder, grid_store, tmp_path):
    paths = plot_store_timelines(grid_store["store"], grid_store["manifest"], PROTOCOL, model_folder["folder"],
                                 tmp_path, size=4, hop=2)
    held_out = grid_store["manifest"].video_id[grid_store["manifest"].domain == "blue"]
    assert sorted(p.name for p in paths) == sorted(file_name(v) for v in held_out)
    assert all(p.stat().st_size > 5000 for p in paths)
    assert window_starts(12, 4, 2) == [0, 2, 4, 6, 8] and window_starts(11, 4, 2) == [0, 2, 4, 6, 7]
    assert window_starts(12, 4, 4) == [0, 4, 8] and window_starts(3, 4, 2) == [0]
