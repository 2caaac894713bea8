"""A trial that would train what a finished trial of its study trained already.

A sampler may draw a point twice (TPE on a small space, a resumed grid); training it again
would spend its epochs on a result the study holds. The objective copies the earlier trial's
result instead (`StudyObjective._repeat`). Which configurations were trained is read here.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch import records
from hpsearch.config import TrainConfig, what_it_computes

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class TrainedConfigurations:
    """What each finished trial of the study trained, indexed as it is first seen: finished
    trials never change, so a new trial's check for a repeat looks up its configuration
    instead of rebuilding and comparing every finished trial's (7 ms a trial at 400 trials,
    growing with the study, where hpsearch's whole cost of a 20-epoch digits trial is 14-23
    ms: benchmarks/trial_overhead.py)."""

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._first_by_key: dict[str, FrozenTrial] = {}

    def same_as(self, trial: optuna.trial.Trial, config: TrainConfig,
                trials: list[FrozenTrial]) -> FrozenTrial | None:
        """The earliest finished trial of this study (not a repeat itself) that trained
        exactly `config`, where or how fast aside (RUNTIME_ONLY_KEYS); None when there is
        none, or when the space searches nothing (a study of fixed values runs what it is
        asked to)."""
        if not trial.params:
            return None
        self._index(trials)
        return self._first_by_key.get(_key(what_it_computes(config.to_dict())))

    def _index(self, trials: list[FrozenTrial]) -> None:
        for trial in trials:
            if trial.number in self._seen or trial.state not in FINISHED:
                continue
            self._seen.add(trial.number)
            if records.TrialFacts.of(trial).repeats is not None:
                continue
            key = _key(what_it_computes(records.read_config(trial)))
            first = self._first_by_key.get(key)
            if first is None or trial.number < first.number:  # workers finish out of order
                self._first_by_key[key] = trial


def _key(computed: Mapping[str, Any]) -> str:
    """A configuration as one string, equal exactly when the configurations are: stored ones
    are read back from JSON, so JSON is what they are compared as (a tuple and the list it is
    stored as are one value)."""
    return json.dumps(computed, sort_keys=True, default=repr)
