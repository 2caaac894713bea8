"""Optuna's RDB storage, retried through a database blip.

A PostgreSQL restart takes a few seconds; a worker that reports an epoch, asks whether to
prune, beats its heartbeat or finishes its trial in those seconds gets a connection error.
Optuna raises it, the trial dies with a traceback, and it stays RUNNING until a heartbeat
check fails it. Here every storage call that meets a *transient* error (the connection
refused, reset or lost: SQLAlchemy's OperationalError / InterfaceError, or Optuna's
StorageInternalError wrapping one) is retried with exponential backoff for up to
RETRY_WINDOW_S; a call that still fails then raises one StorageError naming the storage.
Errors in what is written (integrity, bad values) are not retried.

Retrying a write is safe: each RDBStorage call is one transaction, rolled back when it
fails, so a retry repeats it whole. Finishing a trial is the one write whose commit may
have landed before the connection broke: a retry that finds the trial already in the state
it asked for takes that as done.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
import time
from datetime import datetime
from typing import Any, Callable, Iterator

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution
from optuna.storages._rdb import models as _models
from optuna.storages._rdb import storage as _rdb
from optuna.trial import TrialState

from hpsearch import pg_writes
from hpsearch.errors import StorageError
from hpsearch.lean_study_attrs import DIALECT_INSERT
from hpsearch.lean_writes import _TRIALS, intermediate_row
from hpsearch.own_trials import OwnTrialsRDBStorage

# How long (s) a storage call keeps retrying: a restart takes ~3 s, a failover ~30 s.
RETRY_WINDOW_S = float(os.environ.get("HPSEARCH_STORAGE_RETRY_S", 60))
FIRST_WAIT_S = 0.25  # then doubled each time, at most MAX_WAIT_S
MAX_WAIT_S = 5.0
# A server that stops answering without closing its connections (frozen, SIGSTOP, a hung
# host whose kernel still acknowledges) blocks a call for good: TCP keepalives are answered
# and the server's statement timeout never fires. A connection held by one call for longer
# than this (s) is cut from this side, and the call is retried like any lost connection.
# Longer than the server's 60 s statement timeout: a slow but live call is never cut.
CALL_TIMEOUT_S = float(os.environ.get("HPSEARCH_STORAGE_CALL_TIMEOUT_S", 75))

# Every call a worker, the dashboard or a notebook makes to read or write a study.
RETRIED = (
    "create_new_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_all_studies",
    "create_new_trial", "set_trial_param", "get_trial_param", "set_trial_state_values",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials",
    "get_trial_user_attrs", "get_trial_system_attrs", "get_best_trial",
    "record_heartbeat", "_get_stale_trial_ids", "delete_study",
    # What Optuna's cache in front of an RDBStorage (every Study's) calls instead of the
    # public methods: without these a worker asking for its next trial, or the --jobs parent
    # reading progress, fails at the first blip (CI, stop 13).
    "_create_new_trial", "_set_trial_param", "_get_trials", "_get_best_trial_id",
    # hpsearch's own bulk calls (the class below).
    "write_reports", "count_trials", "count_trials_and_last_number", "records_heartbeats",
)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


CONNECTIONS_FIX = ("each worker holds 2 connections, a --jobs parent 2, the dashboard up to 2: "
                   "run fewer workers, raise the server's max_connections, or put "
                   "`hpsearch storage-proxy` between the workers and the server")


def too_many_connections(text: str) -> bool:
    """The server's, a database's or a role's connection limit reached."""
    return "too many clients" in text or "too many connections" in text


# Errors that only pass another on: Optuna wraps every SQLAlchemy error of a call, and a
# session reused after its connection was lost (Optuna re-runs a failed read on the same
# session, taking the error for a query too long) refuses with PendingRollbackError.
WRAPPERS = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.PendingRollbackError)


def is_transient(err: BaseException | None) -> bool:
    """A lost or refused connection, not a problem in what was written."""
    while isinstance(err, WRAPPERS):
        err = err.__cause__ or err.__context__
    if isinstance(err, sqlalchemy.exc.DBAPIError) and err.connection_invalidated:
        return True
    return isinstance(err, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError))


def retry_transient(call: Callable[[], Any], url: str) -> Any:
    """`call()`, retried with backoff while it meets a transient error, for RETRY_WINDOW_S;
    then one StorageError naming `url`."""
    deadline, wait = time.monotonic() + RETRY_WINDOW_S, FIRST_WAIT_S
    while True:
        try:
            return call()
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as err:
            if not is_transient(err):
                raise
            if time.monotonic() + wait > deadline:
                raise _gave_up(url, err) from err
        time.sleep(wait)
        wait = min(2 * wait, MAX_WAIT_S)


def _retrying(method: Callable) -> Callable:
    @functools.wraps(method)
    def call(self, *args: Any, **kwargs: Any) -> Any:
        attempts = []

        def attempt():
            attempts.append(1)
            try:
                with self.watchdog.calling() if self.watchdog else contextlib.nullcontext():
                    return method(self, *args, **kwargs)
            except optuna.exceptions.UpdateFinishedTrialError:
                if len(attempts) > 1 and method.__name__ == "set_trial_state_values":
                    return _finished_already(self, *args, **kwargs)
                raise

        return retry_transient(attempt, self.url)

    return call


def _finished_already(storage, trial_id: int, state, values=None) -> bool:
    """The first attempt's commit landed before its connection broke."""
    if storage.get_trial(trial_id).state == state:
        return True
    raise optuna.exceptions.UpdateFinishedTrialError(f"trial {trial_id} is already finished")


# Setting a parameter twice is harmless (Optuna ignores the second insert of the key).
# Creating a trial is the write a retry can repeat: in the rare case that its commit landed
# and only the reply was lost, a second trial is made and the first stays RUNNING with no
# worker (no heartbeat, no `worker` attribute) until someone fails it.


def _gave_up(url: str, err: BaseException) -> StorageError:
    cause = err.__cause__ or err
    text = str(getattr(cause, "orig", None) or cause).strip().splitlines()
    url = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    first = text[0] if text else type(cause).__name__
    fix = (CONNECTIONS_FIX if too_many_connections(first) else
           "check that the database server is up, then rerun the same command (the trial "
           "left is failed by its heartbeat and queued again)")
    return StorageError(f"storage {url} unreachable for {RETRY_WINDOW_S:.0f} s: {first}; "
                        f"fix: {fix}")


class CallWatchdog:
    """Cuts the PostgreSQL connections of `engine` when a storage call has waited on the
    server for longer than `timeout_s` (see CALL_TIMEOUT_S). Every call attempt is timed
    (`calling`); one daemon thread looks every second. The server answers no one then, so
    every connection of the process is cut: a socket shutdown under the blocked call, which
    fails at once with a lost connection that `retry_transient` retries (reconnecting is
    bounded by the connect timeout) until RETRY_WINDOW_S ends."""

    def __init__(self, engine: sqlalchemy.engine.Engine, timeout_s: float = CALL_TIMEOUT_S):
        self.timeout_s = timeout_s
        self._calls: dict[object, float] = {}  # a running attempt -> when it started
        self._connections: dict[int, Any] = {}  # id -> every open DB-API connection
        sqlalchemy.event.listen(engine, "connect", self._opened)
        sqlalchemy.event.listen(engine, "close", self._closed)
        sqlalchemy.event.listen(engine, "invalidate", self._closed)
        sqlalchemy.event.listen(engine, "checkin", self._opened)  # whatever opened it
        engine.dispose()  # connections opened before (creating the schema) are known now
        threading.Thread(target=self._watch, name="hpsearch storage watchdog",
                         daemon=True).start()

    @contextlib.contextmanager
    def calling(self):
        token = object()
        self._calls[token] = time.monotonic()
        try:
            yield
        finally:
            self._calls.pop(token, None)

    def _opened(self, dbapi_connection, record) -> None:
        if dbapi_connection is not None:
            self._connections[id(dbapi_connection)] = dbapi_connection

    def _closed(self, dbapi_connection, record, *exception) -> None:
        self._connections.pop(id(dbapi_connection), None)

    def _watch(self) -> None:
        while True:
            time.sleep(min(1.0, self.timeout_s / 4))
            now = time.monotonic()
            stuck = [token for token, since in list(self._calls.items())
                     if now - since > self.timeout_s]
            if stuck:
                for token in stuck:
                    self._calls[token] = now  # cut again only after another timeout
                for connection in list(self._connections.values()):
                    _cut(connection)


def _cut(dbapi_connection) -> None:
    """Shut the connection's socket down under whoever is blocked reading it (psycopg)."""
    try:
        fd = dbapi_connection.pgconn.socket
        with socket.socket(fileno=os.dup(fd)) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
    except Exception:  # noqa: BLE001 - closed meanwhile: nothing left to cut
        pass


class ResilientRDBStorage(OwnTrialsRDBStorage):
    """RDBStorage whose calls ride out a database restart (see the module's docstring), with
    the two calls a training trial makes in bulk (hpsearch/reports.py): several epochs'
    reports and attributes in one transaction, and trials counted by state in one number (has
    any trial finished since the pruner last looked; how much of the budget is claimed). The
    trials it runs are kept in memory as written (own_trials.py)."""

    watchdog: CallWatchdog | None = None  # PostgreSQL: storage.open_storage sets one

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: dict[int, list[tuple[str, float, Any]]] = {}  # trial id -> its params
        # trial id -> (steps, user attributes) to store when it finishes (hold_for_finish)
        self._for_finish: dict[int, tuple[dict[int, float], dict[str, Any]]] = {}

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        state.pop("_held", None)
        state.pop("_for_finish", None)
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._held, self._for_finish = {}, {}

    @contextlib.contextmanager
    def params_held(self, trial_id: int) -> Iterator[None]:
        """While entered, the trial's parameters are kept here and stored by its next
        `write_reports`, in that one transaction, instead of one transaction each (Optuna
        stores each as it is sampled). The objective samples a trial's parameters, then
        writes its start facts at once: nothing reads the trial from the database between
        the two (its twin check comes after), so no reader sees it without its parameters.
        A parameter whose earlier distribution this process has not seen goes Optuna's way
        at once (it reads that distribution). Whatever is still held on leaving (sampling
        raised before the write) is stored then, one by one."""
        if not self._lean:
            yield
            return
        self._held[trial_id] = []
        try:
            yield
        finally:
            self._store_one_by_one(trial_id, self._held.pop(trial_id, []))

    def _store_one_by_one(self, trial_id: int, params: list[tuple[str, float, Any]]) -> None:
        """Held parameters stored as they would have been without holding."""
        for name, value, distribution in params:
            store = functools.partial(super()._set_trial_param, trial_id, name, value,
                                      distribution, distribution)
            retry_transient(store, self.url)

    def _set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                         distribution: BaseDistribution,
                         previous_distribution: BaseDistribution | None) -> None:
        held = self._held.get(trial_id)
        if held is None or previous_distribution is None:
            super()._set_trial_param(trial_id, param_name, param_value_internal, distribution,
                                     previous_distribution)
            return
        optuna.distributions.check_distribution_compatibility(previous_distribution,
                                                              distribution)
        held.append((param_name, param_value_internal, distribution))
        self.param_set(trial_id, param_name, param_value_internal, distribution)

    def write_reports(self, trial_id: int, values: dict[int, float],
                      user_attrs: dict[str, Any]) -> None:
        """Intermediate values (step -> value, steps not stored yet) and user attributes of a
        running trial, and the parameters held for it (`params_held`), in one transaction:
        all of them are stored, or none (a blip retries the whole; a retry after a commit
        that landed meets the steps' unique key and is done). A step stored before falls
        back to Optuna's one-by-one upserts."""
        params = list(self._held.get(trial_id, []))  # kept until stored: a retry has them
        try:
            if self._lean:
                self._write_reports_lean(trial_id, params, values, user_attrs)
            else:
                self._write_reports_orm(trial_id, values, user_attrs)
        except sqlalchemy.exc.IntegrityError:
            self._store_one_by_one(trial_id, params)
            with _rdb._create_scoped_session(self.scoped_session, True) as session:
                for step, value in values.items():
                    self._set_trial_intermediate_value_without_commit(session, trial_id, step,
                                                                      value)
                for key, value in user_attrs.items():
                    self._set_trial_attr_without_commit(
                        session, _models.TrialUserAttributeModel, trial_id, key, value)
        del self._held.get(trial_id, [])[:len(params)]
        self.reported(trial_id, values, user_attrs)

    def _write_reports_lean(self, trial_id: int, params: list[tuple[str, float, Any]],
                            values: dict[int, float], user_attrs: dict[str, Any]) -> None:
        """SQLAlchemy Core, no ORM session: the trial's state read as one column, then one
        executemany per table (an ORM session and the trial's object took half the time of
        a 20-epoch trial's last flush, benchmarks/trial_overhead.py); on PostgreSQL the read
        and the writes are one statement (pg_writes.py)."""
        if self.engine.name == "postgresql":
            with self._transaction(one_statement=True) as connection:
                found = connection.execute(pg_writes.REPORTS, pg_writes.reports_parameters(
                    trial_id, params, values, user_attrs)).scalar()
            if found is None:
                raise KeyError(_models.NOT_FOUND_MSG)
            self.check_trial_is_updatable(trial_id, TrialState[found])  # nothing written
            return
        state = _TRIALS.c.state
        with self._transaction() as connection:
            found = connection.execute(
                sqlalchemy.select(state).where(_TRIALS.c.trial_id == trial_id)).scalar()
            if found is None:
                raise KeyError(_models.NOT_FOUND_MSG)
            self.check_trial_is_updatable(trial_id, TrialState(found))
            self._insert_rows(connection, trial_id, params, values, user_attrs)

    def hold_for_finish(self, trial_id: int, values: dict[int, float],
                        user_attrs: dict[str, Any]) -> bool:
        """A running trial's last reports and attributes, stored with its end, in the one
        transaction that finishes it (Optuna's `tell`, which follows the objective's return
        or exception): a trial ends in one transaction instead of two, the last flush's own
        with its read of the state (on PostgreSQL about 2 ms of round trips a trial,
        benchmarks/storage_overhead.py). The finish's guarded UPDATE is the state check.
        Reads of the trial in this process see them at once (own_trials.py). False where the
        finish has no such transaction (other databases take Optuna's path): the caller
        writes them now. If the process dies before the finish, they are lost with the
        trial, which is failed as stale and run again, as with any unflushed report."""
        if not self._lean:
            return False
        held_values, held_attrs = self._for_finish.setdefault(trial_id, ({}, {}))
        held_values.update(values)
        held_attrs.update(user_attrs)
        self.reported(trial_id, values, user_attrs)
        return True

    def _held_for_finish(self, trial_id: int) -> tuple[dict[int, float], dict[str, Any]]:
        return self._for_finish.get(trial_id, ({}, {}))

    def finish_trial(self, trial_id: int, state: TrialState,
                     values: Any) -> datetime | None:
        try:
            finished_at = super().finish_trial(trial_id, state, values)
        except Exception as err:
            if not is_transient(err):  # a transient one is retried whole: it needs them
                self._for_finish.pop(trial_id, None)
            raise
        held = self._for_finish.pop(trial_id, None)
        if finished_at is None and held is not None:  # Optuna's path finishes it: store
            try:                                      # them before, if it is still running
                self.write_reports(trial_id, *held)
            except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
                pass  # finished elsewhere (failed as stale): a flush is refused there too
        return finished_at

    def _forget(self, trial_id: int) -> None:
        super()._forget(trial_id)
        self._for_finish.pop(trial_id, None)

    def _write_reports_orm(self, trial_id: int, values: dict[int, float],
                           user_attrs: dict[str, Any]) -> None:
        """MySQL and the rest: through Optuna's ORM session, attributes one by one."""
        with _rdb._create_scoped_session(self.scoped_session) as session:
            trial = _models.TrialModel.find_or_raise_by_id(trial_id, session)
            self.check_trial_is_updatable(trial_id, trial.state)
            if values:  # one executemany, not an ORM object (and a RETURNING) per row
                session.execute(sqlalchemy.insert(_models.TrialIntermediateValueModel),
                                [intermediate_row(trial_id, s, v) for s, v in values.items()])
            for key, value in user_attrs.items():
                self._set_trial_attr_without_commit(
                    session, _models.TrialUserAttributeModel, trial_id, key, value)

    def count_trials(self, study_id: int, states: tuple[TrialState, ...],
                     number_below: int | None = None, heartbeating: bool = False) -> int:
        """How many trials of the study are in `states` (and numbered below `number_below`;
        with `heartbeating`, only those whose worker records heartbeats, which can be told
        dead): one number read instead of every trial with its history."""
        count = (sqlalchemy.select(sqlalchemy.func.count()).select_from(_TRIALS)
                 .where(_TRIALS.c.study_id == study_id, _TRIALS.c.state.in_(states)))
        if number_below is not None:
            count = count.where(_TRIALS.c.number < number_below)
        if heartbeating:
            beats = _models.TrialHeartbeatModel.__table__
            count = count.where(_TRIALS.c.trial_id.in_(sqlalchemy.select(beats.c.trial_id)))
        with self._one_statement() as connection:  # no ORM session: a third of the time
            return connection.execute(count).scalar_one()

    def count_trials_and_last_number(self, study_id: int, states: tuple[TrialState, ...]
                                     ) -> tuple[int, int]:
        """How many of the study's trials are in `states`, and the highest number of any of
        its trials (-1: none yet), read together in one statement."""
        in_states = sqlalchemy.case((_TRIALS.c.state.in_(states), 1), else_=0)
        query = sqlalchemy.select(
            sqlalchemy.func.coalesce(sqlalchemy.func.sum(in_states), 0),
            sqlalchemy.func.coalesce(sqlalchemy.func.max(_TRIALS.c.number), -1),
        ).where(_TRIALS.c.study_id == study_id)
        with self._one_statement() as connection:
            counted, last_number = connection.execute(query).one()
        return int(counted), int(last_number)

    def record_heartbeat(self, trial_id: int) -> None:
        """The trial's heartbeat at the database's clock, in one upsert (Optuna reads the row,
        then inserts it or reads it again for update, reads the clock and writes it)."""
        upsert = DIALECT_INSERT.get(self.engine.name)  # one INSERT ... ON CONFLICT DO UPDATE
        if upsert is None:
            super().record_heartbeat(trial_id)
            return
        beats = _models.TrialHeartbeatModel.__table__
        now = sqlalchemy.func.current_timestamp()  # the clock stale trials are judged by
        insert = upsert(beats).values(trial_id=trial_id, heartbeat=now)
        with self._one_statement() as connection:
            connection.execute(insert.on_conflict_do_update(index_elements=[beats.c.trial_id],
                                                            set_={"heartbeat": now}))

    def records_heartbeats(self, trial_id: int) -> bool:
        """Whether the trial's worker records heartbeats (so its death can be told)."""
        beats = _models.TrialHeartbeatModel.__table__
        query = sqlalchemy.select(beats.c.trial_id).where(beats.c.trial_id == trial_id)
        with self._one_statement() as connection:
            return connection.execute(query.limit(1)).first() is not None


for _name in RETRIED:
    setattr(ResilientRDBStorage, _name, _retrying(getattr(ResilientRDBStorage, _name)))
