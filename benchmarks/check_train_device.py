"""Check that a head trains on a GPU and agrees with the CPU run (prints a short report).

Run:  PYTHONPATH=src python benchmarks/check_train_device.py --device cuda
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from actiondiff.learn.head import HeadSettings
from actiondiff.learn.train import TrainSettings, predict, train_head


def toy_data(seed: int, n: int, classes: int = 3, width: int = 32):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    sequences = [(rng.normal(0, 1, (rng.integers(3, 12), width)) + 3.0 * np.eye(classes, width)[c]).astype(np.float32) for c in labels]
    return sequences, np.eye(classes, dtype=np.float32)[labels]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    train, val = toy_data(0, 96), toy_data(1, 48)
    head = HeadSettings(num_layers=2, num_heads=4, max_length=8, dropout=0.0)
    settings = TrainSettings(epochs=5, batch_size=16, lr=3e-3, warmup_epochs=1, focal_alpha=1.0, mixup_alpha=0.0)
    results = {}
    for device in ("cpu", args.device):
        start = time.perf_counter()
        model, history = train_head(train, val, head, settings, device=device)
        results[device] = (predict(model, val[0], head, False), history, time.perf_counter() - start)
        print(f"{device}: best val {max(r['val_score'] for r in history):.1f}%, {results[device][2]:.1f} s, "
              f"weights on {next(model.parameters()).device}")
    cpu, gpu = results["cpu"][0], results[args.device][0]
    print(f"max |p_cpu - p_{args.device}| = {np.abs(cpu - gpu).max():.2e}; same top-1 on {100 * (cpu.argmax(1) == gpu.argmax(1)).mean():.0f}% of val")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda'}")


if __name__ == "__main__":
    main()
