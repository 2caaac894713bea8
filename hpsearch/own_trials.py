"""The trials a worker runs, kept in memory as it writes them, so it need not read them back.

Optuna reads a worker's own running trial back from the database several times a trial: when
it is asked for (`Trial.__init__`), when it is told (`_tell`), after it (the callbacks), and
inside every read of the study's trials (the sampler's, the twin check's, the waiting-trial
lookup), each time with every parameter, value and attribute: six queries through the ORM,
about a third of a 20-epoch trial's storage cost (benchmarks/trial_overhead.py). Everything
in such a read was written by this process, through this storage object, so it is known here.

Why serving it from memory is safe:
- Only the worker that runs a trial writes its parameters, reports and attributes; every
  write here goes through the methods below, which record it only once the database took it,
  in the form a read would return (attributes through JSON, values as floats). Two kinds are
  recorded when queued for a write of this process that follows at once (the parameters,
  stored with the start facts; the last reports, with the finish): a reader in between (the
  sampler, Optuna's `tell`) sees the trial as it is about to be stored.
- What another process may change is the trial's state: a heartbeat check that judged the
  worker dead fails it (optuna#4234). So every answer from memory is checked against the
  trial's state in the database (one indexed one-column read); a trial whose state is not the
  one recorded here is read in full and forgotten. One read is spared the check: the one the
  creating `ask` makes at once (JUST_CREATED_S), when no heartbeat check can yet judge the
  trial dead.
- A finished trial never changes (Optuna refuses writes to it): once this worker finished it,
  the copy here is final. It is kept until Optuna's cache has read it finished, then dropped.
- A trial taken from the waiting queue (an enqueued trial) was written by whoever queued it:
  it is read in full once, then kept.
The copies handed out are deep copies: Optuna's `Trial` edits the one it gets.
Writes made by others to a running trial's attributes (optuna-dashboard can set a user
attribute) are not seen by the worker running it; the database keeps them.
"""

from __future__ import annotations

import collections
from datetime import datetime
import json
import pickle
import threading
import time
from typing import Any, Container

import sqlalchemy
from optuna.distributions import BaseDistribution
from optuna.storages._rdb import models as _models
from optuna.trial import FrozenTrial, TrialState

from hpsearch.lean_writes import LeanWritesRDBStorage

_TRIALS = _models.TrialModel.__table__
# Finished own trials kept at most: a worker needs the one it just finished (Optuna's
# callbacks read it, then its cache); a proxy finishes many workers' trials at once.
KEEP_FINISHED = 64
# A trial created here is read back by the `ask` that created it (Optuna's Trial reads it at
# once), well inside this many seconds; that read needs no state check: nothing fails a
# trial that young (another worker's stale check waits storage.GRACE_S, 120 s, without a
# heartbeat) and its finish is guarded by its state anyway (lean_writes.py).
JUST_CREATED_S = 1.0


def _copy(trial: FrozenTrial) -> FrozenTrial:
    """A deep copy through pickle: 34 us for a 20-epoch trial with its history, against 111
    through copy.deepcopy (this machine), and a trial is copied about five times. Everything
    in a trial pickles (Optuna sends trials between processes so)."""
    return pickle.loads(pickle.dumps(trial, protocol=pickle.HIGHEST_PROTOCOL))


def _as_stored(value: Any) -> Any:
    """An attribute as a read returns it: Optuna stores attributes as JSON (tuples come back
    as lists, integer keys as strings)."""
    return json.loads(json.dumps(value))


class OwnTrialsRDBStorage(LeanWritesRDBStorage):
    """RDBStorage that keeps the trials this process runs (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._own: dict[int, FrozenTrial] = {}  # trial id -> as written here
        self._taken: set[int] = set()  # waiting trials this process set running, not read yet
        self._finished: collections.deque[int] = collections.deque()  # own, oldest first
        self._created: dict[int, float] = {}  # created here, not read yet -> when (monotonic s)
        self._own_lock = threading.Lock()

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        for name in ("_own", "_taken", "_finished", "_created", "_own_lock"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._own, self._taken, self._own_lock = {}, set(), threading.Lock()
        self._finished, self._created = collections.deque(), {}

    # --- writes: recorded once stored ---------------------------------------------------------

    def _create_new_trial(self, study_id: int,
                          template_trial: FrozenTrial | None = None) -> FrozenTrial:
        trial = super()._create_new_trial(study_id, template_trial)
        if trial.state == TrialState.RUNNING:  # asked for by this process (not enqueued)
            with self._own_lock:
                self._own[trial._trial_id] = _copy(trial)
                self._created[trial._trial_id] = time.monotonic()
        return trial

    def _set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                         distribution: BaseDistribution,
                         previous_distribution: BaseDistribution | None) -> None:
        super()._set_trial_param(trial_id, param_name, param_value_internal, distribution,
                                 previous_distribution)
        self.param_set(trial_id, param_name, param_value_internal, distribution)

    def param_set(self, trial_id: int, param_name: str, param_value_internal: float,
                  distribution: BaseDistribution) -> None:
        """Record a parameter the database has stored (or will store with the trial's next
        flush, resilient_storage.ResilientRDBStorage.params_held)."""
        def apply(trial: FrozenTrial) -> None:
            trial._params[param_name] = distribution.to_external_repr(param_value_internal)
            trial._distributions[param_name] = distribution
        self._update(trial_id, apply)

    def set_trial_intermediate_value(self, trial_id: int, step: int,
                                     intermediate_value: float) -> None:
        super().set_trial_intermediate_value(trial_id, step, intermediate_value)
        self.reported(trial_id, {step: intermediate_value}, {})

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        super().set_trial_user_attr(trial_id, key, value)
        self.reported(trial_id, {}, {key: value})

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        super().set_trial_system_attr(trial_id, key, value)
        self._update(trial_id, lambda t: t._system_attrs.__setitem__(key, _as_stored(value)))

    def reported(self, trial_id: int, values: dict[int, float], user_attrs: dict[str, Any]
                 ) -> None:
        """Record reports and user attributes the database has just stored (or will
        store with the trial's finish, resilient_storage.hold_for_finish)."""
        def apply(trial: FrozenTrial) -> None:
            trial.intermediate_values.update((s, float(v)) for s, v in values.items())
            trial._user_attrs.update((k, _as_stored(v)) for k, v in user_attrs.items())
        self._update(trial_id, apply)

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Any = None) -> bool:
        changed = super().set_trial_state_values(trial_id, state, values)
        if changed and state == TrialState.RUNNING:
            with self._own_lock:
                self._taken.add(trial_id)  # a waiting trial this process runs now
        elif changed and state.is_finished() and self._running_here(trial_id):
            # Finished by Optuna's path (lean_writes.py's guard did not hold): its end time
            # was stamped there.
            self._record_finish(trial_id, state, values,
                                self._read_column(trial_id, _TRIALS.c.datetime_complete))
        return changed

    def finish_trial(self, trial_id: int, state: TrialState,
                     values: Any) -> datetime | None:
        finished_at = super().finish_trial(trial_id, state, values)
        if finished_at is not None:
            self._record_finish(trial_id, state, values, finished_at)
        return finished_at

    def _running_here(self, trial_id: int) -> bool:
        with self._own_lock:
            own = self._own.get(trial_id)
            return own is not None and not own.state.is_finished()

    def _record_finish(self, trial_id: int, state: TrialState, values: Any,
                       finished_at: Any) -> None:
        self._update(trial_id, lambda t: _finish(t, state, values, finished_at))
        self._keep_few_finished(trial_id)

    def _keep_few_finished(self, trial_id: int) -> None:
        """A finished trial is kept until Optuna's cache reads it; a storage nobody reads
        through (a proxy's) keeps the last KEEP_FINISHED, not every trial it ever ran."""
        with self._own_lock:
            self._created.pop(trial_id, None)
            self._finished.append(trial_id)
            while len(self._finished) > KEEP_FINISHED:
                self._own.pop(self._finished.popleft(), None)

    def _update(self, trial_id: int, apply) -> None:
        with self._own_lock:
            trial = self._own.get(trial_id)
            if trial is not None:
                apply(trial)

    # --- reads: served from memory while the database's state agrees ---------------------------

    def get_trial(self, trial_id: int) -> FrozenTrial:
        own = self._copy_of(trial_id)
        if own is not None:
            if (own.state.is_finished() or self._just_created(trial_id)
                    or self._state_of(trial_id) == own.state):
                return own
            self._forget(trial_id)  # failed by another worker's heartbeat check
        trial = super().get_trial(trial_id)
        with self._own_lock:
            if trial_id in self._taken and trial.state == TrialState.RUNNING:
                self._taken.discard(trial_id)
                self._own[trial_id] = _copy(trial)
        return trial

    def _get_trials(self, study_id: int, states: Container[TrialState] | None,
                    included_trial_ids: set[int], trial_id_greater_than: int
                    ) -> list[FrozenTrial]:
        """Optuna's cache's incremental read: the trials it holds unfinished and every trial
        above the last finished one. Own trials whose state the database confirms come from
        memory; the others are read as Optuna reads them."""
        if not self._own:
            return super()._get_trials(study_id, states, included_trial_ids,
                                       trial_id_greater_than)
        listed = self._states(study_id, states, included_trial_ids, trial_id_greater_than)
        with self._own_lock:
            own = {trial_id: self._own[trial_id] for trial_id in listed if trial_id in self._own}
            served = {trial_id: _copy(trial) for trial_id, trial in own.items()
                      if trial.state == listed[trial_id]}
        unread = set(listed) - set(served)
        read = (super()._get_trials(study_id, states, unread, max(unread)) if unread else [])
        for trial_id in [t for t in listed if t in own and t not in served]:
            self._forget(trial_id)
        for trial_id, trial in served.items():
            if trial.state.is_finished():  # Optuna's cache holds it from now on
                self._forget(trial_id)
        trials = {t._trial_id: t for t in read} | served
        return [trials[trial_id] for trial_id in sorted(trials)]

    def _copy_of(self, trial_id: int) -> FrozenTrial | None:
        with self._own_lock:  # a proxy's threads write to the trials they hold
            own = self._own.get(trial_id)
            return _copy(own) if own is not None else None

    def _just_created(self, trial_id: int) -> bool:
        """True once, for the first read of a trial created here less than JUST_CREATED_S
        ago (its state is the one it was created with)."""
        with self._own_lock:
            created = self._created.pop(trial_id, None)
        return created is not None and time.monotonic() - created < JUST_CREATED_S

    def _forget(self, trial_id: int) -> None:
        with self._own_lock:
            self._own.pop(trial_id, None)
            self._created.pop(trial_id, None)

    def _states(self, study_id: int, states: Container[TrialState] | None,
                included_trial_ids: set[int], trial_id_greater_than: int
                ) -> dict[int, TrialState]:
        """Trial id -> state of what Optuna's `_get_trials` would return: one narrow query."""
        query = sqlalchemy.select(_TRIALS.c.trial_id, _TRIALS.c.state).where(
            _TRIALS.c.study_id == study_id)
        if states is not None:
            query = query.where(_TRIALS.c.state.in_(list(states)))
        included = [t for t in included_trial_ids if t <= trial_id_greater_than]
        if trial_id_greater_than > -1:
            above = _TRIALS.c.trial_id > trial_id_greater_than
            query = query.where(sqlalchemy.or_(_TRIALS.c.trial_id.in_(included), above)
                                if included else above)
        with self._one_statement() as connection:
            return {row.trial_id: TrialState(row.state) for row in connection.execute(query)}

    def _state_of(self, trial_id: int) -> TrialState | None:
        return self._read_column(trial_id, _TRIALS.c.state)

    def _read_column(self, trial_id: int, column) -> Any:
        with self._one_statement() as connection:
            return connection.execute(
                sqlalchemy.select(column).where(_TRIALS.c.trial_id == trial_id)).scalar()


def _finish(trial: FrozenTrial, state: TrialState, values: Any, finished_at: Any) -> None:
    trial.state = state
    if values is not None:
        trial._values = [float(v) for v in values]
    trial.datetime_complete = finished_at
