"""Every storage call a study makes rides out a lost connection, on any back end.

The faults are injected under SQLAlchemy (the driver "loses" the connection on chosen
statements), so these run without a server; tests/test_database_faults.py restarts a real
PostgreSQL under workers.
"""

from __future__ import annotations

import inspect
import re

import optuna
import pytest
import sqlalchemy
from optuna.storages import _cached_storage
from optuna.trial import TrialState

from hpsearch import resilient_storage
from hpsearch.reports import EpochReports
from hpsearch.storage import open_storage

# What the cache asks of its back end that never touches the database.
NO_DATABASE = {"get_heartbeat_interval", "get_heartbeat_stale_trial_callback"}


def test_every_database_call_of_optunas_cache_is_retried():
    """A Study wraps the storage in Optuna's cache, which calls some private methods of the
    RDBStorage; one left out here fails a worker at the first database blip (CI, stop 13)."""
    source = inspect.getsource(_cached_storage._CachedStorage)
    called = set(re.findall(r"self\._backend\.(\w+)\(", source))
    assert called - NO_DATABASE - set(resilient_storage.RETRIED) == set()


@pytest.fixture
def flaky(tmp_path, monkeypatch):
    """(storage, fail): fail(pattern, times) makes the next `times` statements matching the
    regex `pattern` raise the error a dropped connection raises."""
    monkeypatch.setattr(resilient_storage, "FIRST_WAIT_S", 0.01)
    storage = open_storage(f"sqlite:///{tmp_path / 'flaky.db'}")
    plan = {"pattern": None, "left": 0, "failed": 0}

    @sqlalchemy.event.listens_for(storage.engine, "before_cursor_execute")
    def drop(conn, cursor, statement, *_):
        if plan["left"] and re.search(plan["pattern"], statement):
            plan["left"] -= 1
            plan["failed"] += 1
            conn.invalidate()  # as a lost connection does: the open transaction is void
            raise sqlalchemy.exc.OperationalError(statement, {}, ConnectionError("server closed"))

    def fail(pattern: str, times: int = 1) -> dict:
        plan.update(pattern=pattern, left=times, failed=0)
        return plan

    return storage, fail


@pytest.mark.parametrize("pattern", [
    r"^INSERT INTO trials ",          # asking for a trial (_create_new_trial)
    r"^INSERT INTO trial_params ",    # suggesting a value (_set_trial_param)
    r"^INSERT INTO trial_intermediate_values",  # reporting an epoch
    r"^UPDATE trials SET state",      # finishing a trial
])
def test_a_study_loop_survives_a_dropped_connection_at_each_write(flaky, pattern):
    storage, fail = flaky
    study = optuna.create_study(storage=storage, study_name="s")
    plan = fail(pattern, times=2)

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        trial.report(x, 1)
        return x

    study.optimize(objective, n_trials=3)
    assert plan["failed"] == 2  # the faults happened and were ridden out
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(t.intermediate_values == {1: t.params["x"]} for t in trials)


@pytest.mark.parametrize("pattern", [r"^UPDATE trials SET state",
                                     r"^INSERT INTO trial_intermediate_values",
                                     r"^INSERT INTO trial_values"])
def test_a_finish_that_stores_the_last_reports_is_retried_whole(flaky, pattern):
    """The objective held its last reports for the finish (reports.py): a connection lost
    anywhere in that transaction voids all of it, and the retry stores all of it."""
    storage, fail = flaky
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    reports = EpochReports(trial, flush_s=3600)
    reports.report(1, 0.5)
    reports.set_user_attr("criteria", {"best_val_acc": 0.5})
    reports.flush(last=True)
    plan = fail(pattern, times=1)
    study.tell(trial, 0.5)
    assert plan["failed"] == 1
    stored = optuna.storages.RDBStorage(storage.url).get_trial(trial._trial_id)
    assert (stored.state, stored.value, stored.intermediate_values) == (
        TrialState.COMPLETE, 0.5, {1: 0.5})
    assert stored.user_attrs == {"criteria": {"best_val_acc": 0.5}}


def test_reading_progress_survives_a_dropped_connection(flaky):
    """The --jobs parent reads every trial (the cache's _get_trials) each poll."""
    storage, fail = flaky
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    reader = optuna.load_study(study_name="s", storage=storage)
    plan = fail(r"(?s)^SELECT .*FROM trials\b", times=3)
    assert len(reader.get_trials()) == 2
    assert reader.best_trial.number in (0, 1)
    assert plan["failed"] == 3


def test_a_connection_lost_while_loading_a_trials_values_is_retried(flaky):
    """Optuna takes an OperationalError in the middle of reading trials for a query too long
    for the database and re-runs it on the same session, whose transaction the lost
    connection voided: a PendingRollbackError, caused by the lost connection (CI, stop 18)."""
    storage, fail = flaky
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    reader = optuna.load_study(study_name="s", storage=storage)
    plan = fail(r"(?s)^SELECT .*FROM trial_params\b", times=1)
    assert [t.params.keys() for t in reader.get_trials()] == [{"x"}, {"x"}]
    assert plan["failed"] == 1


@pytest.mark.parametrize("method", ["set_trial_state_values", "_set_trial_param"])
def test_a_retried_write_whose_first_commit_landed_is_taken_as_done(flaky, monkeypatch, method):
    """The commit landed, the reply was lost: the retry finds the work done, no error."""
    storage, _ = flaky
    study = optuna.create_study(storage=storage, study_name="s")
    trial_id = study.ask()._trial_id
    original, attempts = getattr(optuna.storages.RDBStorage, method), []

    def lands_then_drops(self, *args):
        attempts.append(1)
        result = original(self, *args)
        if len(attempts) == 1:
            raise sqlalchemy.exc.OperationalError("COMMIT", {}, ConnectionError("reply lost"))
        return result

    lands_then_drops.__name__ = method
    monkeypatch.setattr(resilient_storage.ResilientRDBStorage, method,
                        resilient_storage._retrying(lands_then_drops))
    if method == "_set_trial_param":
        distribution = optuna.distributions.FloatDistribution(0, 1)
        storage._set_trial_param(trial_id, "x", 0.5, distribution, None)
        assert storage.get_trial_param(trial_id, "x") == 0.5
    else:
        assert storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [1.0])
        assert storage.get_trial(trial_id).state == TrialState.COMPLETE
    assert len(attempts) == 2


def test_a_heartbeat_is_one_statement_and_judged_as_optunas(storage_url, monkeypatch):
    """The upserted heartbeat is what Optuna's stale check reads: fresh, the trial is alive;
    older than the grace period, it is stale."""
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    statements = []
    sqlalchemy.event.listen(storage.engine, "before_cursor_execute",
                            lambda *args: statements.append(args[2]))
    storage.record_heartbeat(trial._trial_id)
    storage.record_heartbeat(trial._trial_id)  # the second updates the first
    assert [s.split()[0] for s in statements] == ["INSERT", "INSERT"]
    assert storage._get_stale_trial_ids(study._study_id) == []
    beats = sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = :old")
    with storage.engine.begin() as connection:
        connection.execute(beats, {"old": "2000-01-01 00:00:00"})
        rows = connection.execute(sqlalchemy.text("SELECT count(*) FROM trial_heartbeats"))
        assert rows.scalar_one() == 1
    storage.check_stale_next_time(study._study_id)  # checked a moment ago: read again
    assert storage._get_stale_trial_ids(study._study_id) == [trial._trial_id]


@pytest.mark.postgres
def test_postgresql_sessions_time_out_statements_and_commit_without_waiting_for_the_disk(
        postgres_url):
    """hpsearch's sessions: a 60 s statement timeout (a frozen server never hangs a worker)
    and synchronous_commit off (a commit does not wait for the disk: SQLite's durability);
    the URL's own `options` come last, so a user can turn durable commits back on."""
    def settings(url: str) -> tuple[str, str]:
        engine = open_storage(url).engine
        with engine.connect() as connection:
            return tuple(connection.exec_driver_sql(f"SHOW {name}").scalar_one()
                         for name in ("statement_timeout", "synchronous_commit"))

    assert settings(postgres_url) == ("1min", "off")
    durable = sqlalchemy.engine.make_url(postgres_url).update_query_dict(
        {"options": "-c synchronous_commit=on"}).render_as_string(hide_password=False)
    assert settings(durable) == ("1min", "on")


@pytest.mark.parametrize("query, own", [
    ("", ""),
    ("?options=-c%20synchronous_commit%3Don", " -c synchronous_commit=on"),
    ("?options=-c%20a%3D1&options=-c%20b%3D2", " -c a=1 -c b=2"),  # given twice: both, in order
])
def test_a_urls_own_session_options_come_after_hpsearchs(query, own):
    """libpq applies `-c` settings in order, the last one winning: the URL's own options
    must follow hpsearch's for a user to turn one back (the server test above)."""
    from hpsearch import storage

    url = f"postgresql+psycopg://u:p@127.0.0.1:5432/db{query}"
    assert storage._engine_kwargs(url)["connect_args"]["options"] == (
        storage.PG_SESSION_OPTIONS + own)
