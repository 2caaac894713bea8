"""The trained model, kept: every phase's chosen trial and the tested model are checkpointed
through Optuna's artifact store, exported and loaded without retraining; disk use bounded."""

from __future__ import annotations

import threading
import time

import optuna
import pytest
import torch
from click.testing import CliRunner

import hpsearch
from hpsearch import records
from hpsearch.checkpoints import CANDIDATES, load
from hpsearch.cli import cli
from hpsearch.errors import UsageError
from hpsearch.phases.test_set import run_test
from hpsearch.train import evaluate, load_data

TINY = {"epochs": 4}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """lr_adam (a 3-point grid, extended at its edge) on digits, then its test phase."""
    folder = tmp_path_factory.mktemp("kept")
    url = f"sqlite:///{folder / 'p.db'}"
    summary = hpsearch.run_study("lr_adam", storage=url, overrides=TINY)
    run_test("lr_adam", url)
    return folder, url, summary


def stored(url, name="lr_adam"):
    return optuna.load_study(study_name=name, storage=url)


def test_the_chosen_model_reproduces_its_stored_validation_accuracy(run, tmp_path):
    folder, url, summary = run
    out = tmp_path / "model.pt"
    result = CliRunner().invoke(cli, ["export", "--study", "lr_adam", "--storage", url,
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"lr_adam: chosen model written to {out} (")
    model = hpsearch.load_model(str(out))
    assert not model.training  # ready to evaluate
    config = model.hpsearch_config
    assert config.lr == summary.choice.config["lr"]
    data = load_data(config, "cpu")
    _, val_acc = evaluate(model, data.val, config, "cpu")
    assert val_acc == pytest.approx(summary.choice.criteria["best_val_acc"], abs=1e-9)


def test_a_checkpoint_holds_the_optimizer_state_config_and_epochs(run):
    _, url, summary = run
    content = load(hpsearch.results.artifacts.checkpoint_file("lr_adam", url))
    assert content["format"] == "hpsearch-checkpoint/1"
    assert content["config"] == summary.choice.config
    assert content["optimizer_state"]["state"]  # Adam's moments: training can resume
    assert content["epochs_trained"] == 4 and 1 <= content["peak_epoch"] <= 4
    assert content["trial"] == summary.choice.trial


def test_one_checkpoint_per_study_stays_on_disk(run):
    folder, url, summary = run
    artifacts = folder / "artifacts"
    kept = [p for p in artifacts.iterdir() if p.is_file()]
    assert len(kept) == 2  # the chosen trial's and the tested model's
    assert not any((artifacts / CANDIDATES).rglob("*.pt"))  # the candidates were deleted
    checkpoint = records.read_choice(stored(url)).checkpoint
    assert (artifacts / checkpoint["artifact_id"]).stat().st_size == checkpoint["bytes"]


def test_the_tested_model_is_kept_and_loads(run):
    _, url, _ = run
    result = records.read_test(stored(url))
    model = hpsearch.load_model("lr_adam", url, which="tested")
    config = model.hpsearch_config
    loss, acc = evaluate(model, load_data(config, "cpu").test, config, "cpu")
    assert acc == pytest.approx(result.test_acc, abs=1e-9)  # the weights that were tested


def test_a_candidate_that_falls_out_of_reach_loses_its_file(tmp_path):
    """While a phase runs, only trials within the first criterion's tolerance of the best keep
    their weights (and the baseline); once it has chosen, only the choice's."""
    from hpsearch.checkpoints import Candidates
    from hpsearch.spec import load_study_spec
    from hpsearch.spec.catalog import bundled_dir

    spec = load_study_spec(bundled_dir() / "architecture.yaml")  # best_val_acc, 0.005
    candidates = Candidates(tmp_path, "arch", spec)
    study = optuna.create_study(direction="maximize")

    class Trained:  # the parts of train/loop.Trained a checkpoint reads
        model, optimizer, scheduler = torch.nn.Linear(2, 2), None, None
        epochs, peak_epoch, input_shape, num_classes = 1, 1, (2,), 2

        def best_weights(self):
            return self.model.state_dict()

    def finish(acc, baseline=False):
        trial = study.ask()
        records.write_criteria(trial, {"best_val_acc": acc})
        records.write_fact(trial, records.BASELINE, baseline)
        candidates.offer(trial, Trained(), {}, {"best_val_acc": acc}, baseline,
                         trial.study.get_trials(deepcopy=False))
        study.tell(trial, acc)
        return trial.number

    base, _out_of_reach, high, near = (finish(0.90, baseline=True), finish(0.91), finish(0.95),
                                       finish(0.947))
    kept = {p.name for p in candidates.folder.iterdir()}
    assert kept == {candidates.path(n).name for n in (base, high, near)}  # 0.91: out of reach


def test_each_finished_trials_criteria_are_read_once_and_a_lost_file_dropped_once(
        tmp_path, monkeypatch):
    """A long phase's trials each look at every finished trial to keep or drop its file:
    done afresh each time, that cost grew with the study (0.9 ms a trial at 100 trials,
    20 ms at 2,000). Finished trials never change and the best only rises, so each trial's
    value is read once and each lost file unlinked once, over the whole phase."""
    from pathlib import Path

    from hpsearch import checkpoints
    from hpsearch.spec import load_study_spec
    from hpsearch.spec.catalog import bundled_dir

    candidates = checkpoints.Candidates(tmp_path, "arch",
                                        load_study_spec(bundled_dir() / "architecture.yaml"))
    study = optuna.create_study(direction="maximize")
    reads, unlinked = [], []
    value = checkpoints._value
    monkeypatch.setattr(checkpoints, "_value", lambda t, c: reads.append(t.number) or value(t, c))
    monkeypatch.setattr(Path, "unlink", lambda path, missing_ok=False: unlinked.append(path.name))
    monkeypatch.setattr(checkpoints, "checkpoint_content", lambda *args: {})
    monkeypatch.setattr(checkpoints, "save", lambda content, path: path)
    for number in range(30):  # each better than the last by more than the tolerance (0.005)
        acc = 0.5 + 0.01 * number
        trial = study.ask()
        records.write_criteria(trial, {"best_val_acc": acc})
        candidates.offer(trial, None, {}, {"best_val_acc": acc}, False,
                         study.get_trials(deepcopy=False))
        study.tell(trial, acc)
    assert sorted(reads) == list(range(29))  # each trial finished before the last, once
    # every trial but the last falls out of reach (the next is 0.01 better): one unlink each
    assert sorted(unlinked) == sorted(candidates.path(n).name for n in range(29))


def test_export_without_a_kept_model_says_why(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(UsageError, match="no study `ghost`"):
        hpsearch.export_model("ghost", tmp_path / "m.pt", url)
    hpsearch.run_study("lr_adam", storage=url, overrides={"epochs": 2}, trials=1)
    with pytest.raises(UsageError) as caught:
        hpsearch.export_model("lr_adam", tmp_path / "m.pt", url, which="tested")
    assert str(caught.value) == ("study `lr_adam` has no tested model; fix: run `hpsearch test "
                                 "--study lr_adam` (it trains and keeps one)")


def test_a_choice_without_kept_weights_is_stored_at_once(tmp_path, monkeypatch):
    """A fit hook that returns no model leaves nothing to keep: the phase stores its choice
    without a checkpoint and without waiting for another worker's (nothing sleeps)."""
    from hpsearch.checkpoints import Candidates, keep_chosen
    from hpsearch.records import PhaseChoice
    from hpsearch.spec import load_study_spec
    from hpsearch.spec.catalog import bundled_dir

    sleep = time.sleep

    def no_sleep(seconds):
        if threading.current_thread() is not threading.main_thread():
            return sleep(seconds)  # patched for every thread: a storage watchdog's own sleep
        raise AssertionError(f"slept {seconds} s")

    spec = load_study_spec(bundled_dir() / "architecture.yaml")
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    study.tell(trial, 0.9)
    monkeypatch.setattr("time.sleep", no_sleep)
    chosen = keep_chosen(tmp_path, study, PhaseChoice(trial=trial.number, params={}),
                         Candidates(tmp_path, study.study_name, spec))
    assert chosen is None
