"""TensorBoard event files of one run of hpsearch's own training loop (opt-in).

What to log [001]: "Losses (train, validation, test); per-layer weight histograms; the
gradient at the input of each linear layer; the entropy of the output distribution (compare
with a random model's); at most about twenty histogram snapshots per run."

Why each: the loss and accuracy curves say whether and how fast the run learns; a layer's
weight histogram shows it dying, saturating or blowing up; the gradient at each linear layer's
input shows where the backward signal vanishes or explodes; an output entropy that stays near
the random model's (about log K for K classes) means the model still guesses, one near 0 that
it is (over)confident. Histograms are costly to write and to read, hence the snapshot budget.

`fit(..., tensorboard=folder)` (train/loop.py) builds a `RunLogger`; without it this module
is never imported. The test loss is not logged here: `fit` never sees the test split.

Logging must not change the run, so the diagnostics run on a fixed probe batch of the training
split (picked with a generator of its own, not the run's), in eval mode (no dropout draw, no
BatchNorm statistics update) with each module's mode restored, under a forked random state;
gradients come from `torch.autograd.grad`, which leaves the parameters' `.grad` alone.
"""

from __future__ import annotations

import copy
import os
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.utils.data import default_collate
from torch.utils.tensorboard import SummaryWriter

from hpsearch.train.losses import Loss
from hpsearch.train.splits import Split, TensorSplit

MAX_SNAPSHOTS = 20  # histogram snapshots per run: "at most about twenty" [001]
PROBE_SIZE = 256  # samples in the probe batch: smooth histograms, negligible cost
PROBE_SEED = 0  # which samples form the probe: the same for every trial and seed

# TensorBoard tag -> key of the epoch record the loop builds (absent or None: not logged).
EPOCH_SCALARS = {"loss/train": "train_loss", "loss/val": "val_loss",
                 "accuracy/train": "train_acc", "accuracy/val": "val_acc", "lr": "lr"}

Probe = tuple[Tensor, Tensor]


class RunLogger:
    """Writes one run's event files into `log_dir`: the epoch scalars every epoch, and at up
    to MAX_SNAPSHOTS epochs (the first and last planned ones included) the weight and
    input-gradient histograms and the output entropy [001].

    Call `log_epoch(record)` once a record is complete and `close()` when the run ends, also
    when it ends early: the last epoch reached then gets a snapshot too, of the model as it is
    at `close()`.
    """

    def __init__(self, log_dir: str | os.PathLike, model: nn.Module, train_split: Split,
                 loss: Loss, epochs: int, device: torch.device):
        self.model, self.loss = model, loss
        self.probe = probe_batch(train_split, device)
        self.planned = snapshot_epochs(epochs)
        self.snapshotted: set[int] = set()
        self.last_epoch = 0
        self.random_entropy = random_model_entropy(model, self.probe)
        self.writer = SummaryWriter(log_dir=os.fspath(log_dir))

    def log_epoch(self, record: dict) -> None:
        """The record's losses, accuracies and learning rate; a snapshot on planned epochs."""
        epoch = record["epoch"]
        for tag, key in EPOCH_SCALARS.items():
            if record.get(key) is not None:
                self.writer.add_scalar(tag, record[key], epoch)
        self.last_epoch = epoch
        if epoch in self.planned:
            self.snapshot(epoch)

    def snapshot(self, epoch: int) -> None:
        """Weight histograms per layer, input-gradient histograms per nn.Linear and the output
        entropy next to the random model's, all on the probe batch."""
        self.snapshotted.add(epoch)
        for name, parameter in self.model.named_parameters():
            self._histogram(f"weights/{name}", parameter, epoch)
        outputs, gradients = input_gradients(self.model, self.probe, self.loss)
        for name, gradient in gradients.items():
            self._histogram(f"input_grad/{name or 'model'}", gradient, epoch)
        entropy = mean_entropy(outputs, self.probe[1])
        if entropy is not None:
            self.writer.add_scalar("entropy/model", entropy, epoch)
            self.writer.add_scalar("entropy/random_model", self.random_entropy, epoch)

    def close(self) -> None:
        """Snapshot the last epoch reached if it was not planned (early stop), flush, close."""
        try:
            if self.last_epoch and self.last_epoch not in self.snapshotted:
                self.snapshot(self.last_epoch)
        finally:
            self.writer.close()

    def _histogram(self, tag: str, values: Tensor, epoch: int) -> None:
        values = values.detach().float().flatten()
        values = values[torch.isfinite(values)]  # a diverged run's NaNs would abort the write
        if values.numel():
            self.writer.add_histogram(tag, values.cpu(), epoch)


def snapshot_epochs(epochs: int, most: int = MAX_SNAPSHOTS) -> set[int]:
    """At most `most` epochs of 1..epochs, evenly spread, the first and the last included."""
    if epochs <= most:
        return set(range(1, epochs + 1))
    return {1 + round(i * (epochs - 1) / (most - 1)) for i in range(most)}


def probe_batch(split: Split, device: torch.device) -> Probe:
    """Up to PROBE_SIZE samples of the training split, drawn with a generator of their own
    (the run's random state is untouched), as one batch on `device`."""
    count = min(PROBE_SIZE, len(split))
    picked = torch.randperm(len(split), generator=torch.Generator().manual_seed(PROBE_SEED))
    picked = picked[:count].sort().values
    if isinstance(split, TensorSplit):
        x, y = split.x[picked.to(split.x.device)], split.y[picked.to(split.y.device)]
    else:
        x, y = default_collate([split[i] for i in picked.tolist()])
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    x = x.float() if x.dtype in (torch.uint8, torch.bool) else x  # as the loop feeds images
    return x.to(device), y.to(device)


def input_gradients(model: nn.Module, probe: Probe, loss: Loss) -> tuple[Tensor, dict]:
    """(outputs on the probe, {name: d loss / d input of each nn.Linear}), in eval mode.

    The loss is the study's validation form (no label smoothing, no L1). `autograd.grad`
    returns the gradients without accumulating any into the parameters' `.grad`.
    """
    x, y = probe
    inputs: dict[str, Tensor] = {}
    hooks = [module.register_forward_pre_hook(_input_keeper(name, inputs))
             for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    try:
        with untouched(model, x.device), torch.enable_grad():
            outputs = model(x)
            value = loss.evaluate(outputs.float(), y)
            if not inputs or not value.requires_grad:
                return outputs.detach(), {}
            gradients = torch.autograd.grad(value, list(inputs.values()), allow_unused=True)
    finally:
        for hook in hooks:
            hook.remove()
    named = zip(inputs, gradients)
    return outputs.detach(), {name: grad for name, grad in named if grad is not None}


def _input_keeper(name: str, inputs: dict[str, Tensor]):
    """A forward pre-hook keeping a Linear layer's input; an input outside the graph (the
    probe itself, at the first layer) is swapped for a copy that requires a gradient."""
    def keep(module: nn.Module, args: tuple):
        if not args or not isinstance(args[0], Tensor) or not args[0].is_floating_point():
            return None
        x = args[0] if args[0].requires_grad else args[0].detach().requires_grad_()
        inputs[name] = x
        return (x, *args[1:])
    return keep


def random_model_entropy(model: nn.Module, probe: Probe) -> float | None:
    """The output entropy of a freshly initialised copy of `model` on the probe: what an
    untrained model says (about log K for K classes), the reference for `entropy/model`."""
    with torch.random.fork_rng(devices=_rng_devices(probe[0].device)):
        fresh = copy.deepcopy(model)
        for module in fresh.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
        fresh.eval()
        with torch.no_grad():
            return mean_entropy(fresh(probe[0]), probe[1])


def mean_entropy(outputs: Tensor, targets: Tensor) -> float | None:
    """Mean entropy (nats) of the softmax of `outputs` over the batch, for classification
    outputs only (N, K) logits with K >= 2 against class indices; else None."""
    logits = outputs.dim() == 2 and outputs.shape[1] >= 2
    if not logits or targets.dim() != 1 or targets.is_floating_point():
        return None
    log_p = torch.log_softmax(outputs.detach().float(), dim=1)
    return float(-(log_p.exp() * log_p).sum(dim=1).mean())


@contextmanager
def untouched(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode and a forked random state for the probe; each module's own train/eval mode
    and the random state are restored after it."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.random.fork_rng(devices=_rng_devices(device)):
            yield
    finally:
        for module, training in modes:
            module.training = training


def _rng_devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]
