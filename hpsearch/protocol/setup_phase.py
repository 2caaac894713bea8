"""The setup phase: sanity checks before any tuning; a failed check stops the protocol.

PROTOCOL.md phase 1 [000, 001, 004]: labels correct, splits disjoint, normalization correct,
initial loss about log(K), and a model that can overfit one batch. The results are stored on
the setup study so `hpsearch protocol` and the dashboard show them.
"""

from __future__ import annotations

import dataclasses

import optuna

from hpsearch import records
from hpsearch.errors import HpsearchError
from hpsearch.protocol.setup_checks import failed, format_results, run_setup_checks
from hpsearch.train import load_data


class SetupCheckFailed(HpsearchError):
    """A sanity check failed: tuning a broken pipeline would only tune the bug."""


def run_setup_phase(study: optuna.Study, objective) -> None:
    """Run the checks on the study's fixed configuration, store them, raise on a failure."""
    config = objective.config_for({})
    data = load_data(config, objective.device)
    results = run_setup_checks(config, data, objective.device)
    records.write_setup_checks(study, [dataclasses.asdict(r) for r in results])
    bad = failed(results)
    if bad:
        lines = "; ".join(format_results(bad))
        raise SetupCheckFailed(
            f"setup check failed: {lines}; fix: correct the data or model before tuning "
            "(PROTOCOL.md phase 1)"
        )
