"""The learned tap aggregation head (issue 28): every tap of a store, mixed by learned weights."""

import json

import numpy as np
import pytest
import torch

from actiondiff.learn.head import MIXING_GAIN, AggregateHead, HeadSettings, build_head
from actiondiff.learn.protocols import ProtocolSettings
from actiondiff.learn.run import evaluate_run, train_seeds
from actiondiff.learn.train import TrainSettings, load_checkpoint
from actiondiff.plan import parse_experiments
from actiondiff.report.aggregate import CHOSEN, mixing_weights, plot_mixing, tap_comparison
from actiondiff.report.tables import grid_frame
from actiondiff.settings import ALL_TAPS
from actiondiff.store.packed import FeatureStore

COLUMNS = {"L03_T10": [0, 8], "L03_T20": [8, 16], "L06_T10": [16, 24], "L06_T20": [24, 32]}
HEAD = HeadSettings(kind="aggregate", num_layers=1, num_heads=2, max_length=8, aggregate_width=8)
TRAIN = TrainSettings(epochs=3, batch_size=4, lr=3e-3, warmup_epochs=1, mixup_alpha=0.0, loss="ce", multilabel=False)
PROTOCOL = ProtocolSettings(test_domains=("blue",))


@pytest.mark.parametrize("mixing", ["joint", "factorised"])
def test_mixing_weights_are_a_softmax_over_taps(mixing):
    head = build_head(32, 3, HeadSettings(kind="aggregate", num_layers=1, num_heads=2, aggregate_width=8, mixing=mixing), tap_columns=COLUMNS)
    assert isinstance(head, AggregateHead) and head.layers == [3, 6] and head.timesteps == [10, 20]
    with torch.no_grad():
        if mixing == "factorised":  # layer 6 and timestep 20 favoured: their product is the largest weight
            head.layer_logits.copy_(torch.tensor([0.0, 1.0]) / MIXING_GAIN)
            head.timestep_logits.copy_(torch.tensor([0.0, 2.0]) / MIXING_GAIN)
        else:
            head.tap_logits.copy_(torch.tensor([0.0, 0.0, 0.0, 3.0]) / MIXING_GAIN)
    weights = head.mixing_weights()
    assert weights.sum().item() == pytest.approx(1.0) and int(weights.argmax()) == 3  # L06_T20
    if mixing == "factorised":  # a product of a per-layer and a per-timestep softmax
        layer, step = torch.softmax(torch.tensor([0.0, 1.0]), 0), torch.softmax(torch.tensor([0.0, 2.0]), 0)
        assert torch.allclose(weights, torch.outer(layer, step).flatten())
    logits = head(torch.randn(2, 5, 32), torch.zeros(2, 5, dtype=torch.bool))
    assert logits.shape == (2, 3)


def test_bad_layouts_are_refused():
    with pytest.raises(ValueError, match="tap_columns"):
        build_head(32, 3, HEAD)
    with pytest.raises(ValueError, match="feature width 40"):
        build_head(40, 3, HEAD, tap_columns=COLUMNS)
    head = build_head(32, 3, HEAD, tap_columns=COLUMNS)
    with pytest.raises(ValueError, match="Expected frames of 32 channels"):
        head(torch.randn(1, 2, 24), torch.zeros(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="mixing"):
        HeadSettings(kind="aggregate", mixing="sum")


def test_store_reads_every_tap_side_by_side(grid_store):
    store = FeatureStore(grid_store["store"])
    assert store.columns(ALL_TAPS) == (0, 32)
    whole = store.rows(ALL_TAPS, 0)
    np.testing.assert_array_equal(whole[:, 24:32], store.rows("L06_T20", 0))


@pytest.fixture(scope="module")
def aggregate_run(grid_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("aggregate")
    args = (grid_store["store"], grid_store["manifest"], ALL_TAPS, PROTOCOL, HEAD, TRAIN, [0, 1])
    checkpoints = train_seeds(*args, out / "memory", stream=False)
    streamed = train_seeds(*args[:-1], [0], out / "streamed", stream=True)
    return {"out": out, "checkpoints": checkpoints, "streamed": streamed[0]}


def test_aggregate_trains_on_the_store_streamed_or_not(aggregate_run):
    info = json.loads(aggregate_run["checkpoints"][0].with_suffix(".json").read_text())
    assert info["tap"] == ALL_TAPS and info["tap_columns"] == COLUMNS and info["width"] == 32
    # streaming every tap from the store gives the very same head as reading them into memory
    assert aggregate_run["checkpoints"][0].read_bytes() == aggregate_run["streamed"].read_bytes()
    model, _ = load_checkpoint(aggregate_run["checkpoints"][0])
    assert model.taps == list(COLUMNS)


def test_comparison_table_and_figure(grid_store, aggregate_run, tmp_path):
    store, manifest = grid_store["store"], grid_store["manifest"]
    aggregate = evaluate_run(store, manifest, PROTOCOL, aggregate_run["checkpoints"], {"label": "aggregate"})
    grid = []
    for tap in COLUMNS:
        single = HeadSettings(num_layers=1, num_heads=2, max_length=8)
        paths = train_seeds(store, manifest, tap, PROTOCOL, single, TRAIN, [0], tmp_path / tap)
        grid.append(evaluate_run(store, manifest, PROTOCOL, paths, {"label": "grid"}))
    table = tap_comparison(aggregate, grid, [])
    assert table["tap chosen on"].tolist() == [CHOSEN["learned"], CHOSEN["val"], CHOSEN["test"]]
    assert table["seeds"].tolist() == [2, 1, 1]
    std = table["top1_accuracy (%) std"]
    assert std.iloc[0] == pytest.approx(aggregate.metrics["top1_accuracy"].std, abs=0.01) and std.iloc[1:].isna().all()
    best_test = max(grid, key=lambda e: e.metrics["top1_accuracy"].mean)
    assert table["top1_accuracy (%) mean"].iloc[-1] == pytest.approx(best_test.metrics["top1_accuracy"].mean, abs=0.01)
    assert "TEST" in table["head"].iloc[-1]
    weights = mixing_weights(aggregate_run["checkpoints"])
    assert weights.tap.tolist() == list(COLUMNS) and weights.weight_mean.sum() == pytest.approx(1.0)
    assert (weights.seeds == 2).all()
    plot_mixing(weights, grid_frame(grid, "top1_accuracy"), "top1_accuracy", tmp_path / "m.png", tmp_path / "m.pdf")
    assert (tmp_path / "m.png").stat().st_size > 5000


def test_plan_runs_an_aggregate_experiment_once_over_all_taps():
    config = {
        "extraction": {"layers": [3, 6], "timestep_indices": [10, 20]},
        "experiments": {
            "grid": {"grid": True},
            "paper": {"taps": ["L06_T20"]},
            "mix": {"head": {"kind": "aggregate"}, "compare": ["grid", "paper"]},
        },
    }
    experiments = parse_experiments(config)
    assert experiments["mix"].runs() == [("main", ALL_TAPS)]
    assert len(experiments["grid"].runs()) == 4
    with pytest.raises(ValueError, match="`compare` to name experiments among"):
        parse_experiments({**config, "experiments": {**config["experiments"], "mix": {"head": {"kind": "aggregate"}, "compare": ["nope"]}}})
    with pytest.raises(ValueError, match="only on an experiment with head.kind aggregate"):
        parse_experiments({**config, "experiments": {**config["experiments"], "paper": {"compare": ["grid"]}}})
    other = {"protocol": {"test_domains": ["x"]}, "grid": True}
    with pytest.raises(ValueError, match="share the protocol"):
        parse_experiments({**config, "experiments": {**config["experiments"], "grid": other}})


def test_mixing_weights_refuse_other_heads(grid_store, tmp_path):
    single = HeadSettings(num_layers=1, num_heads=2, max_length=8)
    (path,) = train_seeds(grid_store["store"], grid_store["manifest"], "L03_T10", PROTOCOL, single,
                          TrainSettings(epochs=1, batch_size=4, loss="ce", multilabel=False), [0], tmp_path)
    with pytest.raises(ValueError, match="aggregate head's checkpoint"):
        mixing_weights([path])
