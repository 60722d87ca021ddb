"""Trainable heads on per-frame features: the paper's transformer, the Table 4 ablations and the
learned layer x timestep aggregation (issue 28).

Heads return logits; the loss or the caller applies sigmoid/softmax.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from actiondiff.settings import HeadSettings, parse_tap

__all__ = ["AggregateHead", "HeadSettings", "Standardize", "build_head", "fit_length", "sinusoidal_positions"]

# Values converted to float64 at a time when fitting the scaling (32 MiB).
FIT_VALUES = 1 << 22

def fit_length(sequence: np.ndarray, settings: HeadSettings) -> np.ndarray:
    """Shorten a [n, d] sequence to at most `max_length` frames by the configured policy.

    `uniform` keeps `max_length` frames evenly spaced from the first to the last (rounded
    indices); `truncate` keeps the first `max_length`. Shorter sequences are returned as is
    (the batch pads and masks them).
    """
    n = sequence.shape[0]
    if n <= settings.max_length:
        return sequence
    if settings.long_policy == "truncate":
        return sequence[: settings.max_length]
    keep = np.linspace(0, n - 1, settings.max_length).round().astype(np.int64)
    return sequence[keep]


def sinusoidal_positions(length: int, width: int) -> torch.Tensor:
    """[length, width] sinusoidal position encoding (Vaswani et al.)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)[:, : width // 2]
    return table


class Standardize(nn.Module):
    """(x - mean) / std per feature channel, with the training frames' statistics as buffers.

    Why: the sinusoidal positions have amplitude 1 in every channel, while a backbone's pooled
    features may be far smaller or larger (the demo's: std 0.2); on one scale neither drowns
    the other. The statistics are saved with the head, so prediction applies the same scaling.
    Identity (mean 0, std 1) until `fit` is called.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))

    def fit(self, sequences: Sequence[np.ndarray]) -> None:
        """Set the statistics from [n_i, width] training sequences (constant channels keep std 1).

        One pass in float64 over groups of sequences (Chan et al.'s merge of means and squared
        deviations), so the sequences may stay float16, or be read from a store one by one,
        without a float32 copy of all frames.
        """
        count, mean, m2 = 0, np.zeros(self.mean.shape[0]), np.zeros(self.mean.shape[0])
        group: list[np.ndarray] = []
        for k in range(len(sequences) + 1):
            if k < len(sequences):
                group.append(sequences[k])
            if group and (k == len(sequences) or sum(len(g) for g in group) * self.mean.shape[0] >= FIT_VALUES):
                frames = np.concatenate(group).astype(np.float64)  # [frames of the group, width]
                n, group_mean = frames.shape[0], frames.mean(axis=0)
                group_m2 = ((frames - group_mean) ** 2).sum(axis=0)
                delta, total = group_mean - mean, count + n
                mean = mean + delta * n / total
                m2 = m2 + group_m2 + delta**2 * count * n / total
                count, group = total, []
        std = np.sqrt(m2 / max(count, 1))
        self.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        self.std.copy_(torch.from_numpy(np.where(std > 1e-6, std, 1.0).astype(np.float32)))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return (frames - self.mean) / self.std


class TransformerHead(nn.Module):
    """CLS token + sinusoidal positions + transformer encoder + LayerNorm + linear on CLS."""

    def __init__(self, width: int, num_classes: int, settings: HeadSettings) -> None:
        super().__init__()
        if width % settings.num_heads:
            raise ValueError(
                f"Expected the feature width {width} to be divisible by `num_heads` "
                f"({settings.num_heads}), but it is not. Change head.num_heads."
            )
        self.standardize = Standardize(width)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.normal_(self.cls, std=0.02)
        self.register_buffer("positions", sinusoidal_positions(settings.max_length + 1, width), persistent=False)
        layer = nn.TransformerEncoderLayer(
            width, settings.num_heads, settings.ff_mult * width, settings.dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, settings.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(settings.dropout)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, frames: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """frames [b, n, d] float, padding [b, n] bool (True = padded) -> logits [b, classes]."""
        batch, length, _ = frames.shape
        if length > self.positions.shape[0] - 1:
            raise ValueError(
                f"Expected at most max_length={self.positions.shape[0] - 1} frames, but got {length}; "
                f"fit sequences with `fit_length` first."
            )
        # [b, n, d] -> [b, 1 + n, d] with the CLS token first
        frames = self.standardize(frames)
        tokens = torch.cat([self.cls.expand(batch, -1, -1), frames], dim=1) + self.positions[: length + 1]
        mask = torch.cat([torch.zeros(batch, 1, dtype=torch.bool, device=padding.device), padding], dim=1)
        encoded = self.norm(self.encoder(tokens, src_key_padding_mask=mask))
        return self.classifier(self.dropout(encoded[:, 0]))


class ConcatHead(nn.Module):
    """Linear or MLP on the concatenation of `max_length` (zero-padded) frames."""

    def __init__(self, width: int, num_classes: int, settings: HeadSettings) -> None:
        super().__init__()
        inputs = width * settings.max_length
        self.standardize = Standardize(width)
        if settings.kind == "linear":
            self.net = nn.Sequential(nn.Dropout(settings.dropout), nn.Linear(inputs, num_classes))
        else:
            self.net = nn.Sequential(
                nn.Linear(inputs, settings.mlp_hidden),
                nn.GELU(),
                nn.Dropout(settings.dropout),
                nn.Linear(settings.mlp_hidden, num_classes),
            )
        self.max_length = settings.max_length

    def forward(self, frames: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """frames [b, n, d], padding [b, n] -> logits [b, classes]; padded frames are zeroed."""
        if frames.shape[1] > self.max_length:
            raise ValueError(
                f"Expected at most max_length={self.max_length} frames, but got {frames.shape[1]}; "
                f"fit sequences with `fit_length` first."
            )
        frames = self.standardize(frames).masked_fill(padding[..., None], 0.0)
        frames = nn.functional.pad(frames, (0, 0, 0, self.max_length - frames.shape[1]))
        return self.net(frames.flatten(1))  # [b, max_length, d] -> [b, max_length * d]


# Adam moves a parameter by about the learning rate per step whatever its gradient's size, so
# mixing logits trained as plain parameters would move by ~lr x steps: 0.15 in the demo's 150
# steps at lr 1e-3, leaving the weights within 1.2x of uniform (measured: 0.081-0.085 for 12
# taps). The logits are this gain times their parameters, so they move `MIXING_GAIN` times faster.
MIXING_GAIN = 30.0


class AggregateHead(nn.Module):
    """Every tap of a feature set, each projected to a common width, mixed by learned weights,
    then the paper's transformer over time (Diffusion Hyperfeatures' aggregation, for video).

    The input is a store's `ALL` row: every tap side by side ([b, n, sum of tap widths]), tap t
    owning the columns `tap_columns[t]`. The mixing weights are a softmax over taps: one logit
    per tap (`joint`), or a layer logit plus a timestep logit (`factorised`: the weights are
    then a product of a per-layer and a per-timestep softmax).
    """

    def __init__(self, tap_columns: dict[str, Sequence[int]], num_classes: int, settings: HeadSettings) -> None:
        super().__init__()
        self.taps = sorted(tap_columns, key=lambda t: int(tap_columns[t][0]))  # column order
        self.spans = [(int(tap_columns[t][0]), int(tap_columns[t][1])) for t in self.taps]
        self.standardize = Standardize(self.spans[-1][1])
        self.project = nn.ModuleList(nn.Linear(stop - start, settings.aggregate_width) for start, stop in self.spans)
        # Each projected tap is normalised (no learned scale), so a tap's share of the mix is its
        # mixing weight alone: a projection cannot scale its tap up or down behind the weights.
        self.norm = nn.LayerNorm(settings.aggregate_width, elementwise_affine=False)
        cells = [parse_tap(t) for t in self.taps]
        self.layers = sorted({layer for layer, _ in cells})
        self.timesteps = sorted({step for _, step in cells})
        self.factorised = settings.mixing == "factorised"
        # which layer / timestep logit each tap adds (buffers: they move with the module)
        self.register_buffer("layer_of", torch.tensor([self.layers.index(la) for la, _ in cells]), persistent=False)
        self.register_buffer("timestep_of", torch.tensor([self.timesteps.index(t) for _, t in cells]), persistent=False)
        if self.factorised:
            self.layer_logits = nn.Parameter(torch.zeros(len(self.layers)))
            self.timestep_logits = nn.Parameter(torch.zeros(len(self.timesteps)))
        else:
            self.tap_logits = nn.Parameter(torch.zeros(len(self.taps)))  # uniform mixing at the start
        self.temporal = TransformerHead(settings.aggregate_width, num_classes, replace(settings, standardize=False))

    def mixing_weights(self) -> torch.Tensor:
        """[taps] the softmax mixing weights, in `self.taps` order (they sum to 1)."""
        if self.factorised:
            logits = self.layer_logits[self.layer_of] + self.timestep_logits[self.timestep_of]
        else:
            logits = self.tap_logits
        return torch.softmax(MIXING_GAIN * logits, dim=0)

    def forward(self, frames: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """frames [b, n, sum of tap widths], padding [b, n] -> logits [b, classes]."""
        if frames.shape[-1] != self.spans[-1][1]:
            raise ValueError(
                f"Expected frames of {self.spans[-1][1]} channels (the taps {self.taps[0]}..{self.taps[-1]} side "
                f"by side), but got {frames.shape[-1]}."
            )
        frames = self.standardize(frames)
        weights = self.mixing_weights()
        mixed = sum(
            w * self.norm(project(frames[..., start:stop]))
            for w, project, (start, stop) in zip(weights, self.project, self.spans, strict=True)
        )
        return self.temporal(mixed, padding)  # [b, n, aggregate_width] -> [b, classes]


def build_head(
    width: int,
    num_classes: int,
    settings: HeadSettings,
    train_sequences: Sequence[np.ndarray] | None = None,
    tap_columns: dict[str, Sequence[int]] | None = None,
) -> nn.Module:
    """The head named by `settings.kind`; with `train_sequences` and `standardize` on, its
    feature scaling is fitted to them.

    Args:
        tap_columns: the aggregate head's input layout, {tap: [start, stop)} (a store's
            `tap_columns`); the other heads take none.
    Raises:
        ValueError: an aggregate head without `tap_columns`, or with columns that do not fill
            `width`.
    """
    if settings.kind == "aggregate":
        if not tap_columns:
            raise ValueError("Expected `tap_columns` (the taps side by side in the input) for head.kind `aggregate`, but got none.")
        head: nn.Module = AggregateHead(tap_columns, num_classes, settings)
        if head.spans[-1][1] != width:
            raise ValueError(f"Expected `tap_columns` to cover the feature width {width}, but they end at column {head.spans[-1][1]}.")
    elif settings.kind == "transformer":
        head = TransformerHead(width, num_classes, settings)
    else:
        head = ConcatHead(width, num_classes, settings)
    if settings.standardize and train_sequences is not None:
        head.standardize.fit(train_sequences)
    return head
