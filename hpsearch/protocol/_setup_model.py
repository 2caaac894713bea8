"""Setup checks on the model: initial loss about ln K, overfitting one batch [004].

Both train the way the study trains: its model, optimizer and loss (train/losses.py). The
expected initial loss exists for the classification losses (ln K; bce: ln 2); memorising a
batch means 100% accuracy where there is accuracy, else a loss down to 5% of its start.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.utils.data import Subset, default_collate

from hpsearch.config import TrainConfig
from hpsearch.protocol._check_result import CheckResult, finite_or_none
from hpsearch.protocol._setup_data import label_problems, labels_of
from hpsearch.train.loop import evaluate
from hpsearch.train.losses import CLASSIFICATION, Loss, build_loss, task_of
from hpsearch.train.models import build_model
from hpsearch.train.optim import build_optimizer
from hpsearch.train.splits import DataSplits, Split, TensorSplit

REL_TOLERANCE = 0.25  # initial loss within 25% of ln K [004]: +-0.58 nats for 10 classes
INITIAL_LOSS_SAMPLES = 2048  # validation samples for the initial loss: std error < 0.01 nats
OVERFIT_SAMPLES = 32  # one batch: LRs of [000] are given for batches of 32-64
OVERFIT_STEPS = 300  # the reference MLP memorises 32 samples in 20-120 steps (Adam 1e-3, SGD)
CHECK_EVERY = 10  # steps between accuracy reads while overfitting (each one syncs the host)
# Without accuracy (regression), a memorised batch is one whose loss fell to 5% of its start:
# hpsearch's choice (no source gives one); the reference MLP reaches 1% within 300 steps.
MEMORISED_LOSS_FRACTION = 0.05
# Cross-entropy of an untrained model on K classes is about ln K [004]; bce of logits near 0
# is ln 2 for every output. loss -> (its name in messages, the expected value's, the value).
_EXPECTED_LOSS = {
    "cross_entropy": ("cross-entropy", "ln({k})", math.log),
    "nll": ("NLL", "ln({k})", math.log),
    "bce": ("binary cross-entropy", "ln(2)", lambda k: math.log(2)),
}


def check_initial_loss(
    config: TrainConfig,
    data: DataSplits,
    device: torch.device | str,
    *,
    rel_tolerance: float = REL_TOLERANCE,
    max_samples: int = INITIAL_LOSS_SAMPLES,
) -> CheckResult:
    """An untrained model's validation cross-entropy is about ln K [004].

    The model is built as training builds it (seeded with `config.seed`) and evaluated in eval
    mode on up to `max_samples` validation samples drawn with that seed. It passes within
    `rel_tolerance` (25%) of ln K; a loss far above means overconfident initial outputs (a
    large output scale or bias, softmax applied twice), far below means the model is not
    untrained (loaded weights) or its input gives the label away.
    `value`: the initial loss in nats.
    """
    device, k = torch.device(device), data.num_classes
    if config.loss not in _EXPECTED_LOSS:
        return CheckResult("initial_loss", True, f"not checked: no expected initial value of "
                           f"loss `{config.loss}` (only cross_entropy, nll and bce have one)")
    shown, expected_name, expected_of = _EXPECTED_LOSS[config.loss]
    expected = expected_of(k)
    split = _sample(data.val, max_samples, config.seed)
    unusable = _unusable_labels("validation", labels_of(split), k, config)
    if unusable:
        return CheckResult("initial_loss", False, unusable, None)
    with _seeded(config.seed, device):
        model = build_model(config, data.input_shape, data.num_classes).to(device)
    loss, _ = evaluate(model, split, config, device)
    ok = abs(loss - expected) <= rel_tolerance * expected
    detail = (f"untrained validation {shown} {loss:.3f} vs {expected_name.format(k=k)} = "
              f"{expected:.3f} (allowed ±{rel_tolerance:.0%}) over {len(split)} samples")
    if not ok:
        detail += ("; fix: look for an output layer with a large scale or bias, or outputs "
                   "that are not logits (softmax already applied), or mismatched labels")
    return CheckResult("initial_loss", ok, detail, finite_or_none(loss))


def _sample(split: Split, count: int, seed: int) -> Split:
    """At most `count` samples of `split`, drawn without replacement with `seed`."""
    if len(split) <= count:
        return split
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:count]
    if isinstance(split, TensorSplit):
        idx = idx.to(split.y.device)
        return TensorSplit(split.x[idx], split.y[idx])
    return Subset(split, idx.tolist())


def _unusable_labels(name: str, y: Tensor | None, k: int, config: TrainConfig) -> str:
    """Why cross-entropy cannot run on labels `y` ('' when it can): out-of-range labels raise,
    and on CUDA they trip a device-side assert that breaks the whole process."""
    if task_of(config) != CLASSIFICATION:
        return ""  # float targets: nothing indexes a class
    problems = [] if y is None else label_problems(name, y, k)
    return f"not run: {problems[0]}; fix the labels first" if problems else ""


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch for model building and dropout, restoring the caller's random state after."""
    cuda = []
    if device.type == "cuda":  # a bare "cuda" means the current device
        cuda = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)  # weight init as the training loop seeds it
        yield


# --- overfit one batch -------------------------------------------------------------------------


def check_overfit_one_batch(
    config: TrainConfig,
    data: DataSplits,
    device: torch.device | str,
    *,
    steps: int = OVERFIT_STEPS,
    target_acc: float = 1.0,
    batch_samples: int = OVERFIT_SAMPLES,
) -> CheckResult:
    """The model memorises one training batch: "sanity-check by overfitting one batch" [004].

    A batch of min(`batch_samples`, batch_size) training samples (32: small enough for any
    model to memorise, large enough to hold most of 10 classes; the LRs of [000] are for
    batches of 32-64) drawn with `config.seed` is trained on alone, without augmentation, with
    the config's model (in train mode, dropout and BatchNorm as configured), optimizer, LR
    (constant: no schedule or warmup) and plain cross-entropy, for up to `steps` steps. The
    batch's accuracy is read in eval mode every 10 steps; it passes at `target_acc`. A model
    that cannot memorise one batch has a bug in the data, model or loss wiring.
    `value`: the batch accuracy reached.
    """
    device = torch.device(device)
    x, y = _batch(data.train, min(batch_samples, config.batch_size), config.seed, device)
    unusable = _unusable_labels("training", y, data.num_classes, config)
    if unusable:
        return CheckResult("overfit_one_batch", False, unusable, None)
    loss_fn = build_loss(config)
    with _seeded(config.seed, device):
        model = build_model(config, data.input_shape, data.num_classes).to(device)
        optimizer = build_optimizer(config, model)
        used, start, loss, acc = _memorise(model, optimizer, loss_fn, x, y, steps, target_acc)
    if acc is None:
        return _memorised_loss(config, len(y), used, start, loss)
    batch = (f"a batch of {len(y)} training samples ({y.unique().numel()} classes), "
             f"{config.optimizer} at lr {config.lr:g}")
    if acc >= target_acc:
        return CheckResult("overfit_one_batch", True, (
            f"{batch}: accuracy {acc:.1%} (target {target_acc:.0%}) after {used} steps, "
            f"loss {loss:.3g}"), acc)
    return CheckResult("overfit_one_batch", False, (
        f"{batch}: accuracy only {acc:.1%} (target {target_acc:.0%}) after {used} steps, "
        f"loss {loss:.3g}; a model that cannot memorise one batch has a bug in the data, model "
        f"or loss wiring [004]; fix: check that the output depends on the input, that the "
        f"labels match the inputs, and try a smaller LR if the loss rose"), acc)


def _batch(split: Split, count: int, seed: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """`count` samples of `split` drawn with `seed` (not the first ones: sorted data would give
    a single class, which a constant output fits), as tensors on `device`."""
    chosen = _sample(split, count, seed)
    if isinstance(chosen, TensorSplit):
        return chosen.x.to(device), chosen.y.to(device)
    x, y = default_collate([chosen[i] for i in range(len(chosen))])
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    return (x if x.is_floating_point() else x.float()).to(device), y.to(device)


def _memorised_loss(config: TrainConfig, samples: int, used: int, start: float,
                    loss: float) -> CheckResult:
    """The verdict without accuracy: the batch's loss fell to 5% of its start."""
    ok = math.isfinite(loss) and loss <= MEMORISED_LOSS_FRACTION * start
    detail = (f"a batch of {samples} training samples, {config.optimizer} at lr "
              f"{config.lr:g}: {config.loss} {start:.3g} -> {loss:.3g} after {used} steps "
              f"(target {MEMORISED_LOSS_FRACTION:.0%} of the start)")
    if not ok:
        detail += ("; a model that cannot memorise one batch has a bug in the data, model or "
                   "loss wiring [004]; fix: check that the output depends on the input and "
                   "the targets match the inputs")
    return CheckResult("overfit_one_batch", ok, detail, finite_or_none(loss))


def _memorise(
    model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Loss, x: Tensor, y: Tensor,
    steps: int, target_acc: float,
) -> tuple[int, float, float, float | None]:
    """Train on (x, y) until it is memorised: (steps used, initial loss, loss, accuracy)."""
    start, acc = _fit_of(model, loss_fn, x, y)
    loss = start
    for step in range(1, steps + 1):
        model.train()
        step_loss = loss_fn.evaluate(model(x), y)  # no label smoothing: memorise the labels
        optimizer.zero_grad(set_to_none=True)
        step_loss.backward()
        optimizer.step()
        if step % CHECK_EVERY == 0 or step == steps:
            loss, acc = _fit_of(model, loss_fn, x, y)
            done = loss <= MEMORISED_LOSS_FRACTION * start if acc is None else acc >= target_acc
            if done or not math.isfinite(loss):
                return step, start, loss, acc
    return steps, start, loss, acc


def _fit_of(model: nn.Module, loss_fn: Loss, x: Tensor, y: Tensor) -> tuple[float, float | None]:
    """(loss, accuracy or None) on (x, y) in eval mode: dropout off, as a memorised batch is
    a property of the weights; one host sync."""
    model.eval()
    with torch.no_grad():
        outputs = model(x).float()
        hits = loss_fn.correct(outputs, y)
        share = torch.zeros((), device=outputs.device) if hits is None else hits.float() / len(y)
        pair = torch.stack([loss_fn.evaluate(outputs, y).float(), share]).tolist()
    return pair[0], (None if hits is None else pair[1])
