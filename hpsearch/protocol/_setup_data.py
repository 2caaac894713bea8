"""Setup checks on the data: labels, disjoint splits, normalisation [000, 001]."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from hpsearch.config import TrainConfig
from hpsearch.protocol._check_result import CheckResult, finite_or_none
from hpsearch.train.data import cache_dir, data_root, split_indices
from hpsearch.train.sources import BUILTIN_DATASETS, read_builtin
from hpsearch.train.splits import DataSplits, Split, TensorSplit

MAX_LEAK = 0.01  # val/test share repeating a training sample; the MNIST reference split: 0
MAX_ABS_MEAN = 0.1  # |training channel mean| [001]; loader: ~1e-7, raw 0..255 MNIST: 33
STD_RANGE = (0.5, 2.0)  # training channel std, 2x either side of 1; 0..1 scaled MNIST: 0.31
_PRIME = 2_147_483_647  # 2**31 - 1: two residues make one int64 key
_HASH_ELEMENTS = 2**22  # float64 halves hashed at once (32 MB), whatever the sample size


def check_labels(data: DataSplits) -> CheckResult:
    """Labels are integers in [0, num_classes) in every split, and every class is trained on.

    A class missing from the training split usually means a broken split or label mapping.
    `value`: the fewest training samples of any class (0 when one is missing; None when the
    labels are unusable or a Dataset without `targets` hides them).
    """
    k, problems = data.num_classes, []
    for name, split in _named_splits(data):
        y = labels_of(split)
        problems += [] if y is None else label_problems(name, y, k)
    if problems:
        return CheckResult("labels", False, (
            f"{'; '.join(problems)}; fix: map the labels to integers 0..{k - 1} "
            f"(or set num_classes to the real number of classes)"), None)
    train_y = labels_of(data.train)
    if train_y is None:
        return CheckResult("labels", True, "training labels not checked: the training split "
                           "is a Dataset without `targets`", None)
    missing, fewest = _fewest_per_class(train_y, k)
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        return CheckResult("labels", False, (
            f"{len(missing)} of {k} classes never appear in the training split ({shown}), which "
            f"usually means a broken split or label mapping; fix: carve the splits so every "
            f"class is trained on, or set num_classes to the real number of classes"), 0.0)
    return CheckResult("labels", True, (
        f"labels lie in [0, {k}) in every split and each of the {k} classes appears in the "
        f"training split (the rarest {fewest:g} times)"), fewest)


def _named_splits(data: DataSplits) -> list[tuple[str, Split]]:
    named = [("training", data.train), ("validation", data.val), ("test", data.test)]
    return [(name, split) for name, split in named if split is not None]


def labels_of(split: Split) -> Tensor | None:
    """The labels of a split when they are at hand without reading every sample, else None."""
    if isinstance(split, TensorSplit):
        return split.y
    if isinstance(split, TensorDataset) and len(split.tensors) >= 2:
        return split.tensors[1]
    targets = getattr(split, "targets", None)
    return None if targets is None else torch.as_tensor(targets)


def label_problems(name: str, y: Tensor, k: int) -> list[str]:
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or y.dim() != 1:
        shape = tuple(y.shape)
        return [f"{name} labels are {y.dtype} of shape {shape}, not one integer per sample"]
    if len(y) == 0:
        return []
    y = y.long()  # one dtype for the stacked read below
    low, high, outside = torch.stack([y.min(), y.max(), _outside(y, k)]).tolist()
    if outside == 0:
        return []
    return [f"{outside} {name} label(s) lie outside [0, {k}) (min {low}, max {high})"]


def _outside(y: Tensor, k: int) -> Tensor:
    return ((y < 0) | (y >= k)).sum()


def _fewest_per_class(y: Tensor, k: int) -> tuple[list[int], float]:
    """(classes absent from `y`, the smallest class count), labels outside [0, k) ignored."""
    counts = torch.bincount(y[(y >= 0) & (y < k)].long(), minlength=k)[:k].cpu()
    missing = (counts == 0).nonzero().flatten().tolist()
    return missing, float(counts.min()) if k > 0 else 0.0


# --- train / validation / test disjoint --------------------------------------------------------


def check_disjoint(
    data: DataSplits, config: TrainConfig, *, max_leak: float = MAX_LEAK
) -> CheckResult:
    """Validation and test share no sample with training [000, 001].

    Built-in data sets: the indices `split_indices` carves from the official train split are
    disjoint. Tensor splits (any source): the share of validation and test samples that repeat
    a training sample exactly; fails above `max_leak` (1%), since real data sets hold a few
    genuine duplicates. A `Dataset` training split is not hashed (that reads every sample).
    `value`: the larger of the two shares.
    """
    parts, ok = [], True
    if config.dataset in BUILTIN_DATASETS:
        ok, sentence = _index_split(data, config)
        parts.append(sentence)
    if not isinstance(data.train, TensorSplit):
        parts.append("exact duplicates not checked: the training split is a Dataset "
                     "(hashing it would read every sample)")
        return CheckResult("disjoint", ok, "; ".join(parts), None)
    shares = _leak_shares(data)
    worst = max(shares.values(), default=0.0)
    parts.append(_leak_sentence(shares, max_leak))
    if worst > max_leak:
        parts.append("fix: build validation and test from samples not used for training, "
                     "and drop exact duplicates")
    return CheckResult("disjoint", ok and worst <= max_leak, "; ".join(parts), worst)


def _index_split(data: DataSplits, config: TrainConfig) -> tuple[bool, str]:
    """(disjoint, sentence) for the indices a built-in data set's splits were carved with."""
    official = read_builtin(config.dataset, data_root(config), cache=cache_dir())
    n = len(official.train_y)
    train_idx, val_idx = split_indices(n, config)
    if (len(train_idx), len(val_idx)) != (len(data.train), len(data.val)):
        return True, (f"index split not checked: the data hold {len(data.train)} training and "
                      f"{len(data.val)} validation samples, not the {len(train_idx)} and "
                      f"{len(val_idx)} this config carves")
    shared = int(torch.isin(val_idx, train_idx).sum())
    if shared:
        return False, (f"{shared} of {len(val_idx)} validation indices are also training "
                       f"indices; fix: carve both from one permutation (split_indices)")
    return True, (f"training and validation indices into the {n} official training samples "
                  f"are disjoint ({len(train_idx)} and {len(val_idx)})")


def _leak_shares(data: DataSplits) -> dict[str, float]:
    """Share of each tensor split's samples (validation, test) found exactly in training."""
    seen = _row_hashes(data.train.x)
    shares = {}
    for name, split in (("validation", data.val), ("test", data.test)):
        if isinstance(split, TensorSplit) and len(split) > 0:
            hashes = _row_hashes(split.x).to(seen.device)
            shares[name] = torch.isin(hashes, seen).float().mean().item()
    return shares


def _row_hashes(x: Tensor) -> Tensor:
    """A 62-bit hash per sample of its exact float32 bits: equal samples, equal hashes.

    The bits are split into 16-bit halves and projected on two columns of random integer
    weights in float64, with the weights small enough that every dot product is an exact
    integer below 2**53: exact on any device and in any summation order, unlike a projection
    of the float values. Two distinct samples collide with probability <= 2**-(2 * weight
    bits), 2**-52 for MNIST (~1e-6 expected false matches over its 3e9 train x val pairs).
    """
    if len(x) == 0:
        return torch.empty(0, dtype=torch.int64, device=x.device)
    flat = x.reshape(len(x), -1)
    width = 2 * flat.shape[1]  # two 16-bit halves per value
    weight_bits = 53 - 16 - math.ceil(math.log2(width))  # keeps sums of products below 2**53
    weights = torch.randint(0, 2**weight_bits, (width, 2), dtype=torch.float64,
                            generator=torch.Generator().manual_seed(0)).to(x.device)
    rows = max(1, _HASH_ELEMENTS // width)
    return torch.cat([_hash_chunk(flat[i:i + rows], weights) for i in range(0, len(flat), rows)])


def _hash_chunk(rows: Tensor, weights: Tensor) -> Tensor:
    # + 0.0 turns -0.0 into +0.0: equal as numbers, so they must hash alike.
    bits = (rows.float() + 0.0).contiguous().view(torch.int32)
    halves = torch.cat([bits & 0xFFFF, (bits >> 16) & 0xFFFF], dim=1).double()
    sums = (halves @ weights).long().remainder(_PRIME)  # mod a prime: the bound above holds
    return sums[:, 0] * _PRIME + sums[:, 1]


def _leak_sentence(shares: dict[str, float], max_leak: float) -> str:
    if not shares:
        return "exact duplicates not checked: validation and test are Datasets"
    found = " and ".join(f"{share:.1%} of {name}" for name, share in shares.items())
    return (f"{found} samples repeat a training sample exactly (limit {max_leak:.1%}: real "
            f"data sets hold a few genuine duplicates)")


# --- normalisation -----------------------------------------------------------------------------


def check_normalisation(
    data: DataSplits,
    *,
    max_abs_mean: float = MAX_ABS_MEAN,
    std_range: tuple[float, float] = STD_RANGE,
) -> CheckResult:
    """The training split is normalised per channel and every split is finite [001].

    Channels are axis 1 of image inputs (N, C, H, W); a vector input (N, F) is one channel,
    so both per-feature and whole-image standardisation pass. Validation statistics are
    reported, not judged: they come from the training split, so they are only near 0 and 1.
    Dataset splits (user factories with their own transforms) pass unchecked.
    `value`: the largest |training channel mean|.
    """
    if not isinstance(data.train, TensorSplit):
        return CheckResult("normalisation", True, "not checked: the training split is a "
                           "Dataset, which normalises its samples itself", None)
    not_finite = _nonfinite_or_none(data)
    mean, std = _channel_stats(data.train.x)
    worst = mean.abs().max().item()
    ok = (not not_finite and worst <= max_abs_mean
          and std_range[0] <= std.min().item() and std.max().item() <= std_range[1])
    detail = f"training {_stats_text(mean, std)}"
    if isinstance(data.val, TensorSplit) and len(data.val) > 0:
        detail += f"; validation {_stats_text(*_channel_stats(data.val.x))}"
    detail += f"; {not_finite or 'every value finite'}"
    if not ok:
        detail += (f"; want |mean| <= {max_abs_mean:g} and std in [{std_range[0]:g}, "
                   f"{std_range[1]:g}], all finite; fix: subtract the training split's "
                   f"per-channel mean and divide by its std, in every split")
    return CheckResult("normalisation", ok, detail, finite_or_none(worst))


def _channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel (mean, std) over every axis but axis 1; vectors count as one channel."""
    x = x.float() if x.dim() >= 3 else x.float().reshape(len(x), 1, -1)
    dims = (0, *range(2, x.dim()))
    return x.mean(dim=dims), x.std(dim=dims, unbiased=False)


def _stats_text(mean: Tensor, std: Tensor) -> str:
    channels = f"{len(mean)} channel{'s' if len(mean) > 1 else ''}"
    return f"mean {_span(mean)}, std {_span(std)} ({channels})"


def _span(values: Tensor) -> str:
    low, high = values.min().item(), values.max().item()
    return f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}..{high:.2f}"


def _nonfinite_or_none(data: DataSplits) -> str:
    """'' when every tensor split is finite, else a clause counting the bad values."""
    bad = []
    for name, split in _named_splits(data):
        if isinstance(split, TensorSplit) and split.x.is_floating_point():
            # A one-pass sum is finite unless a value is not (or it overflows): count only then.
            if not torch.isfinite(split.x.sum()):
                count = int((~torch.isfinite(split.x)).sum())
                bad += [f"{count} non-finite values in {name}"] if count else []
    return ", ".join(bad)


# --- initial loss ------------------------------------------------------------------------------
