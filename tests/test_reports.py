"""Batched epoch reports (hpsearch/reports.py): fewer writes, the same pruning decisions."""

from __future__ import annotations

import random

import optuna
import pytest
import sqlalchemy

from hpsearch import reports as reports_module
from hpsearch.reports import EpochReports
from hpsearch.storage import open_storage


@pytest.fixture
def storage(tmp_path):
    return open_storage(f"sqlite:///{tmp_path / 'reports.db'}")


def _finished_study(storage, pruner, curves):
    study = optuna.create_study(storage=storage, pruner=pruner, direction="maximize")
    for curve in curves:
        trial = study.ask()
        for step, value in enumerate(curve, start=1):
            trial.report(value, step)
        study.tell(trial, curve[-1])
    return study


@pytest.mark.parametrize("pruner", [
    optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    optuna.pruners.PercentilePruner(25.0, n_startup_trials=1),
    optuna.pruners.ThresholdPruner(lower=0.3),
], ids=["median", "percentile", "threshold"])
def test_pruning_in_memory_decides_as_optuna_does(storage, pruner):
    """For each epoch of many curves: the decision on the trial as held in memory equals
    Optuna's own `should_prune` on the trial reported to storage."""
    rng = random.Random(0)
    curves = [[rng.random() for _ in range(8)] for _ in range(6)]
    study = _finished_study(storage, pruner, curves)
    disagreements, decisions = [], 0
    for _ in range(20):
        ours, theirs = study.ask(), study.ask()
        batched = EpochReports(ours)
        for step in range(1, 9):
            value = rng.random()
            batched.report(step, value)
            theirs.report(value, step)
            decisions += 1
            if batched.should_prune() != theirs.should_prune():
                disagreements.append((ours.number, step))
        batched.flush()
        study.tell(ours, state=optuna.trial.TrialState.FAIL)
        study.tell(theirs, state=optuna.trial.TrialState.FAIL)
    assert decisions == 160 and disagreements == []


def test_reports_are_written_in_batches_and_all_by_the_end(storage, monkeypatch):
    study = optuna.create_study(storage=storage, direction="maximize")
    trial = study.ask()
    inserts = []
    sqlalchemy.event.listen(storage.engine, "before_cursor_execute",
                            lambda *args: inserts.append(args[2])
                            if args[2].startswith("INSERT INTO trial_") else None)
    reports = EpochReports(trial, flush_s=3600)
    for step in range(1, 21):  # as the objective does: the history, then the report
        reports.set_user_attr("history", [{"epoch": e} for e in range(1, step + 1)])
        reports.set_user_attr("criteria", {"best_val_acc": step / 20})
        reports.report(step, step / 20)
    stored = _read_afresh(storage, trial)
    assert stored.intermediate_values == {}  # held: FLUSH_S has not passed since the start
    assert "history" not in stored.user_attrs
    reports.flush()
    stored = _read_afresh(storage, trial)
    assert stored.intermediate_values == {s: s / 20 for s in range(1, 21)}
    assert len(stored.user_attrs["history"]) == 20
    assert stored.user_attrs["criteria"] == {"best_val_acc": 1.0}
    # One flush: one INSERT for the reports (executemany), one upsert for the attributes.
    assert [sql.split()[2] for sql in inserts] == ["trial_intermediate_values",
                                                   "trial_user_attributes"]


def test_a_long_trial_shows_its_reports_within_flush_s(storage, monkeypatch):
    """The dashboard's curve lags at most FLUSH_S: the first report after FLUSH_S since the
    trial's start is written with every one before it."""
    clock = [1000.0]
    monkeypatch.setattr(reports_module.time, "monotonic", lambda: clock[0])
    study = optuna.create_study(storage=storage, direction="maximize")
    trial = study.ask()
    reports = EpochReports(trial, flush_s=2.0)
    reports.report(1, 0.1)
    clock[0] += 1.0
    reports.report(2, 0.2)
    assert _read_afresh(storage, trial).intermediate_values == {}
    clock[0] += 1.0
    reports.report(3, 0.3)
    assert _read_afresh(storage, trial).intermediate_values == {1: 0.1, 2: 0.2, 3: 0.3}


def _read_afresh(storage, trial):
    """The trial as another process reads it: from the database, not this worker's memory."""
    return optuna.storages.RDBStorage(storage.url).get_trial(trial._trial_id)


def test_a_pruner_that_keeps_state_on_the_trial_sees_every_report_stored(storage):
    """Successive halving stores its rungs on the trial: each report is flushed at once and
    Optuna decides."""
    study = optuna.create_study(storage=storage, direction="maximize",
                                pruner=optuna.pruners.SuccessiveHalvingPruner())
    trial = study.ask()
    reports = EpochReports(trial, flush_s=3600)
    for step in range(1, 4):
        reports.report(step, 0.5)
        reports.should_prune()
        assert max(study._storage.get_trial(trial._trial_id).intermediate_values) == step


def test_finished_trials_are_read_again_only_when_their_count_changes(storage, monkeypatch):
    monkeypatch.setattr(reports_module, "REFRESH_S", 0.0)
    study = _finished_study(storage, optuna.pruners.MedianPruner(n_startup_trials=1),
                            [[0.9, 0.9], [0.8, 0.8]])
    trial = study.ask()
    reads = []
    original = study.get_trials
    monkeypatch.setattr(study, "get_trials", lambda *a, **k: reads.append(1) or original(*a, **k))
    reports = EpochReports(trial)
    for step in (1, 2, 3):
        reports.report(step, 0.1)
        reports.should_prune()
    assert len(reads) == 1  # the first look; the count stayed 2
    another = study.ask()  # another worker's trial finishes
    for step in range(1, 5):
        another.report(0.7, step)
    study.tell(another, 0.7)
    reports.report(4, 0.1)
    assert reports.should_prune()  # 0.1 is below the median of the finished trials
    assert len(reads) == 2


def test_a_two_objective_study_keeps_its_candidates_and_completes(tmp_path, write_study):
    """The regularization phase searches two objectives: the kept-checkpoint decision reads the
    pruner's view of the finished trials, which must not ask a two-objective study for its one
    direction (every trial of that phase failed so)."""
    from optuna.trial import TrialState

    from hpsearch.runner import run_study

    path = write_study("two_objectives", """\
base: {dataset: digits, epochs: 2}
objective: {metric: [best_val_acc, overfitting_gap], direction: [maximize, minimize]}
sampler: {name: random, seed: 0}
trials: 3
space:
  dropout: {type: float, low: 0.1, high: 0.5}
""")
    url = f"sqlite:///{tmp_path / 'two.db'}"
    run_study(path, storage=url)
    trials = optuna.load_study(study_name="two_objectives", storage=url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
