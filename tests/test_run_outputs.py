"""What a run leaves besides its trials: TensorBoard event files per trial when asked, the
running trial's epochs for a progress bar, and what reproduces each trial."""

from __future__ import annotations

import optuna
from click.testing import CliRunner

import hpsearch
from hpsearch import records
from hpsearch.cli import cli


def test_tensorboard_writes_one_run_folder_per_trial(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(cli, ["run", "--study", "lr_adam", "--storage", url, "--set",
                                      "epochs=2", "--tensorboard", str(tmp_path / "tb")])
    assert result.exit_code == 0, result.output
    runs = sorted(p.name for p in (tmp_path / "tb" / "lr_adam").iterdir())
    assert runs == ["trial-0", "trial-1", "trial-2"]
    for run in runs:
        assert list((tmp_path / "tb" / "lr_adam" / run).glob("events.out.tfevents.*"))


def test_no_tensorboard_folder_without_the_option(tmp_path):
    hpsearch.run_study("lr_adam", storage=f"sqlite:///{tmp_path / 'x.db'}",
                       overrides={"epochs": 2}, trials=1)
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


class Recorder:
    """A progress front end: what it heard."""

    def __init__(self):
        self.epochs = []

    def on_start(self, study, budget, finished):
        pass

    def on_trial(self, study, trial):
        pass

    def on_epoch(self, trial, record, planned):
        self.epochs.append((trial, record["epoch"], planned, record.get("val_acc")))


def test_a_progress_front_end_hears_each_epoch_of_the_running_trial(tmp_path):
    heard = Recorder()
    hpsearch.run_study("lr_adam", storage=f"sqlite:///{tmp_path / 'x.db'}",
                       overrides={"epochs": 3}, trials=2, observer=heard)
    assert [(t, e, p) for t, e, p, _ in heard.epochs] == [
        (0, 1, 3), (0, 2, 3), (0, 3, 3), (1, 1, 3), (1, 2, 3), (1, 3, 3)]
    assert all(0 <= acc <= 1 for *_, acc in heard.epochs)


class StopAfter(Recorder):
    """A front end that ends the run (as the benchmark's epoch budget does) after n trials."""

    def __init__(self, trials):
        super().__init__()
        self.trials = trials

    def on_trial(self, study, trial):
        if len(study.trials) >= self.trials:
            study.stop()


def test_a_front_end_that_stops_the_study_ends_the_run_below_its_budget(tmp_path):
    """The study's stop is final: the run does not start a new search to fill the budget
    (that is for a slot another worker freed after this one stopped at the budget)."""
    summary = hpsearch.run_study("lr_adam", storage=f"sqlite:///{tmp_path / 'x.db'}",
                                 overrides={"epochs": 1}, trials=10**6, observer=StopAfter(2))
    assert len(summary.new_trials) == 2


def test_every_trial_records_what_reproduces_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    hpsearch.run_study("lr_adam", storage=url, overrides={"epochs": 2, "seed": 7}, trials=1)
    (trial,) = optuna.load_study(study_name="lr_adam", storage=url).trials
    made = records.read_reproduction(trial)
    assert made.seed == 7 and made.device == "cpu"
    assert set(made.versions) == {"hpsearch", "torch", "optuna", "python"}
    assert records.read_config(trial)["seed"] == 7


def test_the_git_commit_of_a_repository_working_directory_is_recorded(tmp_path, monkeypatch):
    import subprocess

    from hpsearch import versions

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=a@b", "-c", "user.name=a",
                    "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(tmp_path)
    versions.git_state.cache_clear()
    try:
        assert versions.git_state() == (head, False)
    finally:
        versions.git_state.cache_clear()
