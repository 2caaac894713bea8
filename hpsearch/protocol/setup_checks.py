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
from hpsearch.protocol._setup_data import check_disjoint, check_labels, check_normalisation
from hpsearch.protocol._setup_model import check_initial_loss, check_overfit_one_batch
from hpsearch.train.splits import DataSplits

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
    config: TrainConfig, data: DataSplits, device: torch.device | str
) -> list[CheckResult]:
    """Every setup check with its default thresholds, data checks first [000, 001, 004]."""
    return [
        check_labels(data),
        check_disjoint(data, config),
        check_normalisation(data),
        check_initial_loss(config, data, device),
        check_overfit_one_batch(config, data, device),
    ]


def failed(results: list[CheckResult]) -> list[CheckResult]:
    """The results that did not pass, in order."""
    return [result for result in results if not result.passed]


def format_results(results: list[CheckResult]) -> list[str]:
    """One line per check: `✓ name: detail` or `✗ name: detail`."""
    return [f"{'✓' if r.passed else '✗'} {r.name}: {r.detail}" for r in results]
