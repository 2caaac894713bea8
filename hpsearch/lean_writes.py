"""The writes every trial makes, in fewer SQL statements than Optuna's ORM sends.

Whatever its length, a trial is created (`ask`), given its parameters, finished (`tell`),
and preceded by a check for stale trials. Through Optuna's ORM that is four statements to
create it (lock the study, insert, count the trials before it, store its number), two per
parameter (read the trial, insert), five to finish it (read it for update, look for its
value, update it, insert the value; then one more to read back its end time for the copy
kept in memory) and two per stale check: on PostgreSQL each is a round trip, and together
they were half of a 20-epoch trial's storage cost (benchmarks/trial_overhead.py). Here:

- creating is one INSERT ... SELECT that numbers the trial by counting the study's trials
  in the same statement, behind the study's row lock on PostgreSQL (the lock Optuna takes:
  two workers never get one number); SQLite runs one writer at a time, so the statement
  alone is atomic;
- a parameter is one INSERT guarded by the trial being unfinished, in the same statement;
- finishing is one UPDATE guarded by the trial being RUNNING (the check and the change at
  once, as Optuna's row lock made them) and one INSERT of its values, in one transaction;
  on PostgreSQL one statement with the trial's last reports (pg_writes.py); starting a queued
  trial is one UPDATE guarded by its being WAITING (on SQLite Optuna's read-then-write let
  two workers start the same queued trial);
- the stale check runs at most once per heartbeat interval per study: a trial is stale
  only after GRACE_S (120 s) without a heartbeat, so checking before every trial (Optuna's
  way) finds a dead worker's trial at most one interval (30 s) sooner.

Whenever a guard does not hold (the trial finished or absent, a template trial, a parameter
whose earlier distribution this process has not seen, a value already stored) the call takes
Optuna's own path, which raises or handles it exactly as Optuna does. Other databases
(MySQL) take Optuna's path throughout.
"""

from __future__ import annotations

import functools
import json
import time
from datetime import datetime
from typing import Any

import sqlalchemy
from optuna import distributions
from optuna.storages._rdb import models as _models
from optuna.trial import FrozenTrial, TrialState

from hpsearch import pg_writes
from hpsearch.lean_study_attrs import DIALECT_INSERT, LeanStudyAttrsRDBStorage

_STUDIES = _models.StudyModel.__table__
_TRIALS = _models.TrialModel.__table__
_PARAMS = _models.TrialParamModel.__table__
_VALUES = _models.TrialValueModel.__table__
UNFINISHED = (TrialState.RUNNING, TrialState.WAITING)


class LeanWritesRDBStorage(LeanStudyAttrsRDBStorage):
    """RDBStorage whose per-trial writes take fewer statements (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stale_checked: dict[int, float] = {}  # study id -> when (monotonic s)

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        state.pop("_stale_checked", None)  # another process checks for itself
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._stale_checked = {}

    # --- creating a trial ----------------------------------------------------------------------

    def _create_new_trial(self, study_id: int,
                          template_trial: FrozenTrial | None = None) -> FrozenTrial:
        if template_trial is not None or not self._lean:
            return super()._create_new_trial(study_id, template_trial)
        started = datetime.now()  # as Optuna stamps it: the worker's clock
        with self._transaction() as connection:
            if self.engine.name == "postgresql":
                locked = connection.execute(sqlalchemy.select(_STUDIES.c.study_id).where(
                    _STUDIES.c.study_id == study_id).with_for_update()).first()
                if locked is None:
                    raise KeyError(_models.NOT_FOUND_MSG)
            row = connection.execute(_numbered_insert(study_id, started)).first()
        if row is None:  # no such study (SQLite: the insert's own guard)
            raise KeyError(_models.NOT_FOUND_MSG)
        return FrozenTrial(number=row.number, state=TrialState.RUNNING, value=None,
                           values=None, datetime_start=started, datetime_complete=None,
                           params={}, distributions={}, user_attrs={}, system_attrs={},
                           intermediate_values={}, trial_id=row.trial_id)

    # --- a parameter ---------------------------------------------------------------------------

    def _set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                         distribution: distributions.BaseDistribution,
                         previous_distribution: distributions.BaseDistribution | None) -> None:
        if previous_distribution is None or not self._lean:  # Optuna reads the earlier one
            super()._set_trial_param(trial_id, param_name, param_value_internal, distribution,
                                     previous_distribution)
            return
        distributions.check_distribution_compatibility(previous_distribution, distribution)
        row = sqlalchemy.select(
            sqlalchemy.literal(trial_id), sqlalchemy.literal(param_name),
            sqlalchemy.literal(param_value_internal, _PARAMS.c.param_value.type),
            sqlalchemy.literal(distributions.distribution_to_json(distribution)),
        ).where(_unfinished(trial_id))
        insert = sqlalchemy.insert(_PARAMS).from_select(
            ["trial_id", "param_name", "param_value", "distribution_json"], row,
        ).returning(_PARAMS.c.param_id)  # psycopg counts no rows of an INSERT ... SELECT
        try:
            with self._transaction(one_statement=True) as connection:
                stored = connection.execute(insert).first()
        except sqlalchemy.exc.IntegrityError:
            return  # set before (a retried call): Optuna ignores the second insert too
        if stored is None:  # finished, or no such trial: Optuna's path raises as it does
            super()._set_trial_param(trial_id, param_name, param_value_internal, distribution,
                                     previous_distribution)

    # --- finishing a trial ---------------------------------------------------------------------

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Any = None) -> bool:
        if state.is_finished() and self.finish_trial(trial_id, state, values) is not None:
            return True
        if state == TrialState.RUNNING and self._take_waiting(trial_id):
            return True
        return super().set_trial_state_values(trial_id, state, values)

    def _take_waiting(self, trial_id: int) -> bool:
        """Start a WAITING (queued) trial: one UPDATE guarded by its state, so of two workers
        popping it at once exactly one gets it. Optuna's path reads the state, then writes:
        on SQLite, whose driver opens the transaction only at the write, both workers read
        WAITING and both ran the trial (the second then failed on `tell`)."""
        if not self._lean:
            return False
        update = (sqlalchemy.update(_TRIALS)
                  .where(_TRIALS.c.trial_id == trial_id, _TRIALS.c.state == TrialState.WAITING)
                  .values(state=TrialState.RUNNING, datetime_start=datetime.now()))
        with self._transaction(one_statement=True) as connection:
            return connection.execute(update).rowcount == 1

    def finish_trial(self, trial_id: int, state: TrialState, values: Any) -> datetime | None:
        """Finish a RUNNING trial, storing what is held for its finish with it: its end time
        as stored, or None when the guard does not hold (not RUNNING, a value already
        stored) and nothing was written. On PostgreSQL one statement (pg_writes.py)."""
        if not self._lean:
            return None
        finished = datetime.now()
        reports, user_attrs = self._held_for_finish(trial_id)
        try:
            if self.engine.name == "postgresql":
                with self._transaction(one_statement=True) as connection:
                    done = connection.execute(pg_writes.FINISH, pg_writes.finish_parameters(
                        trial_id, state, finished, values, reports, user_attrs)).scalar_one()
                return finished if done else None
            update = (sqlalchemy.update(_TRIALS)
                      .where(_TRIALS.c.trial_id == trial_id,
                             _TRIALS.c.state == TrialState.RUNNING)
                      .values(state=state, datetime_complete=finished))
            with self._transaction() as connection:
                if connection.execute(update).rowcount == 0:
                    return None
                self._insert_rows(connection, trial_id, [], reports, user_attrs)
                if values is not None:
                    connection.execute(sqlalchemy.insert(_VALUES), [
                        _value_row(trial_id, objective, value)
                        for objective, value in enumerate(values)])
        except sqlalchemy.exc.IntegrityError:
            return None  # rolled back whole: Optuna's path updates the stored value
        return finished

    def _held_for_finish(self, trial_id: int) -> tuple[dict[int, float], dict[str, Any]]:
        """Reports (step -> value) and user attributes the finish stores with it
        (resilient_storage.py holds the trial's last ones); none here."""
        return {}, {}

    def _insert_rows(self, connection: sqlalchemy.engine.Connection, trial_id: int,
                     params: list[tuple[str, float, Any]], reports: dict[int, float],
                     user_attrs: dict[str, Any]) -> None:
        """A trial's parameters (name, internal value, distribution), reports (step ->
        value) and user attributes: one executemany per table."""
        if params:
            connection.execute(sqlalchemy.insert(_PARAMS), [
                {"trial_id": trial_id, "param_name": name, "param_value": value,
                 "distribution_json": distributions.distribution_to_json(dist)}
                for name, value, dist in params])
        if reports:
            connection.execute(sqlalchemy.insert(_models.TrialIntermediateValueModel),
                               [intermediate_row(trial_id, s, v) for s, v in reports.items()])
        if user_attrs:  # every attribute in one upsert (Optuna: a read and a write each)
            connection.execute(_attrs_upsert_statement(self.engine.name), [
                {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                for key, value in user_attrs.items()])

    # --- stale trials --------------------------------------------------------------------------

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        interval = self.get_heartbeat_interval()
        last = self._stale_checked.get(study_id)
        if interval is not None and last is not None and time.monotonic() - last < interval:
            return []
        self._stale_checked[study_id] = time.monotonic()
        return super()._get_stale_trial_ids(study_id)

    def check_stale_next_time(self, study_id: int) -> None:
        """The next stale check of the study reads the database, however recent the last."""
        self._stale_checked.pop(study_id, None)


def _numbered_insert(study_id: int, started: datetime) -> sqlalchemy.Insert:
    """INSERT the study's next trial, RUNNING, numbered by how many it has: one statement,
    returning the new trial's id and number (no row when the study does not exist)."""
    study_exists = sqlalchemy.exists().where(_STUDIES.c.study_id == study_id)
    numbered = (sqlalchemy.select(
        sqlalchemy.func.count(_TRIALS.c.trial_id),
        sqlalchemy.literal(study_id),
        sqlalchemy.literal(TrialState.RUNNING, _TRIALS.c.state.type),
        sqlalchemy.literal(started, _TRIALS.c.datetime_start.type),
    ).where(_TRIALS.c.study_id == study_id).having(study_exists))
    return (sqlalchemy.insert(_TRIALS)
            .from_select(["number", "study_id", "state", "datetime_start"], numbered)
            .returning(_TRIALS.c.trial_id, _TRIALS.c.number))


def _unfinished(trial_id: int) -> sqlalchemy.Exists:
    return sqlalchemy.exists().where(_TRIALS.c.trial_id == trial_id,
                                     _TRIALS.c.state.in_(UNFINISHED))


def intermediate_row(trial_id: int, step: int, value: float) -> dict[str, Any]:
    """A row of Optuna's intermediate-values table, stored as Optuna stores it (inf, NaN)."""
    stored, kind = _models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
    return {"trial_id": trial_id, "step": step, "intermediate_value": stored,
            "intermediate_value_type": kind}


@functools.cache
def _attrs_upsert_statement(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (trial, key) DO UPDATE of user attributes, built once: building
    it took 0.7 ms, as long as running it on SQLite."""
    table = _models.TrialUserAttributeModel.__table__
    insert = DIALECT_INSERT[dialect](table)
    return insert.on_conflict_do_update(index_elements=[table.c.trial_id, table.c.key],
                                        set_={"value_json": insert.excluded.value_json})


def _value_row(trial_id: int, objective: int, value: float) -> dict[str, Any]:
    stored, kind = _models.TrialValueModel.value_to_stored_repr(value)
    return {"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind}
