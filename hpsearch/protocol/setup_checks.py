"""Phase 1 - Setup as checks run before any tuning (PROTOCOL.md [000, 001, 004]).

"Labels correct, train/val disjoint, normalization correct" [000, 001]; "cross-entropy at
start should be about log(K)" and "sanity-check by overfitting one batch" [004]. Each check
returns a `CheckResult` whose `detail` is one sentence with the measured numbers and, when it
fails, the fix. Everything is vectorised on the data's device: the MNIST reference setting
[001] checks in about a second on a CPU. Checks that cannot look inside a torch `Dataset`
cheaply pass and say so.
"""


from __future__ import annotations

import torch

from hpsearch.config import TrainConfig
from hpsearch.protocol._check_result import CheckResult
from hpsearch.protocol._setup_data import (
    check_disjoint,
    check_labels,
    check_normalisation,
)
from hpsearch.protocol._setup_model import check_initial_loss, check_overfit_one_batch
from hpsearch.train.losses import CLASSIFICATION, task_of
from hpsearch.train.splits import DataModuleSource, DataSplits
from hpsearch.train.trainers import HPSEARCH, trainer_of

__all__ = [
    "CheckResult",
    "check_disjoint",
    "check_initial_loss",
    "check_labels",
    "check_normalisation",
    "check_overfit_one_batch",
    "failed",
    "format_results",
    "run_setup_checks",
]


def run_setup_checks(
    config: TrainConfig, data: DataSplits | DataModuleSource, device: torch.device | str
) -> list[CheckResult]:
    """Every setup check with its default thresholds, data checks first [000, 001, 004].

    What hpsearch cannot look into passes and says why: a LightningDataModule's batches, the
    labels of a task without classes, the model checks of a run the user's own code trains
    (a fit hook or a LightningModule: they need hpsearch's loss and loop).
    """
    if not isinstance(data, DataSplits):
        why = f"not checked: the LightningDataModule `{data.name}` feeds its Trainer itself"
        return [CheckResult(name, True, why) for name in CHECKS]
    labels = (check_labels(data) if task_of(config) == CLASSIFICATION else CheckResult(
        "labels", True, f"not checked: loss `{config.loss}` takes no class labels"))
    results = [labels, check_disjoint(data, config), check_normalisation(data)]
    kind = trainer_of(config)
    if kind != HPSEARCH:
        why = f"not checked: the {kind} trains the model itself"
        return results + [CheckResult(name, True, why) for name in CHECKS[3:]]
    return results + [check_initial_loss(config, data, device),
                      check_overfit_one_batch(config, data, device)]


CHECKS = ("labels", "disjoint", "normalisation", "initial_loss", "overfit_one_batch")


def failed(results: list[CheckResult]) -> list[CheckResult]:
    """The results that did not pass, in order."""
    return [result for result in results if not result.passed]


def format_results(results: list[CheckResult]) -> list[str]:
    """One line per check: `✓ name: detail` or `✗ name: detail`."""
    return [f"{'✓' if r.passed else '✗'} {r.name}: {r.detail}" for r in results]
