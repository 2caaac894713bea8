"""A fit hook: the user's own training for what the built-in loop cannot express (custom
batches, several losses, a GAN, a sequence model).

    fit: "my_gan:fit"          # in `base`, or --set fit=my_gan:fit

    @hpsearch.declare(honours=["lr", "batch_size"])   # the settings it reads from config
    def fit(config, data, device, report):
        ...                                           # train as you like, then each epoch:
        report(epoch, train_loss=..., val_loss=..., val_acc=...)   # any other metric too
        return model                                  # optional

`report` records the epoch and hands it to the objective (Optuna's report and pruning: a
pruned trial raises out of `report`), so criteria, selection and the protocol work from
what the hook reports. The test phase calls the hook once more with the test split as `val`:
its last reported val_loss / val_acc are the test result.
"""

from __future__ import annotations

import math
import numbers
import time
from typing import Any, Callable

import torch

from hpsearch import interrupt
from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError, HpsearchError, UserCodeError
from hpsearch.train.loop import Diverged
from hpsearch.train.registry import load_import_path
from hpsearch.train.user_code import user_error


class Reporter:
    """The `report(epoch, **metrics)` callback a fit hook (or Lightning callback) calls."""

    def __init__(self, what: str, on_epoch: Callable[[dict], None] | None):
        self.what, self.on_epoch = what, on_epoch
        self.history: list[dict] = []
        self.raised: BaseException | None = None  # ours, travelling through the user's code
        self._started = time.perf_counter()

    def __call__(self, epoch: int, **metrics: Any) -> None:
        try:
            interrupt.check()  # the user's own loop: each report is a safe point to stop at
            self._record(epoch, metrics)
            if self.on_epoch is not None:
                self.on_epoch(self.history[-1])
        except BaseException as exc:  # pruned, diverged, a bad report: not the user's bug
            self.raised = exc
            raise

    def _record(self, epoch: int, metrics: dict) -> None:
        last = self.history[-1]["epoch"] if self.history else 0
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch <= last:
            raise ConfigError(
                f"{self.what}: report(epoch={epoch!r}, ...) after epoch {last}; fix: report "
                f"each epoch once, numbered 1, 2, 3..."
            )
        if not metrics:
            raise ConfigError(f"{self.what}: report(epoch={epoch}) gave no metric; fix: "
                              "report e.g. train_loss=..., val_loss=..., val_acc=...")
        now = time.perf_counter()
        record = {"epoch": epoch, **{k: _number(k, v, self.what) for k, v in metrics.items()}}
        record.setdefault("epoch_time_s", now - self._started)
        self._started = now
        self.history.append(record)
        loss = record.get("train_loss")
        if loss is not None and not math.isfinite(loss):
            raise Diverged(epoch, self.history)

    def passes(self, exc: BaseException) -> bool:
        """True for an exception that is hpsearch's own: re-raise it as it is."""
        return exc is self.raised or isinstance(
            exc, (HpsearchError, KeyboardInterrupt, interrupt.StopRequested))


def _number(name: str, value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{what}: report(..., {name}={value!r}): a metric must be a number; "
                          f"fix: report {name}=float(...)")
    return float(value)


def fit_with_hook(
    config: TrainConfig, data: Any, device: torch.device,
    on_epoch: Callable[[dict], None] | None = None,
) -> tuple[Any, list[dict]]:
    """Run the fit hook `config.fit`; return (what it returned, the history it reported)."""
    what = f"fit hook `{config.fit}`"
    hook = load_import_path(config.fit, "fit hook", "fit")
    reporter = Reporter(what, on_epoch)
    torch.manual_seed(config.seed)  # as the built-in loop seeds: the hook may seed again
    try:
        model = hook(config, data, device, reporter)
    except BaseException as exc:
        if reporter.passes(exc):
            raise
        raise user_error(what, exc) from exc
    if not reporter.history:
        raise UserCodeError(f"{what} returned without calling report(epoch, ...); fix: call "
                            "report(epoch, train_loss=..., val_loss=...) after every epoch")
    return model, reporter.history
