"""Trained heads as models: a folder (or Hugging Face repo) with config, weights and a model card.

A checkpoint (`seed0.safetensors` + `seed0.json`, written by `train_seeds`) becomes a folder

    config.json         the checkpoint's JSON as is: head and training settings, classes,
                        tap, feature width, settings hash and the full extraction identity
    model.safetensors   the head's weights (keys prefixed `head.`)
    README.md           the model card: feature identity, classes, protocol, evaluation

through `huggingface_hub`'s `PyTorchModelHubMixin`, so `HeadModel.from_pretrained` loads it
from a local folder, from the Hugging Face cache offline (`HF_HUB_OFFLINE=1`), or from the Hub.
`HeadModel.push_to_hub(repo_id)` uploads it (README.md "Heads as models"; never run by tests).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard, PyTorchModelHubMixin
from torch import nn

from actiondiff.learn.head import build_head
from actiondiff.learn.results import Evaluation
from actiondiff.learn.train import load_checkpoint
from actiondiff.settings import HeadSettings, from_dict

REQUIRED_KEYS = ("head", "train", "classes", "width", "tap", "settings_hash")


class HeadModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="actiondiff",
    tags=["actiondiff", "video-classification", "action-recognition", "frozen-diffusion-features"],
):
    """A trained head with everything needed to feed it (the checkpoint's JSON, as `config`).

    `forward` is the head's: frames [b, n, width], padding [b, n] bool -> logits [b, classes].
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        missing = [key for key in REQUIRED_KEYS if key not in config]
        if missing:
            raise ValueError(
                f"Expected a head model's config.json to hold {list(REQUIRED_KEYS)} (a checkpoint's JSON), "
                f"but {missing} are missing."
            )
        self.info = dict(config)
        settings = from_dict(HeadSettings, config["head"], "a head model's config.json `head`")
        self.head = build_head(int(config["width"]), len(config["classes"]), settings, tap_columns=config.get("tap_columns"))

    def forward(self, frames: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        return self.head(frames, padding)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The model card: `model_card(self.info, evaluation)` (kwargs: `evaluation`, an `Evaluation`)."""
        return ModelCard(model_card(self.info, kwargs.get("evaluation")))


def from_checkpoint(path: str | Path) -> HeadModel:
    """The head of a checkpoint (`NAME.safetensors` + `NAME.json`) as a `HeadModel`, same weights."""
    model, info = load_checkpoint(path)
    wrapped = HeadModel(info)
    wrapped.head.load_state_dict(model.state_dict(), strict=True)
    return wrapped.eval()


def save_model(checkpoint: str | Path, out: str | Path, evaluation: str | Path | None = None) -> Path:
    """Write a checkpoint as a model folder (config.json, model.safetensors, README.md).

    Args:
        evaluation: the run's evaluation JSON (`actiondiff evaluate-head`): its numbers go into
            the model card. Without it the card says the head was not evaluated.
    Returns:
        the folder.
    """
    out = Path(out)
    (out / "README.md").unlink(missing_ok=True)  # the mixin keeps an existing card: write ours
    model = from_checkpoint(checkpoint)
    loaded = Evaluation.read(evaluation) if evaluation else None
    model.save_pretrained(out, config=model.info, model_card_kwargs={"evaluation": loaded})
    return out


def load_model(source: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A head and its checkpoint JSON from a model folder, a Hub repo id (the cache first: with
    `HF_HUB_OFFLINE=1` nothing is downloaded), or a checkpoint file (`NAME.safetensors`).

    Returns:
        (head in eval mode on the CPU, its info: the checkpoint JSON).
    Raises:
        FileNotFoundError: a folder without config.json, or a checkpoint without its JSON.
    """
    path = Path(source)
    if path.is_file():
        return load_checkpoint(path)
    if path.is_dir() and not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"Expected model folder {str(path)!r} to hold config.json and model.safetensors (written by "
            f"`actiondiff save-model`), but it has no config.json."
        )
    model = HeadModel.from_pretrained(str(source), strict=True)
    return model.eval(), model.info


def _mean_std(value: Any) -> str:
    return f"{value.mean:.2f} +- {value.std:.2f}"


def model_card(info: dict[str, Any], evaluation: Evaluation | None = None) -> str:
    """The README.md of a head model: what features it needs, what it predicts, how it was
    trained and how well it did (the evaluation of its run: every seed, not only this one)."""
    identity = info.get("extraction") or {}
    decode, extraction = identity.get("decode", {}), identity.get("extraction", {})
    backbone = identity.get("backbone") or (info.get("backbone") or {}).get("name", "svd")
    checksums = identity.get("weights_sha256") or (info.get("backbone") or {}).get("files") or {}
    head, train = info["head"], info["train"]
    taps = sorted(info["tap_columns"]) if info.get("tap_columns") else [info["tap"]]
    lines = [
        "---",
        "library_name: actiondiff",
        "pipeline_tag: video-classification",
        "tags: [actiondiff, video-classification, action-recognition, frozen-diffusion-features, pytorch_model_hub_mixin]",
        "---",
        "",
        f"# actiondiff head: {head['kind']} on {backbone} features ({info['tap']})",
        "",
        f"A trained `{head['kind']}` head over frozen video features, written by actiondiff "
        f"{info.get('actiondiff_version', '')}. It classifies {len(info['classes'])} actions from the "
        "per-frame features below: only features of exactly this identity (same settings hash) are accepted.",
        "",
        "## Feature identity",
        "",
        "| what | value |",
        "|---|---|",
        f"| backbone | {backbone} |",
        f"| settings hash | `{info['settings_hash']}` |",
        f"| tap(s) read | {', '.join(taps)} (width {info['width']}) |",
        f"| decode | stride {decode.get('stride')}, offset {decode.get('offset')}, {decode.get('width')}x{decode.get('height')} "
        f"({decode.get('resize')}), window {decode.get('window')} frames |",
        f"| extraction | layers {extraction.get('layers')}, timestep indices {extraction.get('timestep_indices')}, "
        f"conditioning {extraction.get('conditioning')}, dtype {extraction.get('dtype')} |",
    ]
    lines += [f"| weights sha256 ({role}) | `{digest}` |" for role, digest in sorted(checksums.items())]
    lines += [
        "",
        "The full identity is `extraction` in config.json; `actiondiff predict --model` rebuilds the extractor from it.",
        "",
        "## Classes",
        "",
        ", ".join(f"`{c}`" for c in info["classes"]),
        "",
        "## Training",
        "",
        f"- protocol `{info.get('protocol', '')}`: {info.get('num_train_videos', '?')} training videos, "
        f"{info.get('num_val_videos', '?')} validation videos (training side)",
        f"- {train['epochs']} epochs, batch {train['batch_size']}, {train['optimizer']} lr {train['lr']}, "
        f"loss {train['loss']}, mixup alpha {train['mixup_alpha']}, seed {train['seed']}",
        f"- weights kept: epoch {info.get('selected_epoch', '?')} ({info.get('epoch_selection', 'best_val')})",
        f"- head: {json.dumps(head, sort_keys=True)}",
        "",
        "## Evaluation",
        "",
    ]
    if evaluation is None:
        lines.append("Not evaluated (no evaluation JSON was given to `actiondiff save-model`).")
    else:
        lines += [
            f"Out-of-domain (test, {evaluation.num_test_videos} videos), mean +- sample std over "
            f"{len(evaluation.per_seed)} seeds of the run (this model is seed {train['seed']}):",
            "",
            "| metric | % |",
            "|---|---|",
            *(f"| {name} | {_mean_std(value)} |" for name, value in evaluation.metrics.items()),
        ]
        if evaluation.in_domain is not None:
            top1 = evaluation.in_domain.metrics.get("top1_accuracy")
            if top1 is not None:
                lines += ["", f"In-domain (validation clips) top-1: {_mean_std(top1)}."]
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        "actiondiff predict --model THIS_FOLDER_OR_REPO_ID video.mp4 --out predictions.csv --plot timelines/",
        "```",
        "",
        "```python",
        "from actiondiff.learn.hub import HeadModel",
        "model = HeadModel.from_pretrained('THIS_FOLDER_OR_REPO_ID')  # model.info: the feature identity",
        "```",
        "",
    ]
    return "\n".join(lines)

