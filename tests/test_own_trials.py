"""A worker's own trials served from memory (hpsearch/own_trials.py): the same answers as a
read from the database, fewer statements, and another process's state change always seen."""

from __future__ import annotations

import math

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from hpsearch.storage import open_storage


def _afresh(url):
    """The database as another process reads it: a storage that holds nothing in memory."""
    return optuna.storages.RDBStorage(url)


def _busy_trial(study):
    """A trial written to as a worker writes: parameters of every kind, reports (infinite and
    NaN too), user attributes that JSON changes (a tuple, integer keys), a system attribute."""
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    trial.suggest_int("depth", 1, 4)
    trial.suggest_categorical("norm", ["none", "batch", None])
    for step, value in enumerate([0.1, math.inf, math.nan, 0.4], start=1):
        trial.report(value, step)
    trial.set_user_attr("shape", (3, 100))
    trial.set_user_attr("by_epoch", {1: 0.5, 2: 0.6})
    study._storage.set_trial_system_attr(trial._trial_id, "note", {"k": [1, 2]})
    return trial


def _same(a, b):
    """FrozenTrials equal, NaN reports counted equal (NaN != NaN)."""
    nan = {k: "nan" if isinstance(v, float) and math.isnan(v) else v
           for k, v in a.intermediate_values.items()}
    other = {k: "nan" if isinstance(v, float) and math.isnan(v) else v
             for k, v in b.intermediate_values.items()}
    return (nan == other and a.params == b.params and a.distributions == b.distributions
            and a.user_attrs == b.user_attrs and a.system_attrs == b.system_attrs
            and a.state == b.state and a.values == b.values and a.number == b.number
            and a.datetime_start == b.datetime_start
            and a.datetime_complete == b.datetime_complete)


def test_own_trials_read_back_as_the_database_holds_them(storage_url):
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, direction="maximize")
    running = _busy_trial(study)
    fresh = _afresh(storage_url)
    assert _same(storage.get_trial(running._trial_id), fresh.get_trial(running._trial_id))
    finished = _busy_trial(study)
    study.tell(finished, 0.9)
    study.enqueue_trial({"lr": 1e-3, "depth": 2, "norm": "batch"}, user_attrs={"baseline": 1})
    queued = study.ask()  # taken from the waiting queue: written by whoever queued it
    queued.suggest_float("lr", 1e-4, 1e-1, log=True)
    queued.set_user_attr("history", [{"epoch": 1}])
    ours = study.get_trials(deepcopy=False)
    theirs = optuna.load_study(study_name=study.study_name, storage=fresh).trials
    assert [t.number for t in ours] == [t.number for t in theirs] == [0, 1, 2]
    assert all(_same(a, b) for a, b in zip(ours, theirs))
    for trial in (running, finished, queued):
        assert _same(storage.get_trial(trial._trial_id), fresh.get_trial(trial._trial_id))


def test_a_trial_failed_by_another_process_is_read_failed(storage_url):
    """Another worker's heartbeat check fails this trial: every read says FAIL at once."""
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, direction="maximize")
    trial = _busy_trial(study)
    study.get_trials()  # Optuna's cache holds it as unfinished
    _afresh(storage_url).set_trial_state_values(trial._trial_id, TrialState.FAIL)
    assert storage.get_trial(trial._trial_id).state == TrialState.FAIL
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL]
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        trial.report(0.5, 9)


def test_an_own_running_trial_is_read_in_one_narrow_query(storage_url):
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, direction="maximize")
    trial = _busy_trial(study)
    statements = []
    sqlalchemy.event.listen(storage.engine, "before_cursor_execute",
                            lambda *args: statements.append(args[2]))
    storage.get_trial(trial._trial_id)
    assert len(statements) == 1 and "trials.state" in statements[0]
    study.get_trials()
    assert len(statements) == 2  # the states of what Optuna's cache asks for, nothing more


def _state_reads(statements: list[str]) -> int:
    """The one-trial state checks among `statements` (not the listings of several trials)."""
    return sum(" ".join(s.split()).startswith("SELECT trials.state FROM") for s in statements)


def test_only_the_creating_asks_read_skips_the_state_check(storage_url, monkeypatch):
    """Optuna's `ask` reads the trial it just created: that read is served as created; every
    later read checks the state, and so does a first read later than JUST_CREATED_S."""
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, direction="maximize")
    statements = []
    sqlalchemy.event.listen(storage.engine, "before_cursor_execute",
                            lambda *args: statements.append(args[2]))
    trial = study.ask()
    assert _state_reads(statements) == 0
    assert storage.get_trial(trial._trial_id).state == TrialState.RUNNING
    assert _state_reads(statements) == 1
    _afresh(storage_url).set_trial_state_values(trial._trial_id, TrialState.FAIL)
    assert storage.get_trial(trial._trial_id).state == TrialState.FAIL
    monkeypatch.setattr("hpsearch.own_trials.JUST_CREATED_S", 0.0)  # read "too late"
    statements.clear()
    study.ask()
    assert _state_reads(statements) == 1


def test_the_copies_handed_out_are_the_callers_own(storage_url):
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, direction="maximize")
    trial = _busy_trial(study)
    copy = storage.get_trial(trial._trial_id)
    copy.user_attrs["shape"].append(7)
    copy.params["depth"] = 99
    assert storage.get_trial(trial._trial_id).user_attrs["shape"] == [3, 100]
    assert storage.get_trial(trial._trial_id).params["depth"] == trial.params["depth"]


def test_a_storage_nobody_reads_through_keeps_few_finished_trials(storage_url, monkeypatch):
    """A proxy's storage finishes every worker's trials: it does not keep them all."""
    monkeypatch.setattr("hpsearch.own_trials.KEEP_FINISHED", 3)
    storage = open_storage(storage_url)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE])
    for _ in range(10):
        trial_id = storage.create_new_trial(study_id)
        storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5])
    assert len(storage._own) == 3
    assert storage.get_trial(trial_id).values == [0.5]
