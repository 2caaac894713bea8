"""The training loop: seeded, device-resident, one host synchronisation per epoch.

It returns an epoch history and knows nothing of Optuna; `on_epoch` is the objective's hook
(report, prune). Batches of a `TensorSplit` are index slices of a per-epoch permutation over
tensors already on the device (airbench); a torch `Dataset` is streamed through a DataLoader.
The loss is the study's (`loss:`, train/losses.py); a task without accuracy (regression)
records losses only.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from hpsearch import interrupt
from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.train.augment import augment, check_augment
from hpsearch.train.losses import Loss, build_loss
from hpsearch.train.models import build_model
from hpsearch.train.optim import build_optimizer, build_scheduler, lr_factor
from hpsearch.train.splits import DataSplits, Split, TensorSplit
from hpsearch.train.validation import PeakKeeper, validation_subset

EVAL_BATCH = 4096  # samples per evaluation batch: no gradients, so larger than training's
EVAL_ELEMENTS = 4 * 2**20  # ...but at most ~16 MB of float32 inputs (CNNs on 3x32x32)


class Diverged(Exception):
    """The training loss became NaN or infinite (eliminatory: LR overshoot [000])."""

    def __init__(self, epoch: int, history: list[dict]):
        self.epoch, self.history = epoch, history
        loss = history[-1]["train_loss"] if history else float("nan")
        super().__init__(f"training diverged at epoch {epoch}: train loss {loss}")


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda if available, else cpu; an unavailable device is a one-line ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"device `{name}` is not a device; fix: use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device `{name}`: CUDA is not available here; fix: use device=auto or device=cpu"
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"device `{name}`: only {torch.cuda.device_count()} CUDA device(s) here; "
            f"fix: use cuda:0..cuda:{torch.cuda.device_count() - 1} or device=auto"
        )
    return device


@dataclass
class Trained:
    """What a finished run leaves besides its history, for a checkpoint: the model, the
    optimizer and scheduler with their state [004], and the peak epoch's weights."""

    model: nn.Module  # as it ends: the peak's weights with early stopping, else the last ones
    optimizer: torch.optim.Optimizer | None
    scheduler: Any | None
    epochs: int  # epochs trained
    peak_epoch: int | None = None
    peak_state: dict[str, Tensor] | None = None  # the weights the stored criteria were read on
    input_shape: tuple[int, ...] = ()
    num_classes: int = 0

    def best_weights(self) -> dict[str, Tensor]:
        """The peak epoch's weights when kept, else the model's own."""
        return self.peak_state if self.peak_state is not None else self.model.state_dict()


def train(
    config: TrainConfig, data: DataSplits, device: torch.device,
    on_epoch: Callable[[dict], None] | None = None,
    *, tensorboard: str | os.PathLike | None = None,
    on_trained: Callable[[Trained], None] | None = None,
) -> list[dict]:
    """Train as `fit` does and return only the epoch history."""
    return fit(config, data, device, on_epoch, tensorboard=tensorboard,
               on_trained=on_trained)[1]


def fit(
    config: TrainConfig, data: DataSplits, device: torch.device,
    on_epoch: Callable[[dict], None] | None = None,
    *, tensorboard: str | os.PathLike | None = None,
    on_trained: Callable[[Trained], None] | None = None,
) -> tuple[nn.Module, list[dict]]:
    """Train `config.model` on `data.train` for `config.epochs` epochs; return (model, history).

    Each epoch's record: epoch (1-based), train_loss, train_acc (running means over the epoch's
    batches, the L1 penalty included in the loss), val_loss, val_acc (fractions), lr (the rate
    of the epoch's last batch) and epoch_time_s (training + validation); without accuracy (a
    regression loss) the two accuracies are left out. `on_epoch(record)` is called after each
    epoch and may raise (e.g. to prune). A NaN/inf training loss raises `Diverged` right after
    that epoch, before `on_epoch`. With `config.val_subset` smaller than the validation split,
    each epoch validates on that fixed stratified subset and the peak epoch's weights are
    validated on the whole split at the end (train/validation.py). With `config.patience`,
    training stops after that many epochs without a new validation peak and the model
    returned has the peak epoch's weights (else its last ones). With `tensorboard`, a folder
    (one per run), the run's TensorBoard event files are written there (train/tensorboard.py
    [001]); the training itself is the same with or without. `on_trained` gets what a
    checkpoint needs (`Trained`, the peak's weights kept) once the run ended normally.
    """
    device = torch.device(device)
    check_augment(config, data.input_shape)
    torch.manual_seed(config.seed)  # weight init; not bit-exact on GPU [004]
    model = build_model(config, data.input_shape, data.num_classes).to(device)
    optimizer = build_optimizer(config, model)
    generator = torch.Generator(device=device).manual_seed(config.seed)  # batch order, augmentation
    batches = TrainBatches(data.train, config, device, generator)
    scheduler = build_scheduler(config, optimizer, len(batches))
    step = TrainStep(model, optimizer, scheduler, config)
    per_epoch_val = validation_subset(data.val, config.val_subset)
    subset = per_epoch_val is not data.val
    peak = PeakKeeper(keep_weights=subset or config.patience > 0 or on_trained is not None)
    history: list[dict] = []
    log = _run_logger(tensorboard, model, data, step, config, device)  # None when not asked
    try:
        for epoch in range(1, config.epochs + 1):
            start = time.perf_counter()
            train_loss, train_acc = _train_epoch(step, batches, config, generator, device)
            val_loss, val_acc = evaluate(model, per_epoch_val, config, device, step.loss)
            peak.offer(model, epoch, val_loss, val_acc)
            history.append(_record(
                epoch, train_loss, train_acc, val_loss, val_acc,
                lr=config.lr * lr_factor(config, epoch * len(batches) - 1, len(batches)),
                seconds=time.perf_counter() - start,  # .item() above synchronised the device
            ))
            if log is not None:
                log.log_epoch(history[-1])
            if not math.isfinite(train_loss):
                raise Diverged(epoch, history)
            if on_epoch is not None:
                on_epoch(history[-1])
            if config.patience and peak.stale_for(epoch) >= config.patience:
                break  # early stopping: `patience` epochs without a new validation peak
    finally:
        if log is not None:
            log.close()  # before the peak's weights come back: it snapshots the last epoch's
    if subset and peak.state is not None:
        _validate_peak_fully(model, peak, data.val, config, device, step.loss, history)
    if config.patience and peak.state is not None:
        model.load_state_dict(peak.state)  # early stopping keeps the peak's weights
    if on_trained is not None:
        on_trained(Trained(model, optimizer, scheduler, len(history), peak.epoch, peak.state,
                           tuple(data.input_shape), data.num_classes))
    return model, history


def _run_logger(directory, model, data: DataSplits, step: TrainStep, config, device):
    """The run's TensorBoard logger [001], or None without a folder: then tensorboard is not
    even imported."""
    if directory is None:
        return None
    from hpsearch.train.tensorboard import RunLogger

    return RunLogger(directory, model, data.train, step.loss, config.epochs, device)


def _validate_peak_fully(model, peak: PeakKeeper, split: Split, config, device, loss, history):
    """The peak epoch's weights on the whole validation split, recorded on that epoch as
    `full_val_loss` / `full_val_acc` (the criteria read them); the model keeps its last
    weights."""
    last = peak.restore_into(model)
    full_loss, full_acc = evaluate(model, split, config, device, loss)
    model.load_state_dict(last)
    record = history[peak.epoch - 1]
    record["full_val_loss"] = full_loss
    if full_acc is not None:
        record["full_val_acc"] = full_acc


def _record(epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds) -> dict:
    record = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
              "val_loss": val_loss, "val_acc": val_acc, "lr": lr, "epoch_time_s": seconds}
    return {k: v for k, v in record.items() if v is not None}  # no accuracy: keys left out


def evaluate(
    model: nn.Module, split: Split, config: TrainConfig, device: torch.device,
    loss: Loss | None = None,
) -> tuple[float, float | None]:
    """(mean loss, accuracy or None) of `model` on `split`, in eval mode, without gradients.

    The loss is the study's without label smoothing or L1, so validation losses stay
    comparable across those settings; accuracy is None for a task without it.
    """
    loss = loss or build_loss(config)
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    counted, seen = True, 0
    with torch.no_grad():
        for x, y in _eval_batches(split, config, device):
            outputs = model(x)
            loss_sum += loss.evaluate(outputs.float(), y).float() * len(y)
            hits = loss.correct(outputs, y)
            counted = counted and hits is not None
            correct += hits if hits is not None else 0
            seen += len(y)
    if seen == 0:
        return math.nan, (math.nan if counted else None)
    totals = torch.stack([loss_sum, correct]).tolist()  # the one host sync
    return totals[0] / seen, (totals[1] / seen if counted else None)


class TrainStep:
    """One optimisation step: loss (+ L1 [001]), backward, clipping, optimizer and schedule."""

    def __init__(self, model: nn.Module, optimizer, scheduler, config: TrainConfig):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.config = config
        self.loss = build_loss(config)
        self.loss_fn = self.loss.train
        # L1 on weights only (matrices, kernels), not biases or norm scales.
        self.weights = [p for p in model.parameters() if p.dim() > 1]

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(x)
        loss = self.loss_fn(logits, y)
        if self.config.l1 > 0:
            loss = loss + self.config.l1 * sum(w.abs().sum() for w in self.weights)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach(), logits.detach()


def _train_epoch(
    step: TrainStep, batches: TrainBatches, config: TrainConfig, generator, device
) -> tuple[float, float]:
    step.model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    counted, seen = True, 0
    for x, y in batches:
        interrupt.check()  # a stop request (Ctrl-C, SIGTERM) ends the trial between batches
        if config.augment != "none":
            x = augment(x, config, generator)
        loss, outputs = step(x, y)
        # Accumulate on the device: reading a value per batch would stall the GPU every step.
        loss_sum += loss.float() * len(y)
        hits = step.loss.correct(outputs, y)
        counted = counted and hits is not None
        correct += hits if hits is not None else 0
        seen += len(y)
    totals = torch.stack([loss_sum, correct]).tolist()  # one host sync per epoch
    return totals[0] / seen, (totals[1] / seen if counted else None)


class TrainBatches:
    """Training batches for one epoch per iteration, shuffled; nothing dropped."""

    def __init__(self, split: Split, config: TrainConfig, device: torch.device, generator):
        self.device, self.generator, self.batch_size = device, generator, config.batch_size
        if len(split) == 0:
            raise ConfigError("the training split is empty; fix: raise train_fraction")
        if isinstance(split, TensorSplit):
            self.split, self.loader = _to_device(split, device), None
            self.bounds = batch_bounds(len(split), config.batch_size)
        else:
            shuffle = torch.Generator().manual_seed(config.seed)  # DataLoader shuffles on the CPU
            self.loader = data_loader(split, config, device, shuffle=shuffle)

    def __len__(self) -> int:
        return len(self.bounds) if self.loader is None else len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.loader is not None:
            return _moved(self.loader, self.device)
        return self._slices()

    def _slices(self) -> Iterator[tuple[Tensor, Tensor]]:
        x, y = self.split.x, self.split.y
        perm = torch.randperm(len(y), generator=self.generator, device=self.device)
        for start, stop in self.bounds:
            idx = perm[start:stop]
            yield x[idx], y[idx]


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch over `n` samples. A last batch of one sample joins the one
    before it: BatchNorm cannot train on a single sample, and nothing is dropped."""
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def data_loader(
    split: Split, config: TrainConfig, device: torch.device, shuffle: torch.Generator | None
) -> DataLoader:
    """A DataLoader over a torch `Dataset` with the study's loading settings; pinned memory
    only helps copies to CUDA, and persistent workers need workers."""
    workers = config.num_workers
    return DataLoader(
        split, batch_size=config.batch_size, shuffle=shuffle is not None, generator=shuffle,
        num_workers=workers, pin_memory=config.pin_memory and device.type == "cuda",
        persistent_workers=config.persistent_workers and workers > 0,
    )


def _eval_batches(split: Split, config: TrainConfig, device: torch.device):
    if not isinstance(split, TensorSplit):
        return _moved(data_loader(split, config, device, shuffle=None), device)
    split = _to_device(split, device)
    per_sample = max(1, split.x[0].numel()) if len(split) else 1
    size = max(config.batch_size, min(EVAL_BATCH, EVAL_ELEMENTS // per_sample))
    return ((split.x[i:i + size], split.y[i:i + size]) for i in range(0, len(split), size))


def _to_device(split: TensorSplit, device: torch.device) -> TensorSplit:
    if split.x.device == device and split.y.device == device:
        return split
    return TensorSplit(split.x.to(device), split.y.to(device))


def _moved(loader: DataLoader, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    asynchronous = loader.pin_memory  # pinned host batches copy without a sync
    for x, y in loader:
        x = torch.as_tensor(x)
        x = x.float() if x.dtype in (torch.uint8, torch.bool) else x  # token ids stay ints
        y = torch.as_tensor(y)
        yield x.to(device, non_blocking=asynchronous), y.to(device, non_blocking=asynchronous)
