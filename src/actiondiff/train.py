"""Training a head on cached features (paper supplement A.1, DESIGN section 5).

Sequences come from a packed store; targets are multi-hot rows (one-hot for single-label
protocols, so mixup mixes targets the same way in both cases).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from .head import HeadSettings, build_head, fit_length
from .metrics import micro_ap, top1_accuracy
from .settings import _check_choice, _check_min, _doc, from_dict, to_dict

log = logging.getLogger(__name__)
LOSSES = ("focal", "ce", "bce")
OPTIMIZERS = ("adamw", "adam")


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation of the head (defaults: the Animal Kingdom preset of DESIGN section 5)."""

    epochs: int = _doc(15, "training epochs")
    batch_size: int = _doc(16, "sequences per step")
    lr: float = _doc(3e-5, "peak learning rate")
    weight_decay: float = _doc(1e-4, "decoupled weight decay")
    warmup_epochs: float = _doc(4, "linear warm-up length, then cosine decay to 0")
    optimizer: str = _doc("adamw", "adamw | adam")
    loss: str = _doc("focal", "focal | ce (single-label) | bce (multi-label)")
    focal_alpha: float = _doc(0.25, "focal loss alpha")
    focal_gamma: float = _doc(2.0, "focal loss gamma")
    mixup_alpha: float = _doc(0.2, "mixup Beta(alpha, alpha); 0 turns mixup off")
    multilabel: bool = _doc(False, "sigmoid outputs (multi-label) instead of softmax")
    seed: int = _doc(0, "seed of initialisation, shuffling and mixup")

    def __post_init__(self) -> None:
        _check_choice("loss", self.loss, LOSSES)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("epochs", "batch_size"):
            _check_min(name, getattr(self, name), 1)
        for name in ("lr", "weight_decay", "warmup_epochs", "mixup_alpha", "focal_gamma"):
            _check_min(name, getattr(self, name), 0)


# Per-protocol hyperparameters of the paper (DESIGN section 5), as named presets.
PRESETS: dict[str, dict[str, Any]] = {
    "animal_kingdom": dict(lr=3e-5, weight_decay=1e-4, mixup_alpha=0.2, focal_alpha=0.25, focal_gamma=2.0),
    "charades_ego": dict(lr=1e-4, weight_decay=1e-3, mixup_alpha=0.3, focal_alpha=1.0, focal_gamma=2.0, multilabel=True),
    "ucf_hmdb": dict(lr=1e-4, weight_decay=1e-4, mixup_alpha=0.0, focal_alpha=1.0, focal_gamma=2.0),
    # The demo's tiny features train from scratch in seconds: a larger rate, more epochs.
    "demo": dict(lr=1e-3, weight_decay=1e-4, mixup_alpha=0.2, focal_alpha=1.0, focal_gamma=2.0, epochs=30, warmup_epochs=3),
}


def train_settings(preset: str, overrides: dict[str, Any] | None = None) -> TrainSettings:
    """A named preset with optional overrides."""
    if preset not in PRESETS:
        raise ValueError(f"Expected `train.preset` to be one of {sorted(PRESETS)}, but got {preset!r}.")
    return from_dict(TrainSettings, {**PRESETS[preset], **(overrides or {})}, "config key `train`")


def learning_rate(step: int, total_steps: int, warmup_steps: int, peak: float) -> float:
    """Linear warm-up to `peak`, then cosine decay to 0 (a pure function of the step)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float, multilabel: bool) -> torch.Tensor:
    """Focal loss (Lin et al.) on soft targets; sigmoid form for multi-label, softmax otherwise."""
    if multilabel:
        probs = torch.sigmoid(logits)
        ce = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p_t = probs * targets + (1 - probs) * (1 - targets)
        weight = alpha * targets + (1 - alpha) * (1 - targets)
        return (weight * (1 - p_t) ** gamma * ce).sum(dim=1).mean()
    log_probs = torch.log_softmax(logits, dim=1)
    return (-alpha * targets * (1 - log_probs.exp()) ** gamma * log_probs).sum(dim=1).mean()


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, settings: TrainSettings) -> torch.Tensor:
    if settings.loss == "focal":
        return focal_loss(logits, targets, settings.focal_alpha, settings.focal_gamma, settings.multilabel)
    if settings.loss == "bce" or settings.multilabel:
        return nn.functional.binary_cross_entropy_with_logits(logits, targets)
    return -(targets * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


def probabilities(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)


def collate(sequences: list[np.ndarray], head: HeadSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad [n_i, d] sequences into frames [b, n, d] and padding mask [b, n] (True = pad)."""
    fitted = [fit_length(s, head) for s in sequences]
    length = max(s.shape[0] for s in fitted)
    frames = torch.zeros(len(fitted), length, fitted[0].shape[1])
    padding = torch.ones(len(fitted), length, dtype=torch.bool)
    for i, s in enumerate(fitted):
        frames[i, : s.shape[0]] = torch.from_numpy(s)
        padding[i, : s.shape[0]] = False
    return frames, padding


def batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[np.ndarray]:
    order = torch.randperm(n, generator=generator).numpy() if generator is not None else np.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def predict(model: nn.Module, sequences: list[np.ndarray], head: HeadSettings, multilabel: bool, batch_size: int = 64) -> np.ndarray:
    """Class probabilities [n, classes] for each sequence (eval mode, no grad)."""
    model.eval()
    out = []
    with torch.no_grad():
        for index in batches(len(sequences), batch_size, None):
            frames, padding = collate([sequences[i] for i in index], head)
            out.append(probabilities(model(frames, padding), multilabel).numpy())
    return np.concatenate(out)


def validation_score(probs: np.ndarray, targets: np.ndarray, multilabel: bool) -> float:
    """The model-selection metric: micro AP for multi-label, top-1 accuracy otherwise."""
    return micro_ap(probs, targets) if multilabel else top1_accuracy(probs, targets)


def train_head(
    train: tuple[list[np.ndarray], np.ndarray],
    val: tuple[list[np.ndarray], np.ndarray],
    head: HeadSettings,
    settings: TrainSettings,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train a head; keep the weights of the epoch with the best validation score.

    Args:
        train, val: (sequences [n_i, d] float32, targets [n, classes] float32 multi-hot).
    Returns:
        (model with the best validation weights, per-epoch history).
    """
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    sequences, targets = train
    model = build_head(sequences[0].shape[1], targets.shape[1], head)
    optimizer_cls = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_cls(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(len(sequences) / settings.batch_size)
    total, warmup = settings.epochs * steps_per_epoch, round(settings.warmup_epochs * steps_per_epoch)
    beta = torch.distributions.Beta(settings.mixup_alpha, settings.mixup_alpha) if settings.mixup_alpha > 0 else None
    history, best, best_state, step = [], -1.0, None, 0
    progress = tqdm(range(settings.epochs), desc=f"train seed {settings.seed}", unit="epoch", leave=False)
    for epoch in progress:
        model.train()
        losses = []
        for index in batches(len(sequences), settings.batch_size, generator):
            frames, padding = collate([sequences[i] for i in index], head)
            target = torch.from_numpy(targets[index])
            if beta is not None:  # mixup: blend each sample with a shuffled partner
                lam = float(beta.sample())
                partner = torch.randperm(len(index), generator=generator)
                frames = lam * frames + (1 - lam) * frames[partner]
                padding = padding & padding[partner]
                target = lam * target + (1 - lam) * target[partner]
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total, warmup, settings.lr)
            loss = loss_fn(model(frames, padding), target, settings)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss))
            step += 1
        score = validation_score(predict(model, val[0], head, settings.multilabel), val[1], settings.multilabel)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_score": 100.0 * score})
        progress.set_postfix(loss=f"{history[-1]['loss']:.4f}", val=f"{100 * score:.1f}")
        log.info("seed %d epoch %d loss %.4f val %.2f", settings.seed, epoch + 1, history[-1]["loss"], 100 * score)
        if score > best:
            best, best_state = score, {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model.eval(), history


def save_checkpoint(model: nn.Module, path: str | Path, info: dict[str, Any]) -> None:
    """Weights as safetensors plus a JSON of classes, feature settings hash and settings.

    Both files are written to temporary names and then renamed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, path)
    meta = path.with_suffix(".json")
    tmp_meta = meta.with_name(f".{meta.name}.tmp-{os.getpid()}")
    tmp_meta.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_meta, meta)


def load_checkpoint(path: str | Path, expected_hash: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a head from its checkpoint; refuse features of other settings.

    Raises:
        ValueError: `expected_hash` differs from the features the head was trained on.
    """
    path = Path(path)
    info = json.loads(path.with_suffix(".json").read_text())
    if expected_hash is not None and info["settings_hash"] != expected_hash:
        raise ValueError(
            f"Expected features with settings hash {info['settings_hash']} (what {path} was trained on), "
            f"but got {expected_hash}. Extract with the model's settings."
        )
    head = from_dict(HeadSettings, info["head"], f"checkpoint {path}")
    model = build_head(info["width"], len(info["classes"]), head)
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval(), info


def checkpoint_info(head: HeadSettings, settings: TrainSettings, **extra: Any) -> dict[str, Any]:
    return {"head": to_dict(head), "train": to_dict(settings), **extra}
