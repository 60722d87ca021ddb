"""Training a head on cached features (paper supplement A.1, docs/design.md section 5).

Sequences come from a packed store; targets are multi-hot rows (one-hot for single-label
protocols, so mixup mixes targets the same way in both cases). Sequences are fitted to the
head's `max_length` once, when read from the store (`read_fitted`: one float16 buffer, never
float32 until a batch is formed); a batch is then only padded and stacked. A tap too large for
memory is read video by video instead (`StoreSequences`), at the cost measured in BENCHMARKS.md
"Scale" (each batch reads its videos from the store).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from actiondiff import __version__
from actiondiff.learn.head import HeadSettings, build_head, fit_length
from actiondiff.learn.metrics import micro_ap, top1_accuracy
from actiondiff.settings import TrainSettings, from_dict, to_dict
from actiondiff.store.packed import FeatureStore

log = logging.getLogger(__name__)


def read_fitted(store: FeatureStore, tap: str, indices: np.ndarray, head: HeadSettings) -> list[np.ndarray]:
    """One tap of the videos at store positions `indices`, fitted to the head's `max_length`.

    Returns:
        per index, [min(n_i, max_length), width] float16: views into one buffer of the fitted
        frames (the only copy; nothing of other taps or other videos is read).
    """
    start, stop = store.columns(tap)
    indices = np.asarray(indices, dtype=np.int64)
    unique = np.unique(indices)
    fitted = np.minimum(store.lengths[unique], head.max_length)  # fit_length keeps at most max_length
    at = dict(zip(unique.tolist(), np.concatenate([[0], np.cumsum(fitted)])[:-1].tolist(), strict=True))
    data = np.empty((int(fitted.sum()), stop - start), dtype=np.float16)
    for i, rows in store.iter_rows(tap, unique):
        kept = fit_length(rows, head)
        data[at[i] : at[i] + len(kept)] = kept
    size = dict(zip(unique.tolist(), fitted.tolist(), strict=True))
    return [data[at[i] : at[i] + size[i]] for i in indices.tolist()]


class StoreSequences(Sequence):
    """One tap of some videos, read from the store when indexed and fitted to `max_length`.

    For taps that do not fit in memory: it holds only positions, so training streams the tap
    (each item is one read of 1-2 compressed chunks; BENCHMARKS.md "Scale" has the cost).
    Items are [min(n_i, max_length), width] float16.
    """

    def __init__(self, store: FeatureStore, tap: str, indices: np.ndarray, head: HeadSettings) -> None:
        self.store, self.tap, self.head = store, tap, head
        self.indices = np.asarray(indices, dtype=np.int64)
        store.columns(tap)  # an unknown tap fails here, not at the first batch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> np.ndarray:
        return fit_length(self.store.rows(self.tap, int(self.indices[k])), self.head)


def fit_all(sequences: Sequence[np.ndarray], head: HeadSettings) -> Sequence[np.ndarray]:
    """Sequences fitted to `max_length`: store-backed ones fit when read, others once, here."""
    if isinstance(sequences, StoreSequences):
        return sequences
    return [fit_length(s, head) for s in sequences]


def learning_rate(step: int, total_steps: int, warmup_steps: int, peak: float) -> float:
    """Learning rate at optimiser step `step` (0-based): a pure function of the step.

    Linear warm-up over `warmup_steps` steps to `peak` (step 0 gets peak / warmup_steps),
    then half a cosine from `peak` down to 0 at `total_steps`.
    """
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float, multilabel: bool) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) on soft targets, averaged over the batch.

    Multi-label (sigmoid form, as torchvision's sigmoid_focal_loss but summed over classes):
        sum_c [alpha t (1-p)^gamma (-log p) + (1-alpha)(1-t) p^gamma (-log(1-p))], p = sigmoid.
    Single-label (softmax form): sum_c -alpha t_c (1-p_c)^gamma log p_c, p = softmax.
    Args:
        logits: [b, classes]; targets: [b, classes] in [0, 1] (mixup makes them soft).
    Returns:
        scalar loss.
    """
    if multilabel:
        probs = torch.sigmoid(logits)
        ce = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p_t = probs * targets + (1 - probs) * (1 - targets)
        weight = alpha * targets + (1 - alpha) * (1 - targets)
        return (weight * (1 - p_t) ** gamma * ce).sum(dim=1).mean()
    log_probs = torch.log_softmax(logits, dim=1)
    return (-alpha * targets * (1 - log_probs.exp()) ** gamma * log_probs).sum(dim=1).mean()


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, settings: TrainSettings) -> torch.Tensor:
    """The configured loss of logits [b, classes] against targets [b, classes]."""
    if settings.loss == "focal":
        return focal_loss(logits, targets, settings.focal_alpha, settings.focal_gamma, settings.multilabel)
    if settings.loss == "bce":
        return nn.functional.binary_cross_entropy_with_logits(logits, targets)
    return -(targets * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()  # ce on soft targets


def probabilities(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Logits [b, classes] -> probabilities: sigmoid (multi-label) or softmax over classes."""
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)


def collate(sequences: Sequence[np.ndarray], head: HeadSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit and pad sequences into a batch.

    Args:
        sequences: b arrays [n_i, d] (float16 or float32).
    Returns:
        frames [b, n, d] float32 (zeros where padded), padding [b, n] bool (True = padded),
        n = the longest fitted length (<= head.max_length).
    """
    fitted = [fit_length(s, head) for s in sequences]
    length = max(s.shape[0] for s in fitted)
    # Stack in NumPy: its float16 -> float32 cast is ~15x faster than torch's on our CPUs
    # (measured in BENCHMARKS.md), and the batch must never wait for the cast.
    frames = np.zeros((len(fitted), length, fitted[0].shape[1]), dtype=np.float32)
    padding = np.ones((len(fitted), length), dtype=bool)
    for i, s in enumerate(fitted):
        frames[i, : s.shape[0]] = s
        padding[i, : s.shape[0]] = False
    return torch.from_numpy(frames), torch.from_numpy(padding)


def batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[np.ndarray]:
    """Index arrays of the batches of one epoch: shuffled by `generator`, or in order if None."""
    order = torch.randperm(n, generator=generator).numpy() if generator is not None else np.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def predict(
    model: nn.Module,
    sequences: Sequence[np.ndarray],
    head: HeadSettings,
    multilabel: bool,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Class probabilities [n, classes] float32 for sequences [n_i, d] (eval mode, no grad)."""
    model.eval()
    out = []
    with torch.no_grad():
        for index in batches(len(sequences), batch_size, None):
            frames, padding = collate([sequences[i] for i in index], head)
            logits = model(frames.to(device), padding.to(device))
            out.append(probabilities(logits.float(), multilabel).cpu().numpy())
    return np.concatenate(out)


def validation_score(probs: np.ndarray, targets: np.ndarray, multilabel: bool) -> float:
    """The model-selection metric: micro AP for multi-label, top-1 accuracy otherwise."""
    return micro_ap(probs, targets) if multilabel else top1_accuracy(probs, targets)


def mixup(
    frames: torch.Tensor, padding: torch.Tensor, targets: torch.Tensor, lam: float, partner: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blend each sample with `partner[i]`: lam * own + (1 - lam) * partner's.

    frames [b, n, d], padding [b, n], targets [b, classes]; a frame stays padded only where
    both sequences are padded (padded frames are zeros, so a mixed frame is lam * the real one).
    """
    return (
        lam * frames + (1 - lam) * frames[partner],
        padding & padding[partner],
        lam * targets + (1 - lam) * targets[partner],
    )


def run_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: tuple[Sequence[np.ndarray], np.ndarray],
    head: HeadSettings,
    settings: TrainSettings,
    *,
    step: int,
    total_steps: int,
    warmup_steps: int,
    generator: torch.Generator,
    rng: np.random.Generator,
    device: torch.device,
) -> tuple[float, int]:
    """One training epoch; returns (mean loss, the next step index)."""
    sequences, targets = data
    model.train()
    losses = []
    for index in batches(len(sequences), settings.batch_size, generator):
        frames, padding = collate([sequences[i] for i in index], head)
        target = torch.from_numpy(targets[index])
        if settings.mixup_alpha > 0:
            lam = float(rng.beta(settings.mixup_alpha, settings.mixup_alpha))
            frames, padding, target = mixup(frames, padding, target, lam, torch.randperm(len(index), generator=generator))
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, total_steps, warmup_steps, settings.lr)
        loss = loss_fn(model(frames.to(device), padding.to(device)), target.to(device), settings)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        step += 1
    return float(np.mean(losses)), step


def train_head(
    train: tuple[Sequence[np.ndarray], np.ndarray],
    val: tuple[Sequence[np.ndarray], np.ndarray],
    head: HeadSettings,
    settings: TrainSettings,
    device: str | torch.device = "cpu",
    tap_columns: dict[str, Sequence[int]] | None = None,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train a head; keep the weights of the epoch with the best validation score, or those of
    the last epoch when there is no validation set (`val` empty: the paper's protocols train on
    the whole training side).

    Deterministic on the CPU for a given seed (initialisation, shuffling, dropout and mixup
    all draw from generators seeded by `settings.seed`).
    Args:
        train, val: (sequences: [n_i, d] float arrays (float16 stays float16 until a batch is
            formed; a `StoreSequences` streams from the store), targets [n, classes] float32
            multi-hot); the validation set comes from the training side.
        device: "cpu", "cuda", ... where the head runs.
        tap_columns: the input's taps, {tap: [start, stop)}, for the aggregate head.
    Returns:
        (model with the best validation (else the last) weights, in eval mode on the CPU,
        per-epoch history of {"epoch", "loss", "val_score" (%, None without validation)}).
    """
    sequences, targets = train
    if not len(sequences):
        raise ValueError(f"Expected training videos, but got {len(sequences)} (and {len(val[0])} validation videos).")
    device = torch.device(device)
    torch.manual_seed(settings.seed)  # initialisation and dropout
    generator = torch.Generator().manual_seed(settings.seed)  # shuffling and mixup partners
    rng = np.random.default_rng(settings.seed)  # mixup weights
    fitted = fit_all(sequences, head)  # once, not per batch
    val_fitted = fit_all(val[0], head)
    model = build_head(fitted[0].shape[1], targets.shape[1], head, fitted, tap_columns).to(device)
    optimizer_cls = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_cls(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(len(fitted) / settings.batch_size)
    total, warmup = settings.epochs * steps_per_epoch, round(settings.warmup_epochs * steps_per_epoch)
    history, best, best_state, step = [], -1.0, None, 0
    progress = tqdm(range(settings.epochs), desc=f"train seed {settings.seed}", unit="epoch", leave=False)
    for epoch in progress:
        loss, step = run_epoch(
            model, optimizer, (fitted, targets), head, settings, step=step, total_steps=total,
            warmup_steps=warmup, generator=generator, rng=rng, device=device,
        )
        if not val_fitted:  # no validation set: the last epoch is kept
            history.append({"epoch": epoch + 1, "loss": loss, "val_score": None})
            log.info("seed %d epoch %d/%d loss %.4f", settings.seed, epoch + 1, settings.epochs, loss)
            continue
        probs = predict(model, val_fitted, head, settings.multilabel, device=device)
        score = validation_score(probs, val[1], settings.multilabel)
        history.append({"epoch": epoch + 1, "loss": loss, "val_score": 100.0 * score})
        progress.set_postfix(loss=f"{loss:.4f}", val=f"{100 * score:.1f}")
        log.info("seed %d epoch %d/%d loss %.4f val %.2f", settings.seed, epoch + 1, settings.epochs, loss, 100 * score)
        if score > best:
            best, best_state = score, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    model = model.cpu()
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), history


def selected_epoch(history: list[dict[str, Any]]) -> tuple[int, str]:
    """(epoch whose weights `train_head` kept, how it was chosen: "best_val" | "last")."""
    scored = [row for row in history if row["val_score"] is not None]
    if not scored:
        return history[-1]["epoch"], "last"
    best = max(row["val_score"] for row in scored)
    return next(row["epoch"] for row in scored if row["val_score"] == best), "best_val"


def save_checkpoint(model: nn.Module, path: str | Path, info: dict[str, Any]) -> None:
    """Weights as safetensors at `path` plus `path.with_suffix(".json")` holding `info`.

    Both files are written to temporary names and then renamed (JSON last, so a JSON beside
    weights means the pair is complete).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, path)
    meta = path.with_suffix(".json")
    tmp_meta = meta.with_name(f".{meta.name}.tmp-{os.getpid()}")
    tmp_meta.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_meta, meta)


def read_checkpoint_info(path: str | Path) -> dict[str, Any]:
    """The JSON beside a checkpoint.

    Raises:
        FileNotFoundError: the weights or the JSON are missing.
    """
    path = Path(path)
    meta = path.with_suffix(".json")
    for needed in (path, meta):
        if not needed.is_file():
            raise FileNotFoundError(
                f"Expected checkpoint file {str(needed)!r} to exist, but it does not "
                f"(a checkpoint is NAME.safetensors plus NAME.json, written by `actiondiff train`)."
            )
    return json.loads(meta.read_text())


def check_settings_hash(info: dict[str, Any], actual_hash: str, path: str | Path, where: str) -> None:
    """Refuse features whose settings hash differs from the one the head was trained on.

    Raises:
        ValueError: naming both hashes and where the features came from.
    """
    if info["settings_hash"] != actual_hash:
        raise ValueError(
            f"Expected features with settings hash {info['settings_hash']} (what {path} was trained on), "
            f"but got {actual_hash} ({where}). Extract the features with the model's settings "
            f"(`extraction` in {Path(path).with_suffix('.json')})."
        )


def load_checkpoint(path: str | Path, expected_hash: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a head from its checkpoint; refuse features of other settings.

    Args:
        expected_hash: settings hash of the features about to be classified (None: no check).
    Returns:
        (head in eval mode on the CPU, checkpoint info).
    Raises:
        FileNotFoundError: a checkpoint file is missing.
        ValueError: `expected_hash` differs from the features the head was trained on.
    """
    info = read_checkpoint_info(path)
    if expected_hash is not None:
        check_settings_hash(info, expected_hash, path, "the features given")
    head = from_dict(HeadSettings, info["head"], f"checkpoint {path}")
    model = build_head(info["width"], len(info["classes"]), head, tap_columns=info.get("tap_columns"))
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval(), info


def checkpoint_info(head: HeadSettings, settings: TrainSettings, **extra: Any) -> dict[str, Any]:
    """The checkpoint JSON: head and training settings, package version, plus `extra`
    (classes, width, tap, settings_hash, extraction identity, backbone identity...)."""
    return {"head": to_dict(head), "train": to_dict(settings), "actiondiff_version": __version__, **extra}


def with_seed(settings: TrainSettings, seed: int) -> TrainSettings:
    """The same settings with another seed."""
    return replace(settings, seed=seed)
