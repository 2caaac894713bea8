"""What a trial writes while it trains: each epoch's report, batched, and pruning decided here.

Through Optuna's own calls an epoch costs a SQL write (`trial.report`) and two reads
(`should_prune` reads the trial back, then the pruner reads every trial of the study): about
8 ms an epoch on SQLite (benchmarks/trial_overhead.py), more than a GPU epoch of a small model.
Here:

- Batched: reports and the history are kept in memory and written together, in one
  transaction, at most every FLUSH_S and whenever the trial ends (pruned, finished, failed,
  interrupted); at the end, on our SQL storage, in the transaction that finishes the trial. The dashboard's curves are at most FLUSH_S behind. A worker that dies loses
  what it had not flushed: at most FLUSH_S of a trial that is failed and queued again anyway.
- Pruned here, on the same information: the pruner gets this trial as it is in memory (every
  epoch reported so far) and the study's finished trials. Finished trials never change, so
  they are read again only when their count changed (one `count(*)` at most every REFRESH_S,
  not a read of every trial's history each epoch). This holds for the pruners that read nothing but this trial and the
  finished ones (LOCAL_PRUNERS). Successive halving and Hyperband store their rungs on the
  trial as they go: for them each epoch is flushed and Optuna's `should_prune` decides.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import time
from typing import Any, ContextManager

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.resilient_storage import FINISHED, ResilientRDBStorage
from hpsearch.storage import count_trials

# Longest time (s) a report waits in memory: how far the dashboard's live curve lags.
FLUSH_S = 2.0
# How often (s) at most the pruner looks for trials finished since it last looked. Counting
# them costs ~0.3-1 ms on SQLite, as much as a small model's epoch; a trial another worker
# finished less than this ago counts from the next look, as if it had finished that much
# later (the race any two workers run anyway). Epochs longer than this see every one.
REFRESH_S = 0.5

# Pruners whose decision reads only the trial itself and the study's finished trials.
LOCAL_PRUNERS = (optuna.pruners.MedianPruner, optuna.pruners.PercentilePruner,
                 optuna.pruners.ThresholdPruner, optuna.pruners.NopPruner)


class EpochReports:
    """One running trial's per-epoch reports (intermediate values) and user attributes,
    written in bulk; `should_prune` on what is in memory."""

    def __init__(self, trial: optuna.trial.Trial, trials: list[FrozenTrial] | None = None,
                 flush_s: float = FLUSH_S):
        """`trials`: the study's trials as just read (the finished ones seed the pruner's)."""
        self.trial = trial
        self.flush_s = flush_s
        self.values: dict[int, float] = {}  # every step reported, flushed or not
        self._unflushed: dict[int, float] = {}
        self._attrs: dict[str, Any] = {}
        # Counted from the trial's start: a trial shorter than FLUSH_S writes its reports once,
        # when it ends; a longer one shows its first points on the dashboard within FLUSH_S.
        self._flushed_at = time.monotonic()
        self._local = isinstance(trial.study.pruner, LOCAL_PRUNERS)
        self._finished = _FinishedTrials(trial.study, trials)
        self._as_stored: FrozenTrial | None = None

    def report(self, step: int, value: float) -> None:
        self.values[step] = self._unflushed[step] = float(value)
        if not self._local or time.monotonic() - self._flushed_at >= self.flush_s:
            self.flush()

    def set_user_attr(self, key: str, value: Any) -> None:
        """Written with the next flush (the trial's history, updated every epoch)."""
        self._attrs[key] = value

    def flush(self, last: bool = False) -> None:
        """Write what is held. `last`: the trial ends now (the objective returns or raises,
        and Optuna's `tell` follows): where the storage can, what is held is stored with
        the trial's finish, in its transaction (ResilientRDBStorage.hold_for_finish)."""
        if self._unflushed or self._attrs:
            if not (last and self._held_for_finish()):
                self._write(self._unflushed, self._attrs)
            self._unflushed, self._attrs = {}, {}
        self._flushed_at = time.monotonic()

    def _held_for_finish(self) -> bool:
        backend = _bulk_storage(self.trial)
        return backend is not None and backend.hold_for_finish(
            self.trial._trial_id, self._unflushed, self._attrs)

    def finished(self) -> list[FrozenTrial]:
        """The study's finished trials as last read for the pruner (read again when their
        count changed, at most every REFRESH_S): finished trials never change."""
        return self._finished.view().get_trials(deepcopy=False, states=FINISHED)

    def should_prune(self) -> bool:
        if not self._local:
            return self.trial.should_prune()  # every report is flushed for these pruners
        return self.trial.study.pruner.prune(self._finished.view(), self._frozen())

    def _write(self, values: dict[int, float], attrs: dict[str, Any]) -> None:
        write_now(self.trial, values, attrs)

    def _frozen(self) -> FrozenTrial:
        """This trial as the pruner would read it back from storage once flushed (built once:
        its parameters are sampled before the first epoch; its reports are `self.values`)."""
        if self._as_stored is None:
            trial = self.trial
            self._as_stored = FrozenTrial(
                number=trial.number, trial_id=trial._trial_id, state=TrialState.RUNNING,
                value=None, values=None,
                datetime_start=trial.datetime_start or datetime.datetime.now(),
                datetime_complete=None, params=dict(trial.params),
                distributions=dict(trial.distributions), user_attrs={}, system_attrs={},
                intermediate_values=self.values)
        return self._as_stored


class AttributeBatch:
    """User attributes gathered (records.write_* write to it as to a trial), then stored in
    one transaction by `write`: a trial's start facts cost one write, not one each."""

    def __init__(self, trial: optuna.trial.Trial):
        self.trial = trial
        self.attrs: dict[str, Any] = {}

    def set_user_attr(self, key: str, value: Any) -> None:
        self.attrs[key] = value

    def write(self) -> None:
        write_now(self.trial, {}, self.attrs)


def write_now(trial: optuna.trial.Trial, values: dict[int, float],
              attrs: dict[str, Any]) -> None:
    """Reports and user attributes of a running trial, in one transaction on our SQL storage
    (with the parameters `params_held` kept)."""
    backend = _bulk_storage(trial)
    if backend is not None:
        backend.write_reports(trial._trial_id, values, attrs)
        return
    storage = trial.study._storage  # another back end (in memory, a proxy): one by one
    for step, value in values.items():
        storage.set_trial_intermediate_value(trial._trial_id, step, value)
    for key, value in attrs.items():
        storage.set_trial_user_attr(trial._trial_id, key, value)


def params_held(trial: optuna.trial.Trial) -> ContextManager[None]:
    """While entered, the parameters the trial samples are stored with its next write
    (`AttributeBatch.write`), in one transaction, not one each (ResilientRDBStorage)."""
    backend = _bulk_storage(trial)
    return (backend.params_held(trial._trial_id) if backend is not None
            else contextlib.nullcontext())


def _bulk_storage(trial: optuna.trial.Trial) -> ResilientRDBStorage | None:
    """Our SQL storage behind the trial's study, or None (in memory, a proxy's client)."""
    backend = getattr(trial.study._storage, "_backend", trial.study._storage)
    return backend if isinstance(backend, ResilientRDBStorage) else None


class _FinishedTrials:
    """The study's finished trials for the pruner, read again only when their count changed."""

    def __init__(self, study: optuna.Study, trials: list[FrozenTrial] | None = None):
        self.study = study
        self._trials = [t for t in trials or [] if t.state in FINISHED]
        self._count: int | None = len(self._trials) if trials is not None else None
        # Trials just read count as a look: the next is REFRESH_S later.
        self._looked_at = time.monotonic() if trials is not None else -math.inf

    def view(self) -> "_PrunerStudy":
        if time.monotonic() - self._looked_at >= REFRESH_S:
            self._looked_at = time.monotonic()
            count = count_trials(self.study, FINISHED)
            if count != self._count:
                self._trials = self.study.get_trials(deepcopy=False, states=FINISHED)
                self._count = count
        return _PrunerStudy(self.study, self._trials)


class _PrunerStudy:
    """The study as a LOCAL_PRUNERS pruner sees it: its finished trials as last read."""

    def __init__(self, study: optuna.Study, finished: list[FrozenTrial]):
        self._study, self._finished = study, finished

    @property
    def direction(self) -> optuna.study.StudyDirection:
        """What the pruners read, only when they prune (a single-objective study: a
        multi-objective one has no `direction`)."""
        return self._study.direction

    def get_trials(self, deepcopy: bool = True, states=None) -> list[FrozenTrial]:
        if states is None or not set(states) <= set(FINISHED):
            return self._study.get_trials(deepcopy=deepcopy, states=states)
        return [t for t in self._finished if t.state in states]
