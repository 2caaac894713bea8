"""Setup checks on the model: initial loss about ln K, overfitting one batch [004]."""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Subset, default_collate

from hpsearch.config import TrainConfig
from hpsearch.train.loop import evaluate
from hpsearch.train.models import build_model
from hpsearch.train.optim import build_optimizer
from hpsearch.train.splits import DataSplits, Split, TensorSplit

from hpsearch.protocol._check_result import CheckResult, finite_or_none
from hpsearch.protocol._setup_data import label_problems, labels_of

REL_TOLERANCE = 0.25  # initial loss within 25% of ln K [004]: +-0.58 nats for 10 classes
INITIAL_LOSS_SAMPLES = 2048  # validation samples for the initial loss: std error < 0.01 nats
OVERFIT_SAMPLES = 32  # one batch: LRs of [000] are given for batches of 32-64
OVERFIT_STEPS = 300  # the reference MLP memorises 32 samples in 20-120 steps (Adam 1e-3, SGD)
CHECK_EVERY = 10  # steps between accuracy reads while overfitting (each one syncs the host)


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
    expected = math.log(k)
    split = _sample(data.val, max_samples, config.seed)
    unusable = _unusable_labels("validation", labels_of(split), k)
    if unusable:
        return CheckResult("initial_loss", False, unusable, None)
    with _seeded(config.seed, device):
        model = build_model(config, data.input_shape, data.num_classes).to(device)
    loss, _ = evaluate(model, split, config, device)
    ok = abs(loss - expected) <= rel_tolerance * expected
    detail = (f"untrained validation cross-entropy {loss:.3f} vs ln({k}) = {expected:.3f} "
              f"(allowed ±{rel_tolerance:.0%}) over {len(split)} samples")
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


def _unusable_labels(name: str, y: Tensor | None, k: int) -> str:
    """Why cross-entropy cannot run on labels `y` ('' when it can): out-of-range labels raise,
    and on CUDA they trip a device-side assert that breaks the whole process."""
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
    unusable = _unusable_labels("training", y, data.num_classes)
    if unusable:
        return CheckResult("overfit_one_batch", False, unusable, None)
    with _seeded(config.seed, device):
        model = build_model(config, data.input_shape, data.num_classes).to(device)
        optimizer = build_optimizer(config, model)
        used, loss, acc = _memorise(model, optimizer, x, y, steps, target_acc)
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


def _memorise(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor,
    steps: int, target_acc: float,
) -> tuple[int, float, float]:
    """Train on (x, y) until its accuracy reaches `target_acc`; (steps used, loss, accuracy)."""
    loss, acc = _fit_of(model, x, y)
    for step in range(1, steps + 1):
        model.train()
        step_loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        step_loss.backward()
        optimizer.step()
        if step % CHECK_EVERY == 0 or step == steps:
            loss, acc = _fit_of(model, x, y)
            if acc >= target_acc or not math.isfinite(loss):
                return step, loss, acc
    return steps, loss, acc


def _fit_of(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    """(cross-entropy, accuracy) on (x, y) in eval mode: dropout off, as a memorised batch is
    a property of the weights; one host sync."""
    model.eval()
    with torch.no_grad():
        logits = model(x).float()
        pair = torch.stack([F.cross_entropy(logits, y), (logits.argmax(1) == y).float().mean()])
    loss, acc = pair.tolist()
    return loss, acc
