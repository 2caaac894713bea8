"""The loss a study trains with, and what it implies: the task, the targets, accuracy or not.

    loss: cross_entropy   (default) class indices, logits out; accuracy = argmax
    loss: nll             class indices, log-probabilities out (a model ending in log_softmax)
    loss: bce             0/1 targets (one per output), logits out; accuracy = logit > 0
    loss: mse | l1        regression: float targets, one per output; no accuracy
    loss: "pkg.mod:name"  a function fn(outputs, targets, **loss_args) or an nn.Module class
                          built with loss_args; accuracy when the targets are class indices

Without accuracy, the criteria that read it fall back to the validation loss (protocol
criteria), and a study whose objective needs accuracy is refused before it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError
from hpsearch.train.registry import load_import_path
from hpsearch.train.user_code import call_user

CLASSIFICATION, BINARY, REGRESSION, CUSTOM = "classification", "binary", "regression", "custom"
_TASKS = {"cross_entropy": CLASSIFICATION, "nll": CLASSIFICATION, "bce": BINARY,
          "mse": REGRESSION, "l1": REGRESSION}


def task_of(config: TrainConfig) -> str:
    """classification | binary | regression | custom (an import-path loss, or a fit hook that
    computes its own): what the targets must look like and whether accuracy exists."""
    if config.fit is not None:
        return CUSTOM
    return _TASKS.get(config.loss, CUSTOM)


def has_accuracy(config: TrainConfig) -> bool | None:
    """True or False when the loss decides it; None when only the data can tell (custom)."""
    task = task_of(config)
    return None if task == CUSTOM else task != REGRESSION


@dataclass(frozen=True)
class Loss:
    """A training loss (mean over the batch), its validation form and its accuracy rule."""

    name: str
    task: str
    train: Callable[[Tensor, Tensor], Tensor]
    evaluate: Callable[[Tensor, Tensor], Tensor]  # comparable across settings: no smoothing

    def correct(self, outputs: Tensor, targets: Tensor) -> Tensor | None:
        """Correct predictions in the batch, counted per sample (a device tensor), or None
        when the task has no accuracy. Stays on the device: no host sync per batch."""
        if self.task == REGRESSION:
            return None
        if self.task == BINARY:
            outputs, targets = align(outputs, targets)
            hits = ((outputs > 0) == (targets > 0.5)).float()
            return hits.reshape(len(hits), -1).mean(dim=1).sum()
        if targets.is_floating_point() or targets.dim() != 1 or outputs.dim() != 2:
            return None  # a custom loss on targets that are not class indices
        return (outputs.argmax(dim=1) == targets).sum()


def build_loss(config: TrainConfig) -> Loss:
    """The `Loss` named by `config.loss` (label smoothing applies to cross-entropy only)."""
    name = config.loss
    if name == "cross_entropy":
        smoothing = config.label_smoothing
        return Loss(name, CLASSIFICATION,
                    lambda out, y: F.cross_entropy(out, y, label_smoothing=smoothing),
                    F.cross_entropy)
    if name == "nll":
        return Loss(name, CLASSIFICATION, F.nll_loss, F.nll_loss)
    if name in _ALIGNED:
        function = _aligned(_ALIGNED[name])
        return Loss(name, _TASKS[name], function, function)
    function = _custom(name, config)
    return Loss(name, CUSTOM, function, function)


_ALIGNED = {
    "bce": F.binary_cross_entropy_with_logits,
    "mse": F.mse_loss,
    "l1": F.l1_loss,
}


def align(outputs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Outputs (N, 1) against targets (N,): one target per sample, so drop the output axis.
    Any other shape mismatch is refused: MSE would broadcast (N, 1) - (N,) to (N, N) and
    train on nonsense with only a warning."""
    if outputs.dim() == targets.dim() + 1 and outputs.shape[-1] == 1:
        outputs = outputs.squeeze(-1)
    if outputs.shape != targets.shape:
        raise ConfigError(
            f"the model's outputs have shape {tuple(outputs.shape)} but the targets "
            f"{tuple(targets.shape)}; fix: return one output per target (num_classes is the "
            f"number of targets for bce, mse and l1)"
        )
    return outputs, targets.to(outputs.dtype)


def _aligned(function: Callable) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda outputs, targets: function(*align(outputs, targets))


def _custom(name: str, config: TrainConfig) -> Callable[[Tensor, Tensor], Tensor]:
    """An import-path loss: an nn.Module class built with `loss_args`, or a function called
    as fn(outputs, targets, **loss_args)."""
    target = load_import_path(name, "loss", "loss")
    what = f"loss `{name}`"
    if isinstance(target, type) and issubclass(target, nn.Module):
        module = call_user(what, target, **config.loss_args)
        return lambda outputs, targets: call_user(what, module, outputs, targets)
    args = config.loss_args
    return lambda outputs, targets: call_user(what, target, outputs, targets, **args)


def looks_like_probabilities(outputs: Tensor) -> bool:
    """Rows that are non-negative and sum to 1: a final softmax. Cross-entropy wants logits
    and would train on them with vanishing gradients, silently."""
    if outputs.dim() != 2 or outputs.shape[1] < 2 or not outputs.is_floating_point():
        return False
    sums = outputs.sum(dim=1)
    return bool((outputs >= 0).all() and torch.allclose(sums, torch.ones_like(sums), atol=1e-4))
