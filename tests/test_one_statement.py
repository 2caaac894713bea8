"""Calls that send one SQL statement commit it by itself on PostgreSQL, without a transaction
around it (hpsearch/lean_study_attrs.py, `_one_statement`); calls that send several still
send them in one transaction, also on a pooled connection an autocommitted call used before."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from psycopg.pq import TransactionStatus

from hpsearch.storage import open_storage

pytestmark = pytest.mark.postgres


def _driver_states(storage) -> list[tuple[str, str]]:
    """(each statement sent, whether the driver's connection was inside a transaction right
    after it): INTRANS where a BEGIN preceded it, IDLE where it committed by itself."""
    seen: list[tuple[str, str]] = []

    def after(connection, cursor, statement, *args) -> None:
        status = connection.connection.dbapi_connection.info.transaction_status
        seen.append((" ".join(statement.split()), TransactionStatus(status).name))

    import sqlalchemy

    sqlalchemy.event.listen(storage.engine, "after_cursor_execute", after)
    return seen


def _running_trial(storage) -> tuple[optuna.Study, int]:
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    return study, trial._trial_id


def test_one_statement_calls_open_no_transaction(postgres_url):
    storage = open_storage(postgres_url)
    study, trial_id = _running_trial(storage)
    study_id = study._study_id
    seen = _driver_states(storage)
    storage.get_trial(trial_id)  # this worker's own trial: its state read back
    storage.set_study_user_attr(study_id, "choice", {"trial": 0})
    assert storage.get_study_user_attrs(study_id) == {"choice": {"trial": 0}}
    assert storage.count_trials(study_id, (TrialState.RUNNING,)) == 1
    assert storage.count_trials_and_last_number(study_id, (TrialState.COMPLETE,)) == (0, 0)
    storage.record_heartbeat(trial_id)
    assert storage.records_heartbeats(trial_id)
    assert len(seen) >= 7
    assert {state for _, state in seen} == {"IDLE"}, seen
    # committed by themselves: another connection sees the writes at once
    plain = optuna.storages.RDBStorage(postgres_url)
    assert plain.get_study_user_attrs(study_id) == {"choice": {"trial": 0}}


def test_several_statements_still_share_one_transaction(postgres_url):
    storage = open_storage(postgres_url)
    study, trial_id = _running_trial(storage)
    for _ in range(storage.engine.pool.size()):  # every pooled connection autocommitted once
        storage.get_trial(trial_id)              # (the pool hands them out in turn)
    seen = _driver_states(storage)
    study.ask()  # the study's row locked, then the trial inserted (lean_writes.py)
    creation = [state for statement, state in seen
                if statement.endswith("FOR UPDATE") or statement.startswith("INSERT")]
    assert creation == ["INTRANS", "INTRANS"], seen
