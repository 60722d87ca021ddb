"""Heads: shapes, masking (padded frames never change the output), length policies."""

import numpy as np
import pytest
import torch

from actiondiff.learn import head as head_module
from actiondiff.learn.head import HeadSettings, build_head, fit_length, sinusoidal_positions

WIDTH, CLASSES = 16, 3


def small(kind: str, **kwargs) -> HeadSettings:
    return HeadSettings(kind=kind, num_layers=2, num_heads=4, max_length=8, mlp_hidden=12, **kwargs)


@pytest.mark.parametrize("kind", ["transformer", "mlp", "linear"])
def test_padded_frames_do_not_change_the_output(kind):
    torch.manual_seed(0)
    model = build_head(WIDTH, CLASSES, small(kind)).eval()
    frames = torch.randn(1, 5, WIDTH)
    alone = model(frames, torch.zeros(1, 5, dtype=torch.bool))
    # the same 5 frames followed by 3 padded frames of garbage
    padded = torch.cat([frames, 100 * torch.randn(1, 3, WIDTH)], dim=1)
    mask = torch.tensor([[False] * 5 + [True] * 3])
    with torch.no_grad():
        assert torch.allclose(model(padded, mask), alone, atol=1e-5)
    # and the output does depend on real frames
    changed = frames.clone()
    changed[0, 2] += 1.0
    assert not torch.allclose(model(changed, torch.zeros(1, 5, dtype=torch.bool)), alone, atol=1e-4)
    assert alone.shape == (1, CLASSES)


def test_transformer_order_matters_through_positions():
    torch.manual_seed(0)
    model = build_head(WIDTH, CLASSES, small("transformer", dropout=0.0)).eval()
    frames = torch.randn(1, 4, WIDTH)
    no_pad = torch.zeros(1, 4, dtype=torch.bool)
    assert not torch.allclose(model(frames, no_pad), model(frames.flip(1), no_pad), atol=1e-5)


def test_too_long_input_is_refused():
    model = build_head(WIDTH, CLASSES, small("transformer"))
    with pytest.raises(ValueError, match="max_length=8"):
        model(torch.zeros(1, 9, WIDTH), torch.zeros(1, 9, dtype=torch.bool))


def test_fit_length_policies():
    sequence = np.arange(20, dtype=np.float32)[:, None].repeat(2, axis=1)  # [20, 2], row i = i
    uniform = fit_length(sequence, HeadSettings(max_length=5, long_policy="uniform"))
    assert uniform[:, 0].tolist() == [0, 5, 10, 14, 19]  # linspace(0, 19, 5) rounded
    truncate = fit_length(sequence, HeadSettings(max_length=5, long_policy="truncate"))
    assert truncate[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert fit_length(sequence[:3], HeadSettings(max_length=5)).shape == (3, 2)


def test_sinusoidal_positions_values():
    table = sinusoidal_positions(3, 4)
    # position p, pair i: sin(p / 10000^(2i/4)), cos(...)
    expected = torch.tensor([[np.sin(p), np.cos(p), np.sin(p / 100), np.cos(p / 100)] for p in range(3)], dtype=torch.float32)
    assert torch.allclose(table, expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["transformer", "mlp", "linear"])
def test_standardized_head_ignores_the_feature_scale(kind):
    # The same head fitted to features 50x larger and shifted gives the same logits: the
    # positions never drown small features, nor large features the positions.
    rng = np.random.default_rng(0)
    train = [rng.normal(size=(6, WIDTH)).astype(np.float32) for _ in range(5)]
    scale, shift = 50.0, rng.normal(size=WIDTH).astype(np.float32)
    frames, no_pad = torch.from_numpy(train[0])[None], torch.zeros(1, 6, dtype=torch.bool)
    torch.manual_seed(0)
    plain = build_head(WIDTH, CLASSES, small(kind), train).eval()
    torch.manual_seed(0)
    scaled = build_head(WIDTH, CLASSES, small(kind), [scale * x + shift for x in train]).eval()
    with torch.no_grad():
        assert torch.allclose(plain(frames, no_pad), scaled(scale * frames + torch.from_numpy(shift), no_pad), atol=1e-4)
    torch.manual_seed(0)
    raw = build_head(WIDTH, CLASSES, small(kind, standardize=False), train).eval()
    assert torch.equal(raw.standardize.mean, torch.zeros(WIDTH)) and torch.equal(raw.standardize.std, torch.ones(WIDTH))


def test_standardize_keeps_constant_channels_finite():
    sequence = np.ones((4, WIDTH), dtype=np.float32)
    sequence[:, 0] = [0, 1, 2, 3]
    model = build_head(WIDTH, CLASSES, small("linear"), [sequence])
    assert model.standardize.std[0] == pytest.approx(np.std([0, 1, 2, 3]))
    assert torch.equal(model.standardize.std[1:], torch.ones(WIDTH - 1))
    assert torch.isfinite(model(torch.from_numpy(sequence)[None], torch.zeros(1, 4, dtype=torch.bool))).all()


def test_settings_validation():
    with pytest.raises(ValueError, match="kind"):
        HeadSettings(kind="lstm")
    with pytest.raises(ValueError, match="divisible"):
        build_head(10, 2, HeadSettings(num_heads=4))


def test_standardize_fits_in_groups_as_in_one_pass(monkeypatch):
    rng = np.random.default_rng(1)
    train = [(rng.normal(size=(n, WIDTH)) * 3 + 7).astype(np.float16) for n in (3, 5, 2, 7)]
    frames = np.concatenate(train).astype(np.float64)
    monkeypatch.setattr(head_module, "FIT_VALUES", 2 * WIDTH)  # a group every 2 frames: 4 merges
    model = build_head(WIDTH, CLASSES, small("linear"), train)
    np.testing.assert_allclose(model.standardize.mean.numpy(), frames.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(model.standardize.std.numpy(), frames.std(axis=0), rtol=1e-6)
