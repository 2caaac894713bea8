"""`hpsearch run --jobs N`: worker processes share one study's budget through storage."""

from __future__ import annotations

import optuna
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
    write_study("shared", STUDY)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(cli, ["run", "--study", "shared", "--storage", url, "--jobs", "2",
                                      "--devices", "cpu", "--studies-dir", str(studies_dir)])
    assert result.exit_code == 0, result.output
    trials = optuna.load_study(study_name="shared", storage=url).get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert 6 <= len(trials) <= 7  # a worker may start one trial as the other ends the budget
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes trained
    assert len({t.params["lr"] for t in trials}) == len(trials)  # seeds differ per worker
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
