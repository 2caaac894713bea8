"""The LR range test (LRFinder): "raise the LR after every batch and stop before the loss
explodes" [004]. It proposes a learning rate and a search range for phase 2 of PROTOCOL.md.

The method of the texts [004] cites (Smith, arXiv:1506.01186; Gugger, "How do you find a good
learning rate", sgugger.github.io), as fastai's and Lightning's `lr_find` do it: train from the
study's starting configuration while the LR grows geometrically from `min_lr` to `max_lr`, one
step per batch; record (lr, loss); stop once the smoothed loss exceeds 4x its minimum so far,
or the loss is not finite. The suggestion is read off the curve afterwards (`suggest_lr`).

Like the training loop it knows nothing of Optuna: the caller stores `result.to_dict()` on a
study as a user attribute. Model and optimizer are thrown away; trials start from scratch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from itertools import chain, islice, repeat
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError, TrainingError
from hpsearch.train.augment import augment, check_augment
from hpsearch.train.loop import TrainBatches, TrainStep
from hpsearch.train.models import build_model
from hpsearch.train.optim import build_optimizer
from hpsearch.train.splits import DataSplits

__all__ = [
    "LRFindResult", "lr_find", "lr_schedule", "plot_lr_find", "smooth", "stop_reason",
    "suggest_lr",
]

# Running average for the stopping rule, ~1/(1 - beta) = 10 batches. Gugger/fastai/Lightning
# use 0.98 (~50 batches); over our ramp of 25 batches per decade that averages two decades of
# LR, and on digits with Adam it lagged so far that it never reached 4x its own (lagged)
# minimum while the loss per batch went from 0.11 to 14: the test ran on to max_lr.
BETA = 0.9
SMOOTH_WINDOW = 9  # batches in the centred average the suggestion reads (0.36 decade by default)
SKIP_START = 10  # batches the suggestion ignores at the start: the LR is too small to matter
SKIP_END = 5  # ...and at the end, already blowing up (Lightning skips the end too)
BOTTOM_TOLERANCE = 0.1  # the bottom of the curve: within 10% of the descent above its minimum
LOW_FACTOR = 3.0  # low = suggested / 3: one step of the protocol's LR grids (1e-4, 3e-4, 1e-3)

STOP_DIVERGED = "loss exceeded {factor:g}x its minimum"
STOP_NOT_FINITE = "loss not finite"
STOP_MAX_LR = "reached max_lr"


@dataclass
class LRFindResult:
    """The curves of one LR range test and what they suggest.

    `lrs[i]` is the rate batch i was trained with, `raw_losses[i]` its loss (the loss training
    minimises: label smoothing and L1 included), `losses[i]` the running average up to it.
    A batch whose loss was not finite is not recorded; `reason` says so.
    """

    lrs: list[float]
    losses: list[float]  # exponential running average, bias-corrected (see `smooth`)
    raw_losses: list[float]
    suggested_lr: float  # steepest descent of the loss against log10(lr)
    low: float  # suggested / 3: bottom of a search range
    high: float  # far edge of the loss's minimum: above it training is unstable
    stopped_early: bool
    reason: str  # "loss exceeded 4x its minimum" | "loss not finite" | "reached max_lr"

    @property
    def steps(self) -> int:
        """Batches recorded."""
        return len(self.lrs)

    def to_dict(self) -> dict:
        """A strict-JSON copy (NaN/inf -> None) to store on a study as a user attribute."""
        return {
            "suggested": _json_float(self.suggested_lr),
            "low": _json_float(self.low),
            "high": _json_float(self.high),
            "reason": self.reason,
            "stopped_early": self.stopped_early,
            "steps": self.steps,
            "lrs": [_json_float(v) for v in self.lrs],
            "losses": [_json_float(v) for v in self.losses],
            "raw_losses": [_json_float(v) for v in self.raw_losses],
        }


def lr_find(
    config: TrainConfig, data: DataSplits, device: torch.device | str, *,
    min_lr: float = 1e-7, max_lr: float = 10.0, max_steps: int = 200,
    divergence_factor: float = 4.0, beta: float = BETA,
) -> LRFindResult:
    """Run the LR range test from `config` on `data.train`; return its curves and suggestion.

    A fresh model (seeded by `config.seed`, as in `fit`) trains in train mode with `config`'s
    optimizer and its other hyperparameters (momentum, betas, weight decay), batch size,
    augmentation, L1, label smoothing and clipping; `config.lr`, its schedule and warmup give
    way to the ramp `lr_schedule(min_lr, max_lr, max_steps)`. Batches cycle through as many
    epochs as needed. It stops after the batch whose running average (`smooth`, `beta`)
    exceeds `divergence_factor` x its minimum so far, at a batch whose loss is not finite, or
    after `max_steps` batches. One host synchronisation per batch: it must decide to stop.
    """
    _check_arguments(min_lr, max_lr, max_steps, divergence_factor, beta)
    device = torch.device(device)
    check_augment(config, data.input_shape)
    config = dataclasses.replace(config, lr=min_lr)  # the optimizer's base rate: the ramp's start
    torch.manual_seed(config.seed)  # weight init, as in fit
    model = build_model(config, data.input_shape, data.num_classes).to(device)
    optimizer = build_optimizer(config, model)
    schedule = lr_schedule(min_lr, max_lr, max_steps)
    # Writes schedule[i] into every param group's lr before batch i (TrainStep steps it after).
    ramp = LambdaLR(optimizer, lambda i: schedule[min(i, max_steps - 1)] / min_lr)
    generator = torch.Generator(device=device).manual_seed(config.seed)  # batch order, augment
    batches = TrainBatches(data.train, config, device, generator)
    model.train()
    step = TrainStep(model, optimizer, ramp, config)
    return _run(step, _cycle(batches, max_steps), config, generator,
                _Recorder(divergence_factor, beta))


def lr_schedule(min_lr: float, max_lr: float, steps: int) -> list[float]:
    """`steps` rates from `min_lr` to `max_lr` (both included), a constant ratio apart."""
    ratio = max_lr / min_lr
    return [min_lr * ratio ** (i / (steps - 1)) for i in range(steps)]


def smooth(average: float, loss: float, step: int, beta: float = BETA) -> tuple[float, float]:
    """(new running average, its bias-corrected value) after `loss` at 0-based `step`.

    Why smooth: one batch's loss is noisy and must not end the test alone [004: Gugger]. The
    average starts at 0 and so reads too low for its first ~1/(1-beta) batches; dividing by
    1 - beta**(step+1) corrects that (as Adam does): the first value is the first loss itself,
    so the stopping rule is sound from the first batch.
    """
    average = beta * average + (1 - beta) * loss
    return average, average / (1 - beta ** (step + 1))


def stop_reason(
    raw_loss: float, smoothed: float, best: float, divergence_factor: float = 4.0
) -> str | None:
    """Why the test stops after a batch, or None to go on.

    `best` is the lowest smoothed loss so far (this batch's included); the stopping rule of
    [004]'s sources: the smoothed loss above 4x it, or the batch's own loss not finite.
    """
    if not math.isfinite(raw_loss):
        return STOP_NOT_FINITE
    if smoothed > divergence_factor * best:
        return STOP_DIVERGED.format(factor=divergence_factor)
    return None


def suggest_lr(lrs: Sequence[float], raw_losses: Sequence[float]) -> tuple[float, float, float]:
    """(suggested, low, high) from a range test's rates and per-batch losses.

    The curve read is the loss per batch under a centred 9-batch average: unlike the running
    average the stopping rule needs, it does not lag, so each point below sits at the LR that
    caused it (a running average of 0.98 lags ~50 batches, two decades of LR by default).

    high: the far edge of the curve's bottom: the last LR, from the lowest loss on, before the
      loss climbs more than 10% of its descent (first loss - lowest) above the lowest. Beyond
      it the loss rises: training is unstable. On a flat bottom this is its edge, not a dip.
    suggested: where the loss falls fastest, the most negative slope against log10(lr)
      (Smith's steepest-descent point [004]; Lightning's suggestion), ignoring the first 10
      batches and the last 5, and looking only up to the lowest loss; `high / 10` when too few
      batches remain (fastai's "minimum / 10").
    low: suggested / 3, one step of the protocol's LR grids. So low < suggested <= high.
    """
    curve = _centred_average(np.asarray(raw_losses, dtype=float))
    if curve.size == 0 or not np.isfinite(curve).all():
        raise ValueError(f"suggest_lr needs finite losses, got {list(raw_losses)[:5]}...")
    lowest = int(np.argmin(curve))
    high = float(lrs[_bottom_edge(curve, lowest)])
    steepest = _steepest_step(np.log10(np.asarray(lrs, dtype=float)), curve, lowest)
    suggested = high / 10 if steepest is None else float(lrs[steepest])
    return suggested, suggested / LOW_FACTOR, high


def _bottom_edge(curve: np.ndarray, lowest: int) -> int:
    """The last index from `lowest` on before the curve first leaves its bottom."""
    ceiling = curve[lowest] + BOTTOM_TOLERANCE * (curve[0] - curve[lowest])
    above = np.flatnonzero(curve[lowest:] > ceiling)
    return len(curve) - 1 if above.size == 0 else lowest + int(above[0]) - 1


def _steepest_step(log_lrs: np.ndarray, curve: np.ndarray, lowest: int) -> int | None:
    """Index of the most negative d(curve)/d(log10 lr) in [SKIP_START, lowest], or None."""
    stop = min(lowest, len(curve) - 1 - SKIP_END)
    if stop - SKIP_START < 2:
        return None
    slope = np.gradient(curve, log_lrs)
    return SKIP_START + int(np.argmin(slope[SKIP_START:stop + 1]))


def _centred_average(values: np.ndarray, window: int = SMOOTH_WINDOW) -> np.ndarray:
    """Moving average over `window` values centred on each (the ends padded with their value)."""
    if values.size == 0:
        return values
    padded = np.pad(values, window // 2, mode="edge")
    return np.convolve(padded, np.ones(window) / window, mode="valid")


def plot_lr_find(result: LRFindResult, path: str | Path) -> Path:
    """Write a PNG of the loss against the LR (log axis), marking the suggestion and range."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    curve = _centred_average(np.asarray(result.raw_losses, dtype=float))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        ax.plot(result.lrs, result.raw_losses, color="0.8", lw=0.8, label="loss per batch")
        ax.plot(result.lrs, curve, color="C0", label="smoothed (centred, read by the suggestion)")
        ax.plot(result.lrs, result.losses, color="C1", lw=0.8, ls="--",
                label="running average (stopping rule)")
        ax.axvspan(result.low, result.high, color="C2", alpha=0.15,
                   label=f"range {result.low:.2g} .. {result.high:.2g}")
        ax.axvline(result.suggested_lr, color="C3", ls="--",
                   label=f"suggested {result.suggested_lr:.2g}")
        ax.set(xscale="log", xlabel="learning rate", ylabel="training loss",
               title=f"LR range test: {result.steps} batches, {result.reason}")
        ax.set_ylim(*_loss_limits(curve))
        ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path


def _loss_limits(curve: np.ndarray) -> tuple[float, float]:
    """y limits from the lowest loss to 10% above the first: the explosion would flatten all."""
    if curve.size == 0:
        return 0.0, 1.0
    low, top = float(curve.min()), float(max(curve[0], curve.min())) * 1.1 + 1e-9
    return low - 0.05 * (top - low), top


class _Recorder:
    """The curves so far, the running average and the stopping rule."""

    def __init__(self, divergence_factor: float, beta: float):
        self.divergence_factor, self.beta = divergence_factor, beta
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.raw: list[float] = []
        self.average, self.best = 0.0, math.inf

    def add(self, lr: float, loss: float) -> str | None:
        """Record one batch; return why to stop, or None."""
        if not math.isfinite(loss):
            return STOP_NOT_FINITE  # not recorded: NaN would poison the average and the curve
        self.average, smoothed = smooth(self.average, loss, len(self.raw), self.beta)
        self.best = min(self.best, smoothed)
        self.lrs.append(lr)
        self.losses.append(smoothed)
        self.raw.append(loss)
        return stop_reason(loss, smoothed, self.best, self.divergence_factor)

    def result(self, reason: str | None) -> LRFindResult:
        if not self.raw:
            raise TrainingError(
                "LR range test: the loss was not finite from the first batch on; fix: check "
                "the model and data (does one epoch at a small lr train?)"
            )
        suggested, low, high = suggest_lr(self.lrs, self.raw)
        return LRFindResult(
            self.lrs, self.losses, self.raw, suggested, low, high,
            stopped_early=reason is not None, reason=reason or STOP_MAX_LR,
        )


def _run(step: TrainStep, batches: Iterator, config: TrainConfig, generator,
         recorder: _Recorder) -> LRFindResult:
    for x, y in batches:
        if config.augment != "none":
            x = augment(x, config, generator)
        lr = step.optimizer.param_groups[0]["lr"]  # the rate this batch trains with
        loss, _ = step(x, y)
        reason = recorder.add(lr, loss.item())  # the one host sync per batch: stop or go on
        if reason is not None:
            return recorder.result(reason)
    return recorder.result(None)


def _cycle(batches: Iterable, count: int) -> Iterator:
    """The first `count` batches of epoch after epoch (each pass reshuffles)."""
    return islice(chain.from_iterable(repeat(batches)), count)


def _check_arguments(min_lr: float, max_lr: float, max_steps: int, divergence_factor: float,
                     beta: float) -> None:
    if not (0 < min_lr < max_lr and math.isfinite(max_lr)):
        raise ConfigError(
            f"LR range test: `0 < min_lr < max_lr` must hold, got (min_lr={min_lr}, "
            f"max_lr={max_lr}); fix: e.g. min_lr=1e-7, max_lr=10"
        )
    if max_steps < 2:
        raise ConfigError(
            f"LR range test: max_steps must be >= 2, got {max_steps}; fix: e.g. max_steps=200"
        )
    if not divergence_factor > 1:
        raise ConfigError(
            f"LR range test: divergence_factor must be > 1, got {divergence_factor}; fix: e.g. "
            f"4 (stop when the smoothed loss exceeds 4x its minimum [004])"
        )
    if not 0 <= beta < 1:
        raise ConfigError(
            f"LR range test: beta must be in [0, 1), got {beta}; fix: e.g. beta={BETA}"
        )


def _json_float(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
