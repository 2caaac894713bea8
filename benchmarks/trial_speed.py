"""Trial speed: hpsearch's device-resident loop vs the usual per-sample DataLoader pipeline,
and per-epoch validation on a subset vs on the whole validation split.

Same model (MLP 3x100), optimizer (Adam 1e-3), batch size (300), splits (PROTOCOL.md's
reference [001]: 5% of MNIST train for training, the other 95% for validation) and epochs,
measured side by side in one process. Prints seconds per epoch and the ratios. The loop
comparison validates on all 57,000 images every epoch in both pipelines; the third row is
hpsearch's default, `val_subset=10000` (each epoch on a fixed stratified subset, the peak
epoch's weights once on the whole split at the end: train/validation.py).

    python benchmarks/trial_speed.py --data-dir ../shared/data [--epochs 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from hpsearch.config import resolve_config
from hpsearch.train import build_model, load_data, resolve_device, train
from hpsearch.train.data import split_indices


def reference_config(data_dir: str, epochs: int, device: str):
    return resolve_config(("benchmark", {
        "dataset": "mnist", "data_dir": data_dir, "train_fraction": 0.05, "val_fraction": 0.95,
        "epochs": epochs, "batch_size": 300, "optimizer": "adam", "lr": 1e-3, "device": device,
        "val_subset": 0,  # every epoch on the whole split, as the DataLoader pipeline does
    }))


def time_hpsearch(config, device) -> float:
    data = load_data(config, device)  # loading is cached per process: time the training
    train(config, data, device)  # warm-up (first optimizer step imports torch._dynamo)
    start = time.perf_counter()
    train(config, data, device)
    return (time.perf_counter() - start) / config.epochs


def time_dataloader(config, device) -> float:
    """The conventional pipeline: per-sample transforms, a DataLoader, host-to-device copies."""
    root = Path(tempfile.mkdtemp())
    shutil.copytree(Path(config.data_dir) / "MNIST", root / "MNIST")  # torchvision extracts here
    pipeline = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    full = torchvision.datasets.MNIST(str(root), train=True, transform=pipeline, download=True)
    train_idx, val_idx = split_indices(len(full), config)
    loaders = [DataLoader(Subset(full, idx.tolist()), batch_size=config.batch_size, shuffle=shuffle)
               for idx, shuffle in ((train_idx, True), (val_idx, False))]
    torch.manual_seed(config.seed)
    model = build_model(config, (1, 28, 28), 10).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(config.epochs):
        _train_epoch(model, loaders[0], optimizer, loss_fn, device)
        _eval_epoch(model, loaders[1], loss_fn, device)
    return (time.perf_counter() - start) / config.epochs


def _train_epoch(model, loader, optimizer, loss_fn, device) -> None:
    model.train()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        loss.item()  # the usual per-batch logging sync


def _eval_epoch(model, loader, loss_fn, device) -> None:
    model.eval()
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss_fn(model(x), y).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    config = reference_config(args.data_dir, args.epochs, args.device)
    fast = time_hpsearch(config, device)
    subset = time_hpsearch(replace(config, val_subset=10_000), device)
    slow = time_dataloader(config, device)
    print(f"device {device}, MNIST 5% train (3000) / 95% validation (57000), MLP 3x100, batch 300")
    print(f"{'pipeline':<44}{'s/epoch':>10}")
    print(f"{'hpsearch (tensors on device)':<44}{fast:>10.3f}")
    print(f"{'hpsearch, val_subset=10000 (the default)':<44}{subset:>10.3f}")
    print(f"{'DataLoader + per-sample transforms':<44}{slow:>10.3f}")
    print(f"speed-up: {slow / fast:.1f}x (loop); {fast / subset:.1f}x more from the subset")


if __name__ == "__main__":
    main()
