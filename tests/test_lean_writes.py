"""A trial's writes in fewer statements (hpsearch/lean_writes.py): stored exactly as Optuna's
ORM stores them, numbered without a gap or a repeat by workers creating trials at once, and
refused as Optuna refuses them."""

from __future__ import annotations

import math
import multiprocessing

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from hpsearch import storage as hp_storage
from hpsearch.lean_writes import _VALUES
from hpsearch.reports import EpochReports
from hpsearch.storage import open_storage


def _statements(storage) -> list[str]:
    """The first word of every SQL statement the storage sends from now on."""
    sent: list[str] = []
    sqlalchemy.event.listen(storage.engine, "before_cursor_execute",
                            lambda *args: sent.append(args[2].split()[0]))
    return sent


def _trial_with_params(study):
    trial = study.ask()
    _suggest_all(trial)
    return trial


def test_created_given_params_and_finished_as_optunas_orm_stores_them(storage_url):
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    _trial_with_params(study)  # the parameters' first trial: Optuna's path
    trial = _trial_with_params(study)  # their distributions known: the lean path
    study.tell(trial, [math.inf, -0.25])
    stored = optuna.storages.RDBStorage(storage_url).get_trial(trial._trial_id)  # afresh
    assert (stored.number, stored.state, stored.values) == (1, TrialState.COMPLETE,
                                                            [math.inf, -0.25])
    assert stored.params == trial.params and stored.distributions == trial.distributions
    assert stored.datetime_start == trial.datetime_start
    assert stored.datetime_complete == storage.get_trial(trial._trial_id).datetime_complete


def _flush(storage) -> list[str]:
    """A flush's statements: the trial's state read, then one INSERT a table written; on
    PostgreSQL all of them one statement (pg_writes.py)."""
    return ["WITH"] if storage.engine.name == "postgresql" else ["SELECT", "INSERT", "INSERT"]


def test_each_write_takes_the_fewest_statements(storage_url):
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage)
    study.tell(_trial_with_params(study), 0.5)
    sent = _statements(storage)
    trial = study._storage.create_new_trial(study._study_id)
    created, sent[:] = list(sent), []
    distribution = optuna.distributions.FloatDistribution(0, 1)
    storage._set_trial_param(trial, "x", 0.5, distribution, distribution)
    param, sent[:] = list(sent), []
    storage.set_trial_state_values(trial, TrialState.COMPLETE, [1.0])
    postgres = storage.engine.name == "postgresql"
    lock = ["SELECT"] if postgres else []  # the study's row lock
    finish = ["WITH"] if postgres else ["UPDATE", "INSERT"]  # pg_writes.py: one statement
    assert (created, param, sent) == (lock + ["INSERT"], ["INSERT"], finish)


def test_finished_and_missing_trials_are_refused_as_optuna_refuses_them(storage_url):
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage)
    done = _trial_with_params(study)
    study.tell(done, 0.5)
    distribution = optuna.distributions.FloatDistribution(0, 1)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_state_values(done._trial_id, TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage._set_trial_param(done._trial_id, "x", 0.5, distribution, distribution)
    with pytest.raises(KeyError):
        storage.create_new_trial(study._study_id + 1)
    stored = optuna.storages.RDBStorage(storage_url).get_trial(done._trial_id)
    assert (stored.state, stored.values, "x" in stored.params) == (TrialState.COMPLETE,
                                                                   [0.5], False)
    assert len(optuna.storages.RDBStorage(storage_url).get_all_trials(study._study_id)) == 1


def test_a_flush_of_reports_is_three_statements_stored_as_optuna_stores_them(storage_url):
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    sent = _statements(storage)
    storage.write_reports(trial._trial_id, {1: 0.25, 2: math.inf},
                          {"history": [{"epoch": 1}], "key": (1, 2)})
    assert sent == _flush(storage)  # the trial's state, values, attributes
    sent[:] = []
    storage.write_reports(trial._trial_id, {2: 0.5, 3: 0.75}, {"key": "again"})  # 2: stored
    stored = optuna.storages.RDBStorage(storage_url).get_trial(trial._trial_id)
    assert stored.intermediate_values == {1: 0.25, 2: 0.5, 3: 0.75}
    assert stored.user_attrs == {"history": [{"epoch": 1}], "key": "again"}


def test_a_flush_for_a_finished_or_missing_trial_is_refused_and_stores_nothing(storage_url):
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage)
    done = study.ask()
    study.tell(done, 0.5)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.write_reports(done._trial_id, {1: 0.25}, {"late": True})
    with pytest.raises(KeyError):
        storage.write_reports(done._trial_id + 1, {1: 0.25}, {"late": True})
    stored = optuna.storages.RDBStorage(storage_url).get_trial(done._trial_id)
    assert (stored.intermediate_values, stored.user_attrs) == ({}, {})


def test_held_parameters_are_stored_with_the_next_flush_in_its_transaction(storage_url):
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage)
    study.tell(_trial_with_params(study), 0.5)  # the distributions known from now on
    trial = study.ask()
    sent = _statements(storage)
    with storage.params_held(trial._trial_id):
        _suggest_all(trial)
        assert "INSERT" not in sent and trial.params["depth"] in range(1, 5)  # the sampler reads
        sent[:] = []
        storage.write_reports(trial._trial_id, {}, {"config": {"depth": 2}})
        assert sent == _flush(storage)  # the state, the params, the attribute
        sent[:] = []
    assert sent == []  # nothing left to store on leaving
    stored = optuna.storages.RDBStorage(storage_url).get_trial(trial._trial_id)
    assert (stored.params, stored.distributions) == (trial.params, trial.distributions)
    assert study._storage.get_trial(trial._trial_id).params == trial.params  # own memory


def test_held_parameters_are_stored_when_the_flush_falls_back_to_optunas_path(storage_url):
    """A step stored before makes the flush's insert fail whole: the held parameters are
    stored one by one with the reports, none lost, none twice."""
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage)
    study.tell(_trial_with_params(study), 0.5)
    trial = study.ask()
    storage.write_reports(trial._trial_id, {1: 0.25}, {})
    with storage.params_held(trial._trial_id):
        _suggest_all(trial)
        storage.write_reports(trial._trial_id, {1: 0.5, 2: 0.75}, {"start": True})
    stored = optuna.storages.RDBStorage(storage_url).get_trial(trial._trial_id)
    assert (stored.params, stored.distributions) == (trial.params, trial.distributions)
    assert stored.intermediate_values == {1: 0.5, 2: 0.75}
    assert stored.user_attrs == {"start": True}


def test_held_parameters_never_flushed_are_stored_on_leaving(storage_url):
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage)
    first = study.ask()
    with pytest.raises(RuntimeError), storage.params_held(first._trial_id):
        first.suggest_float("lr", 1e-4, 1e-1, log=True)  # first seen: stored at once
        sent = _statements(storage)
        first.suggest_int("depth", 1, 4)  # first seen too
        assert sent != []
        raise RuntimeError("the user's space raised while sampling")
    study.tell(first, 0.5)
    second = study.ask()
    with storage.params_held(second._trial_id):
        _suggest_all(second)
    stored = optuna.storages.RDBStorage(storage_url).get_trial(second._trial_id)
    assert stored.params == second.params and set(stored.params) == {"lr", "depth", "norm"}


def _suggest_all(trial):
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    trial.suggest_int("depth", 1, 4)
    trial.suggest_categorical("norm", ["none", "batch", None])


def test_a_queued_trial_and_a_second_value_take_optunas_path(storage_url):
    """A WAITING trial finished without running, and a trial whose value is stored already
    (a retry): Optuna's ORM path handles both as it always did."""
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage)
    study.enqueue_trial({"x": 0.5})
    waiting = study.get_trials(states=(TrialState.WAITING,))[0]
    assert storage.set_trial_state_values(waiting._trial_id, TrialState.FAIL)
    trial = study.ask()
    with storage.engine.begin() as connection:  # a value stored, the state not yet
        connection.execute(sqlalchemy.insert(optuna.storages._rdb.models.TrialValueModel),
                           {"trial_id": trial._trial_id, "objective": 0, "value": 0.1,
                            "value_type": "FINITE"})
    assert storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [0.9])
    afresh = optuna.storages.RDBStorage(storage_url)
    assert afresh.get_trial(waiting._trial_id).state == TrialState.FAIL
    assert afresh.get_trial(trial._trial_id).values == [0.9]


def _create(url: str, study_name: str, count: int, start, numbers) -> None:
    storage = open_storage(url)
    study = optuna.load_study(study_name=study_name, storage=storage)
    start.wait()
    numbers.put([study.ask().number for _ in range(count)])


def test_workers_creating_trials_at_once_get_every_number_once(storage_url):
    """The number is counted in the insert itself: four processes, 25 trials each."""
    study = optuna.create_study(storage=open_storage(storage_url))
    context = multiprocessing.get_context("spawn")
    start, numbers = context.Barrier(4), context.Queue()
    workers = [context.Process(target=_create,
                               args=(storage_url, study.study_name, 25, start, numbers))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    got = sorted(n for _ in workers for n in numbers.get(timeout=120))
    for worker in workers:
        worker.join(timeout=60)
    assert got == list(range(100))
    stored = optuna.storages.RDBStorage(storage_url).get_all_trials(study._study_id)
    assert sorted(t.number for t in stored) == list(range(100))


def test_optunas_check_before_each_trial_reads_once_per_heartbeat_interval(tmp_path):
    """A trial is stale after GRACE_S: Optuna's check before every trial is spaced out to
    one per heartbeat interval (30 s), while the check every run makes first always reads."""
    storage = open_storage(f"sqlite:///{tmp_path / 'stale.db'}")
    study = optuna.create_study(storage=storage)
    sent: list[str] = []
    sqlalchemy.event.listen(storage.engine, "before_cursor_execute",
                            lambda *args: sent.append(args[2]))

    def stale_checks() -> int:  # Optuna's check reads the database's clock first
        return sum(s.upper().startswith("SELECT CURRENT_TIMESTAMP") for s in sent)

    study.optimize(lambda trial: 1.0, n_trials=10)
    assert stale_checks() == 1  # before the first trial only
    hp_storage.fail_stale_trials(study)
    assert stale_checks() == 2  # read, though the last check was a moment ago


def test_of_two_workers_starting_one_queued_trial_at_once_exactly_one_gets_it(tmp_path):
    """Two `hpsearch protocol` processes ran the same queued grid step: on SQLite Optuna reads
    the trial's state, then writes RUNNING, and the other worker's start fitted in between
    (the second then failed with "Cannot tell a COMPLETE trial"). Here the other worker starts
    it just before this one's write reaches the database."""
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    storage = open_storage(url)
    study = optuna.create_study(storage=storage)
    study.enqueue_trial({"x": 0.5})
    queued = study.get_trials(states=(TrialState.WAITING,))[0]._trial_id
    other = optuna.storages.RDBStorage(url)
    got = {}

    def other_worker_first(conn, cursor, statement, *args):
        if statement.startswith("UPDATE") and "other" not in got:
            got["other"] = other.set_trial_state_values(queued, TrialState.RUNNING)

    sqlalchemy.event.listen(storage.engine, "before_cursor_execute", other_worker_first)
    got["this"] = storage.set_trial_state_values(queued, TrialState.RUNNING)
    assert got == {"other": True, "this": False}


def _held_for_the_finish(study):
    """A running trial whose last reports and attributes the objective held for its end."""
    trial = study.ask()
    reports = EpochReports(trial, flush_s=3600)
    for step in (1, 2, 3):
        reports.set_user_attr("history", [{"epoch": e} for e in range(1, step + 1)])
        reports.report(step, step / 4)
    reports.flush(last=True)
    return trial


@pytest.mark.parametrize("state", [TrialState.COMPLETE, TrialState.PRUNED])
def test_a_trials_last_reports_are_stored_by_the_transaction_that_finishes_it(storage_url,
                                                                               state):
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, direction="maximize")
    sent = _statements(storage)
    trial = _held_for_the_finish(study)
    sent[:] = sent[sent.index("INSERT") + 1:]  # after the trial's creation: nothing written
    assert "INSERT" not in sent and "UPDATE" not in sent
    # This process reads them at once: a pruned trial's value is its last report.
    assert study._storage.get_trial(trial._trial_id).intermediate_values == {
        1: 0.25, 2: 0.5, 3: 0.75}
    sent[:] = []
    study.tell(trial, 0.75 if state == TrialState.COMPLETE else None, state=state)
    # The guarded UPDATE (the state check), the steps, the attributes, the value: one
    # transaction (on PostgreSQL one statement), no read of the state before it.
    assert [s for s in sent if s in ("UPDATE", "INSERT", "WITH")] == (
        ["WITH"] if storage.engine.name == "postgresql" else ["UPDATE", "INSERT", "INSERT",
                                                              "INSERT"])
    stored = optuna.storages.RDBStorage(storage_url).get_trial(trial._trial_id)
    assert (stored.state, stored.value) == (state, 0.75)
    assert stored.intermediate_values == {1: 0.25, 2: 0.5, 3: 0.75}
    assert len(stored.user_attrs["history"]) == 3
    assert storage._for_finish == {}


def test_last_reports_of_a_trial_failed_elsewhere_are_refused_and_dropped(storage_url):
    """Another process failed the trial (its heartbeat judged it dead) after the objective
    held its last reports: the tell is refused as Optuna refuses it, nothing is written to
    the failed trial, and nothing is kept for it."""
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, direction="maximize")
    trial = _held_for_the_finish(study)
    optuna.storages.RDBStorage(storage_url).set_trial_state_values(trial._trial_id,
                                                                   TrialState.FAIL)
    with pytest.raises(ValueError, match="Cannot tell a FAIL trial"):
        study.tell(trial, 0.75)
    stored = optuna.storages.RDBStorage(storage_url).get_trial(trial._trial_id)
    assert (stored.state, stored.intermediate_values, stored.user_attrs) == (
        TrialState.FAIL, {}, {})
    assert storage._for_finish == {}


def test_last_reports_are_stored_when_the_finish_falls_back_to_optunas_path(storage_url):
    """A value stored before (a guard of the lean finish) makes its transaction fail whole:
    the held reports are written on their own, then Optuna's path finishes the trial."""
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, direction="maximize")
    trial = _held_for_the_finish(study)
    with storage.engine.begin() as connection:
        connection.execute(sqlalchemy.insert(_VALUES), [
            {"trial_id": trial._trial_id, "objective": 0, "value": 0.1, "value_type": "FINITE"}])
    study.tell(trial, 0.75)
    stored = optuna.storages.RDBStorage(storage_url).get_trial(trial._trial_id)
    assert (stored.state, stored.value) == (TrialState.COMPLETE, 0.75)
    assert stored.intermediate_values == {1: 0.25, 2: 0.5, 3: 0.75}
    assert len(stored.user_attrs["history"]) == 3


def test_reports_with_no_finite_value_are_stored_as_optuna_stores_them(storage_url):
    """Only NaN and infinities: every stored value NULL (on PostgreSQL an array of NULLs
    whose type the statement gives, pg_writes.py), the kind saying which."""
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    storage.write_reports(trial._trial_id, {1: math.nan, 2: math.inf}, {})
    assert storage.hold_for_finish(trial._trial_id, {3: -math.inf}, {"reason": None})
    storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [math.inf])
    stored = optuna.storages.RDBStorage(storage_url).get_trial(trial._trial_id)
    assert math.isnan(stored.intermediate_values[1])
    assert {k: v for k, v in stored.intermediate_values.items() if k > 1} == {
        2: math.inf, 3: -math.inf}
    assert (stored.state, stored.values, stored.user_attrs) == (TrialState.COMPLETE,
                                                                [math.inf], {"reason": None})
