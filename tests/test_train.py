"""Training: lr schedule, focal loss values, determinism on CPU, checkpoints and hash refusal."""

import json
import math

import numpy as np
import pytest
import torch

from actiondiff.learn.train import (
    collate,
    focal_loss,
    learning_rate,
    load_checkpoint,
    mixup,
    predict,
    save_checkpoint,
    selected_epoch,
    train_head,
)
from actiondiff.settings import HeadSettings, TrainSettings, train_settings


def test_learning_rate_warmup_then_cosine():
    # 4 warm-up steps of 10 in total, peak 1.0
    values = [learning_rate(s, 10, 4, 1.0) for s in range(11)]
    assert values[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert values[4] == pytest.approx(1.0)  # cosine starts at the peak
    assert values[7] == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 6)))  # = 0.5
    assert values[10] == pytest.approx(0.0)
    assert learning_rate(0, 10, 0, 2.0) == pytest.approx(2.0)  # no warm-up


def test_focal_loss_softmax_by_hand():
    logits = torch.tensor([[math.log(3.0), 0.0]])  # softmax = [0.75, 0.25]
    target = torch.tensor([[1.0, 0.0]])
    expected = -0.5 * (1 - 0.75) ** 2 * math.log(0.75)
    assert float(focal_loss(logits, target, 0.5, 2.0, multilabel=False)) == pytest.approx(expected, rel=1e-6)
    # gamma 0, alpha 1: cross-entropy
    assert float(focal_loss(logits, target, 1.0, 0.0, multilabel=False)) == pytest.approx(-math.log(0.75), rel=1e-6)


def test_focal_loss_sigmoid_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # sigmoid = [0.5, 0.75]
    target = torch.tensor([[1.0, 0.0]])
    positive = 0.25 * (1 - 0.5) ** 2 * -math.log(0.5)
    negative = 0.75 * 0.75**2 * -math.log(1 - 0.75)
    assert float(focal_loss(logits, target, 0.25, 2.0, multilabel=True)) == pytest.approx(positive + negative, rel=1e-6)


def test_focal_loss_sigmoid_form_agrees_with_torchvision():
    # torchvision.ops.sigmoid_focal_loss is the same formula, but it multiplies in another
    # order: ~1/3 of the terms differ in the last bit (measured 2026-12-07), so swapping it in
    # would change trained heads (focal is the default loss). Ours is kept; this pins it to theirs.
    from torchvision.ops import sigmoid_focal_loss

    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(64, 20, generator=generator)
    for target in ((torch.rand(64, 20, generator=generator) > 0.8).float(), torch.rand(64, 20, generator=generator)):
        for alpha, gamma in ((0.25, 2.0), (0.5, 1.5), (0.75, 0.0)):
            theirs = sigmoid_focal_loss(logits, target, alpha, gamma, reduction="none").sum(dim=1).mean()
            torch.testing.assert_close(focal_loss(logits, target, alpha, gamma, multilabel=True), theirs, rtol=1e-6, atol=0)


def test_learning_rate_after_warmup_is_transformers_cosine_schedule_bit_for_bit():
    # transformers' get_cosine_schedule_with_warmup gives step 0 a learning rate of 0 (ours
    # peak / warmup_steps: no step is wasted), so ours is kept; after the warm-up the two agree exactly.
    from transformers import get_cosine_schedule_with_warmup

    total, warmup, peak = 37, 5, 3e-4
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    schedule = get_cosine_schedule_with_warmup(optimizer, warmup, total)
    theirs = []
    for _ in range(total):
        theirs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    ours = [learning_rate(step, total, warmup, peak) for step in range(total)]
    assert ours[warmup:] == theirs[warmup:]
    assert theirs[0] == 0 and ours[: warmup - 1] == pytest.approx(theirs[1:warmup])  # one step ahead


def test_mixup_blends_frames_padding_and_targets():
    frames = torch.tensor([[[1.0], [2.0]], [[10.0], [0.0]]])
    padding = torch.tensor([[False, False], [False, True]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mixed, mask, soft = mixup(frames, padding, targets, 0.75, torch.tensor([1, 0]))
    assert mixed[0, :, 0].tolist() == pytest.approx([0.75 * 1 + 0.25 * 10, 0.75 * 2])
    assert mask.tolist() == [[False, False], [False, False]]  # padded only where both are
    assert soft[0].tolist() == pytest.approx([0.75, 0.25])


def test_presets_and_validation():
    settings = train_settings("charades_ego", {"epochs": 2})
    assert (settings.lr, settings.weight_decay, settings.mixup_alpha, settings.multilabel, settings.epochs) == (1e-4, 1e-3, 0.3, True, 2)
    assert train_settings("ucf_hmdb").mixup_alpha == 0.0
    with pytest.raises(ValueError, match="unknown key"):
        train_settings("demo", {"learning_rate": 1.0})
    with pytest.raises(ValueError, match="preset"):
        train_settings("imagenet")
    with pytest.raises(ValueError, match="multilabel"):
        TrainSettings(loss="ce", multilabel=True)


def toy_data(seed: int, n: int, classes: int = 3, width: int = 8):
    """Sequences of varied length whose mean feature encodes the class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    sequences = [
        (rng.normal(0, 1, (rng.integers(3, 12), width)) + 3.0 * np.eye(classes, width)[c]).astype(np.float32)
        for c in labels
    ]
    return sequences, np.eye(classes, dtype=np.float32)[labels]


HEAD = HeadSettings(num_layers=1, num_heads=2, max_length=8, dropout=0.1)
FAST = TrainSettings(epochs=4, batch_size=8, lr=3e-3, warmup_epochs=1, loss="focal", focal_alpha=1.0, mixup_alpha=0.2)


def test_training_is_deterministic_on_cpu_and_learns():
    train, val = toy_data(0, 48), toy_data(1, 24)
    settings = TrainSettings(**{**FAST.__dict__, "epochs": 8})
    model_a, history_a = train_head(train, val, HEAD, settings)
    model_b, history_b = train_head(train, val, HEAD, settings)
    assert history_a == history_b
    for key, value in model_a.state_dict().items():
        assert torch.equal(value, model_b.state_dict()[key]), key
    _, history_c = train_head(train, val, HEAD, TrainSettings(**{**settings.__dict__, "seed": 1}))
    assert history_c != history_a
    assert max(row["val_score"] for row in history_a) > 75.0  # chance is 33%
    assert [row["epoch"] for row in history_a] == list(range(1, 9))


def test_without_validation_the_last_epoch_is_kept():
    """The paper's protocols train on the whole training side: no validation set, last epoch."""
    train = toy_data(0, 24)
    settings = TrainSettings(**{**FAST.__dict__, "epochs": 3})
    model, history = train_head(train, ([], np.zeros((0, 3), np.float32)), HEAD, settings)
    assert [row["val_score"] for row in history] == [None, None, None]
    assert selected_epoch(history) == (3, "last")
    # with validation scores, the first best epoch is kept
    assert selected_epoch([{"epoch": 1, "val_score": 50.0}, {"epoch": 2, "val_score": 70.0},
                           {"epoch": 3, "val_score": 70.0}]) == (2, "best_val")
    again, _ = train_head(train, ([], np.zeros((0, 3), np.float32)), HEAD, settings)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    with pytest.raises(ValueError, match="Expected training videos"):
        train_head(([], np.zeros((0, 3), np.float32)), train, HEAD, settings)


def test_checkpoint_round_trip_and_hash_refusal(tmp_path):
    train, val = toy_data(0, 24), toy_data(1, 12)
    model, _ = train_head(train, val, HEAD, TrainSettings(epochs=1, batch_size=8))
    info = {"head": HEAD.__dict__, "train": {"multilabel": False}, "classes": ["a", "b", "c"], "width": 8, "settings_hash": "abc123"}
    path = tmp_path / "seed0.safetensors"
    save_checkpoint(model, path, info)
    assert json.loads(path.with_suffix(".json").read_text())["settings_hash"] == "abc123"
    loaded, loaded_info = load_checkpoint(path, expected_hash="abc123")
    np.testing.assert_array_equal(predict(loaded, val[0], HEAD, False), predict(model, val[0], HEAD, False))
    with pytest.raises(ValueError, match="settings hash abc123.*but got fff000"):
        load_checkpoint(path, expected_hash="fff000")
    path.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="seed0.json"):
        load_checkpoint(path)


def test_collate_pads_fits_and_casts():
    head = HeadSettings(max_length=3, long_policy="truncate")
    a = np.arange(8, dtype=np.float16).reshape(4, 2)  # longer than max_length: first 3 rows kept
    b = np.full((1, 2), 7.0, dtype=np.float32)
    frames, padding = collate([a, b], head)
    assert frames.dtype == torch.float32 and frames.shape == (2, 3, 2)
    assert frames[0].tolist() == [[0, 1], [2, 3], [4, 5]]
    assert frames[1].tolist() == [[7, 7], [0, 0], [0, 0]]
    assert padding.tolist() == [[False, False, False], [False, True, True]]
