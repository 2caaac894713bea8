"""`hpsearch run --jobs N`: worker processes share one study's budget through storage."""

from __future__ import annotations

import optuna
import sqlalchemy
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from hpsearch.cli import cli

STUDY = """\
base: {dataset: digits, epochs: 2, batch_size: 64, width: 32}
objective: {metric: val_acc}
sampler: {name: random, seed: 0}
pruner: {name: none}
trials: 6
space:
  lr: {type: float, low: 1e-4, high: 1e-2, log: true}
"""


def test_two_workers_share_the_budget_without_repeating_trials(write_study, studies_dir, tmp_path):
    write_study("shared", STUDY.replace("epochs: 2", "epochs: 25"))  # seconds a trial: both get some
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(cli, ["run", "--study", "shared", "--storage", url, "--jobs", "2",
                                      "--devices", "cpu", "--studies-dir", str(studies_dir)])
    assert result.exit_code == 0, result.output
    trials = optuna.load_study(study_name="shared", storage=url).get_trials()
    trained = [t for t in trials if not t.user_attrs.get("over_budget")]
    assert [t.state for t in trained] == [TrialState.COMPLETE] * 6  # the budget, exactly
    assert len({t.user_attrs["worker"] for t in trained}) == 2  # both processes trained
    assert len({t.params["lr"] for t in trained}) == 6  # seeds differ per worker
    assert "shared in " in result.output and "complete" in result.output


def test_bad_input_fails_once_before_any_worker_starts(write_study, studies_dir, tmp_path):
    write_study("shared", STUDY)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(cli, ["run", "--study", "shared", "--storage", url, "--jobs", "3",
                                      "--set", "lrr=1", "--studies-dir", str(studies_dir)])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --set lrr=1: unknown setting `lrr`; fix: did you mean lr?"
    assert not (tmp_path / "x.db").exists()


def test_cpu_workers_share_the_cores_out(monkeypatch):
    from hpsearch import workers

    monkeypatch.delenv(workers.THREADS_ENV, raising=False)
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: set(range(16)))
    assert [workers.cpu_threads(jobs) for jobs in (1, 2, 4, 32)] == [16, 8, 4, 1]
    monkeypatch.setenv(workers.THREADS_ENV, "3")
    assert workers.cpu_threads(4) == 3


@pytest.mark.parametrize("jobs", [3])
def test_the_budget_is_exact_however_many_workers_ask_at_once(write_study, studies_dir,
                                                               storage_url, jobs):
    """Optuna's own count overshoots by up to jobs - 1; each trial here claims a slot first
    (trial numbers order the claims), and one created after the last slot ends at once."""
    write_study("exact", STUDY.replace("epochs: 2", "epochs: 1"))
    result = CliRunner().invoke(cli, ["run", "--study", "exact", "--storage", storage_url,
                                      "--jobs", str(jobs), "--trials", "12", "--devices", "cpu",
                                      "--studies-dir", str(studies_dir)])
    assert result.exit_code == 0, result.output
    trials = optuna.load_study(study_name="exact", storage=storage_url).get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 12
    extra = [t for t in trials if t not in finished]
    assert all(t.state == TrialState.FAIL and t.user_attrs["over_budget"] for t in extra)
    assert all("history" not in t.user_attrs for t in extra)  # ended before training


def test_grid_points_run_once_each_under_many_workers(write_study, studies_dir, tmp_path):
    grid = STUDY.replace("sampler: {name: random, seed: 0}", "sampler: {name: grid}").replace(
        "  lr: {type: float, low: 1e-4, high: 1e-2, log: true}", "  lr: {values: [3e-4, 1e-3, 3e-3]}")
    write_study("grid", grid.replace("trials: 6\n", ""))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(cli, ["run", "--study", "grid", "--storage", url, "--jobs", "4",
                                      "--trials", "12", "--devices", "cpu",
                                      "--studies-dir", str(studies_dir)])
    assert result.exit_code == 0, result.output
    trials = optuna.load_study(study_name="grid", storage=url).get_trials()
    trained = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["lr"] for t in trained) == [3e-4, 1e-3, 3e-3]  # each point once
    assert all(t.user_attrs.get("over_budget") for t in trials if t not in trained)


def test_a_point_another_worker_is_training_is_not_trained_twice(write_study, studies_dir, tmp_path):
    """Workers started apart on an empty study (two terminals, compose replicas) get the same
    sampler seed. One that samples what another worker is training ends that trial at once
    and reseeds; on a space the others hold entirely it trains anyway after 3 such trials."""
    from hpsearch.runner import run_study

    write_study("apart", STUDY.replace("  lr: {type: float, low: 1e-4, high: 1e-2, log: true}",
                                       "  lr: {values: [0.001]}").replace("trials: 6", "trials: 2"))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    run_study("apart", storage=url, studies_dir=studies_dir, trials=0)  # creates the study
    study = optuna.load_study(study_name="apart", storage=url)
    study.enqueue_trial({"lr": 0.001}, user_attrs={"worker": "otherhost:1 cuda:0"})
    elsewhere = study.ask()  # RUNNING on the other machine, training lr=0.001
    elsewhere.suggest_categorical("lr", [0.001])
    run_study("apart", storage=url, studies_dir=studies_dir)  # one slot left: 2 less the other
    trials = optuna.load_study(study_name="apart", storage=url).get_trials()
    twins = [t for t in trials if "twin_of" in t.user_attrs]
    assert [t.user_attrs["twin_of"] for t in twins] == [elsewhere.number] * 3
    assert all(t.state == TrialState.FAIL and "history" not in t.user_attrs for t in twins)
    (trained,) = [t for t in trials if t.state == TrialState.COMPLETE]
    assert trained.number > twins[-1].number and "history" in trained.user_attrs


def _claim_counts(sent: list[str]) -> int:
    """Claims counted for a new trial (objective.claims_before: trials numbered below it)."""
    return sum(1 for sql in sent if sql.startswith("SELECT count(") and "trials.number <" in sql)


def test_a_lone_worker_counts_the_claims_once_a_trial(write_study, studies_dir, tmp_path):
    """After each trial the runner counts the claimed slots; the next trial's claim reuses
    that count while no other trial was created in between: only the run's first trial
    counts for itself."""
    from sqlalchemy.engine import Engine

    from hpsearch.runner import run_study

    write_study("lone", STUDY.replace("epochs: 2", "epochs: 1"))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    run_study("lone", storage=url, studies_dir=studies_dir, trials=0)
    sent: list[str] = []
    listen = lambda *args: sent.append(" ".join(args[2].split()))  # noqa: E731
    sqlalchemy.event.listen(Engine, "before_cursor_execute", listen)
    try:
        run_study("lone", storage=url, studies_dir=studies_dir, trials=4)
    finally:
        sqlalchemy.event.remove(Engine, "before_cursor_execute", listen)
    trials = optuna.load_study(study_name="lone", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert _claim_counts(sent) == 1


def test_a_trial_created_elsewhere_after_the_count_makes_the_claim_count_again(
        write_study, studies_dir, tmp_path, monkeypatch):
    """Another worker takes the last slot between this worker's count and its next trial:
    the next trial's number does not follow the counted ones, so it counts again, finds the
    budget taken and ends at once instead of training a third trial on a budget of two."""
    from hpsearch import runner
    from hpsearch.runner import run_study

    write_study("raced", STUDY.replace("epochs: 2", "epochs: 1"))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    run_study("raced", storage=url, studies_dir=studies_dir, trials=0)
    elsewhere = optuna.load_study(study_name="raced", storage=optuna.storages.RDBStorage(url))
    counted = runner.count_trials_and_last_number

    def count_then_another_worker_asks(study, states):
        result = counted(study, states)
        if len(elsewhere.get_trials(deepcopy=False)) == 1:
            elsewhere.ask()  # RUNNING on another machine: it holds a slot
        return result

    monkeypatch.setattr(runner, "count_trials_and_last_number", count_then_another_worker_asks)
    monkeypatch.setattr(runner, "FIRST_HEARTBEAT_S", 0.0)  # the other trial beats no heart
    run_study("raced", storage=url, studies_dir=studies_dir, trials=2)
    first, other, *later = optuna.load_study(study_name="raced", storage=url).get_trials()
    assert (first.state, other.state) == (TrialState.COMPLETE, TrialState.RUNNING)
    assert later and all(t.state == TrialState.FAIL and t.user_attrs["over_budget"]
                         and "history" not in t.user_attrs for t in later)


def test_a_worker_opening_a_stored_study_does_not_try_to_create_it(write_study, studies_dir,
                                                                   storage_url):
    """Each worker's run loads the study and creates it only when absent: trying to insert
    it first makes PostgreSQL log a duplicate-key ERROR at every run of every worker."""
    from sqlalchemy.engine import Engine

    from hpsearch.runner import run_study

    write_study("shared", STUDY)
    sent: list[str] = []
    listen = lambda *args: sent.append(" ".join(args[2].split()))  # noqa: E731
    sqlalchemy.event.listen(Engine, "before_cursor_execute", listen)
    try:
        run_study("shared", storage=storage_url, studies_dir=studies_dir, trials=0)
        created, sent[:] = list(sent), []
        run_study("shared", storage=storage_url, studies_dir=studies_dir, trials=0)
    finally:
        sqlalchemy.event.remove(Engine, "before_cursor_execute", listen)
    inserts = [s for s in created + sent if s.startswith("INSERT INTO studies ")]
    assert len(inserts) == 1 and inserts[0] in created  # the first run creates it, once
    assert len(optuna.get_all_study_names(storage_url)) == 1


def test_a_study_created_by_another_worker_between_the_load_and_the_create_is_loaded(
        write_study, studies_dir, tmp_path, monkeypatch):
    """Two workers starting a new study at once: both find it absent, one creates it; the
    other's create finds it stored and loads it (Optuna's create-or-load), trials kept."""
    from hpsearch.runner import run_study

    write_study("shared", STUDY)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    run_study("shared", storage=url, studies_dir=studies_dir, trials=1)

    def absent(*args, **kwargs):  # as the other worker saw it, an instant before
        raise KeyError("Record does not exist.")

    monkeypatch.setattr(optuna, "load_study", absent)
    run_study("shared", storage=url, studies_dir=studies_dir, trials=2)
    monkeypatch.undo()
    assert optuna.get_all_study_names(url) == ["shared"]
    trials = optuna.load_study(study_name="shared", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
