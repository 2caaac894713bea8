"""Tuning a user's project end to end: what is refused, what stops at once, what runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

import hpsearch
from hpsearch.cli import cli
from hpsearch.errors import SpecError, UsageError
from tests.lightning_doubles import write_lightning_project

PROJECT = '''
import torch
from torch import nn
import hpsearch

@hpsearch.declare(space={"hidden": {"values": [8, 16]}}, honours=["dropout"])
def net(config, input_shape, num_classes, hidden=16):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.Dropout(config.dropout),
                         nn.Linear(hidden, num_classes))

def plain(config, input_shape, num_classes, hidden=16):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.Linear(hidden, num_classes))

def raises(config, input_shape, num_classes):
    raise ValueError("width must be even")

def sometimes(config, input_shape, num_classes, hidden=16):
    if hidden > 16:  # a bug only some sampled widths reach
        return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.Linear(16, num_classes))
    return plain(config, input_shape, num_classes, hidden)

def flaky(config, input_shape, num_classes, hidden=16):
    """Fails once in a folder, at its second call (the first is the check before anything
    is stored): a transient error, CUDA out of memory while another process held the GPU."""
    from pathlib import Path
    calls = Path("flaky.calls")
    count = int(calls.read_text()) if calls.exists() else 0
    calls.write_text(str(count + 1))
    if count == 1:
        raise RuntimeError("CUDA out of memory (simulated)")
    return plain(config, input_shape, num_classes, hidden)

def sine(config):
    x = torch.linspace(-2, 2, 400).unsqueeze(1)
    y = torch.sin(3 * x).squeeze(1)
    order = torch.randperm(400, generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return {"train": (x[:300], y[:300]), "val": (x[300:], y[300:])}

def regressor(config, input_shape, num_outputs):
    return nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, num_outputs))

@hpsearch.declare(honours=["lr"])
def hook(config, data, device, report):
    for epoch in range(1, config.epochs + 1):
        report(epoch, train_loss=1.0 / epoch, val_loss=1.0 / epoch, val_acc=0.1 * epoch)
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's folder: a module of factories and a study file, the working directory."""
    (tmp_path / "hp_project.py").write_text(PROJECT)
    return tmp_path


def study_file(project: Path, name: str, text: str) -> Path:
    path = project / f"{name}.yaml"
    path.write_text(text)
    return path


def url_of(project: Path) -> str:
    return f"sqlite:///{project / 'x.db'}"


def cli_run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def hpsearch_command(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """The plain `hpsearch` console script, as a user types it: no PYTHONPATH."""
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ['PATH']}"
    return subprocess.run(["hpsearch", *args], cwd=cwd, env={**environ, **env},
                          capture_output=True, text=True, timeout=300)


SEARCH = """\
base: {model: "hp_project:net", epochs: 2}
objective: {metric: val_acc}
sampler: {name: random, seed: 0}
trials: 2
space:
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
"""


# --- refused before anything is stored ------------------------------------------------------


def test_set_on_a_searched_setting_is_refused_in_run(project):
    path = study_file(project, "search", SEARCH)
    result = cli_run("run", "--study", str(path), "--storage", url_of(project), "--set", "lr=0.01")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: --set lr=0.01: study `search` searches `lr` ({path}: space.lr): every trial "
        "would train at 0.01 while Optuna records another value; fix: drop --set lr, or run a "
        "copy of the study file without `lr` in its space under another --name"]
    assert not (project / "x.db").exists()


def test_set_on_a_searched_setting_is_refused_in_the_notebook_api(project):
    path = study_file(project, "search", SEARCH)
    with pytest.raises(UsageError, match=r"^--set lr=0.01: study `search` searches `lr`"):
        hpsearch.run_study(path, storage=url_of(project), overrides={"lr": 0.01})


def test_set_on_a_setting_a_later_phase_searches_is_refused_before_any_phase_runs(project):
    result = cli_run("protocol", "--storage", url_of(project), "--set", "lr=0.01")
    assert result.exit_code == 2
    assert result.output.startswith("error: --set lr=0.01: study `setup` searches `lr`")
    assert not (project / "x.db").exists()  # not even the setup phase ran


def test_a_user_study_searching_what_the_model_ignores_is_refused(project):
    path = study_file(project, "ignored", SEARCH.replace('"hp_project:net"', '"hp_project:plain"')
                      + "  dropout: {type: float, low: 0.0, high: 0.5}\n")
    result = cli_run("run", "--study", str(path), "--storage", url_of(project))
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {path}: space.dropout: model `hp_project:plain` does not declare that it reads "
        "`dropout` (it declares: none), so trials would differ in name only; fix: read it from "
        "config in plain and declare it with @hpsearch.declare(honours=[...]) (or "
        "plain.honours = [...]), or do not search it")


def test_set_of_a_setting_the_model_ignores_is_refused(project):
    path = study_file(project, "search", SEARCH.replace('"hp_project:net"', '"hp_project:plain"'))
    result = cli_run("run", "--study", str(path), "--storage", url_of(project), "--set", "norm=batch")
    assert result.exit_code == 2
    assert result.output.startswith("error: --set norm=batch: model `hp_project:plain` does not "
                                    "declare that it reads `norm`")


def test_an_accuracy_objective_on_a_regression_task_is_refused(project):
    path = study_file(project, "fit", 'base: {model: "hp_project:regressor", dataset: '
                      '"hp_project:sine", loss: mse, epochs: 2}\nobjective: {metric: best_val_acc}\n'
                      "space:\n  lr: {type: float, low: 1.0e-3, high: 1.0e-2}\n")
    with pytest.raises(SpecError) as caught:
        hpsearch.run_study(path, storage=url_of(project))
    assert str(caught.value) == (
        f"{path}: objective.metric: `best_val_acc` needs accuracy, which loss `mse` does not "
        "give; fix: select on a loss-based metric (val_loss, train_loss, best_val_loss, "
        "train_loss_area, val_loss_at_peak)")


def test_a_regression_study_tunes_on_mse(project):
    path = study_file(project, "fit", 'base: {model: "hp_project:regressor", dataset: '
                      '"hp_project:sine", loss: mse, epochs: 60, batch_size: 50}\n'
                      "objective: {metric: best_val_loss}\nsampler: {name: random, seed: 0}\n"
                      "trials: 3\nspace:\n  lr: {type: float, low: 3.0e-3, high: 3.0e-2, log: true}\n")
    summary = hpsearch.run_study(path, storage=url_of(project))
    assert summary.counts == {"COMPLETE": 3}
    choice = summary.choice
    assert choice.criteria["best_val_loss"] < 0.05 and choice.criteria["peak_val_acc"] is None
    assert choice.criteria["peak_epoch"] is not None  # the lowest validation loss


# --- errors in the user's code ---------------------------------------------------------------


def test_an_exception_in_the_users_factory_is_one_line_with_file_and_line(project):
    study_file(project, "bad", SEARCH.replace('"hp_project:net"', '"hp_project:raises"'))
    done = hpsearch_command("run", "--study", "bad.yaml", cwd=project)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: model factory `hp_project:raises` raised ValueError: width must be even (at "
        "hp_project.py:15, in raises); fix: correct the code there (rerun with --debug for the "
        "whole traceback)"]
    assert not (project / "storage").exists()  # nothing stored


@pytest.mark.parametrize("debug", [["--debug"], []], ids=["--debug", "HPSEARCH_DEBUG"])
def test_debug_shows_the_whole_traceback(project, debug):
    study_file(project, "bad", SEARCH.replace('"hp_project:net"', '"hp_project:raises"'))
    env = {} if debug else {"HPSEARCH_DEBUG": "1"}
    done = hpsearch_command("run", "--study", "bad.yaml", *debug, cwd=project, **env)
    assert done.returncode == 2
    assert "Traceback (most recent call last)" in done.stderr
    assert 'hp_project.py", line 15, in raises' in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: model factory")


def test_a_crash_repeating_at_the_same_place_stops_at_the_second_trial(project):
    path = study_file(project, "some", 'base: {model: "hp_project:sometimes", epochs: 2}\n'
                      "objective: {metric: val_acc}\nsampler: {name: random, seed: 0}\ntrials: 6\n"
                      "space:\n  model_args.hidden: {type: int, low: 17, high: 40}\n")
    result = cli_run("run", "--study", str(path), "--storage", url_of(project))
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()[-1:]
    assert line.startswith("error: 2 trials in a row failed, the same way (RuntimeError at torch/")
    trials = optuna.load_study(study_name="some", storage=url_of(project)).trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    assert trials[0].user_attrs["error"].startswith("RuntimeError: mat1 and mat2 shapes")


FLAKY = ('base: {model: "hp_project:flaky", epochs: 2}\nobjective: {metric: val_acc}\n'
         "sampler: {name: random, seed: 0}\ntrials: 2\n"
         "space:\n  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n")


def test_retries_queue_a_crashed_trial_again_with_its_parameters(project):
    study_file(project, "flaky", FLAKY)
    done = hpsearch_command("run", "--study", "flaky.yaml", "--retries", "1", cwd=project)
    assert done.returncode == 0, done.stderr
    trials = optuna.load_study(study_name="flaky", storage=f"sqlite:///{project}/storage/"
                               "hpsearch.db").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    failed, retry = trials[0], trials[1]
    assert failed.user_attrs["error"].startswith("model factory `hp_project:flaky` raised "
                                                 "RuntimeError: CUDA out of memory")
    assert retry.params == failed.params  # the same configuration, not a new sample
    assert retry.system_attrs["failed_trial"] == 0  # Optuna's retry record
    assert "error" not in retry.user_attrs  # what the failed run wrote is not inherited
    assert trials[2].params != failed.params


def test_without_retries_a_crashed_trial_is_replaced_by_a_new_sample(project):
    study_file(project, "flaky", FLAKY)
    done = hpsearch_command("run", "--study", "flaky.yaml", cwd=project)
    assert done.returncode == 0, done.stderr
    trials = optuna.load_study(study_name="flaky", storage=f"sqlite:///{project}/storage/"
                               "hpsearch.db").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert "failed_trial" not in trials[1].system_attrs
    assert trials[1].params != trials[0].params


def test_retries_are_bounded_and_then_count_as_failures(project):
    path = study_file(project, "some", 'base: {model: "hp_project:sometimes", epochs: 2}\n'
                      "objective: {metric: val_acc}\nsampler: {name: random, seed: 0}\ntrials: 9\n"
                      "space:\n  model_args.hidden: {type: int, low: 17, high: 40}\n")
    result = cli_run("run", "--study", str(path), "--storage", url_of(project), "--retries", "2")
    assert result.exit_code == 1
    trials = optuna.load_study(study_name="some", storage=url_of(project)).trials
    # Each sample runs three times (two retries); the second sample's last retry failing
    # where the first's did stops the study: the same bug.
    assert [t.system_attrs.get("failed_trial") for t in trials] == [None, 0, 0, None, 3, 3]
    assert all(t.state == TrialState.FAIL for t in trials)
    assert "2 trials in a row failed, the same way" in result.output.strip().splitlines()[-1]


# --- fit hooks and Lightning through a study --------------------------------------------------


def test_a_fit_hook_study_reports_its_metrics_and_is_pruned(project):
    path = study_file(project, "hooked", 'base: {fit: "hp_project:hook", epochs: 4}\n'
                      "objective: {metric: val_acc}\nsampler: {name: random, seed: 0}\n"
                      "pruner: {name: threshold, lower: 0.25, n_warmup_steps: 2}\ntrials: 2\n"
                      "space:\n  lr: {type: float, low: 1.0e-3, high: 1.0e-2}\n")
    summary = hpsearch.run_study(path, storage=url_of(project))
    assert summary.counts == {"PRUNED": 2}
    trial = optuna.load_study(study_name="hooked", storage=url_of(project)).trials[0]
    assert trial.user_attrs["reason"] == "pruned at epoch 2"  # val_acc 0.2 < 0.25
    assert [r["val_acc"] for r in trial.user_attrs["history"]] == [0.1, 0.2]


def test_a_hook_that_does_not_declare_batch_size_cannot_have_it_searched(project):
    path = study_file(project, "hooked", 'base: {fit: "hp_project:hook", epochs: 2}\n'
                      "objective: {metric: val_acc}\nspace:\n  batch_size: {values: [32, 64]}\n")
    with pytest.raises(SpecError, match=r"space.batch_size: fit hook `hp_project:hook` does not "
                                        r"declare that it reads `batch_size` \(it declares: lr\)"):
        hpsearch.run_study(path, storage=url_of(project))


def test_lr_find_refuses_a_run_the_users_code_trains(project):
    path = study_file(project, "hooked", 'base: {fit: "hp_project:hook", epochs: 2}\n'
                      "objective: {metric: val_acc}\nspace:\n  lr: {values: [0.01]}\n")
    with pytest.raises(UsageError, match=r"^lr-find: the LR range test runs hpsearch's own "
                                         r"training loop, but the fit hook `hp_project:hook`"):
        hpsearch.lr_find_for_study(str(path), storage=url_of(project))


def test_a_lightning_module_is_tuned_end_to_end_and_pruned(project):
    pytest.importorskip("lightning")
    lit = write_lightning_project(project)
    path = study_file(project, "lit",
                      'base:\n  model: "hp_lit:Lit"\n  epochs: 3\n  batch_size: 128\n'
                      '  logged_metrics: {train_loss: "my/train", val_loss: "my/val", '
                      'val_acc: "my/acc"}\n'
                      "objective: {metric: val_acc}\nsampler: {name: tpe, seed: 0}\n"
                      "pruner: {name: percentile, percentile: 50.0, n_startup_trials: 1}\n"
                      "trials: 4\nspace:\n"
                      "  lr: {type: float, low: 1.0e-5, high: 3.0e-2, log: true}\n"
                      "  model_args.hidden: {type: int, low: 4, high: 64, log: true}\n")
    summary = hpsearch.run_study(path, storage=url_of(project))
    study = optuna.load_study(study_name="lit", storage=url_of(project))
    assert summary.counts.get("PRUNED", 0) >= 1 and summary.counts.get("COMPLETE", 0) >= 1
    first = study.trials[0]
    assert first.user_attrs["config"]["lr"] == first.params["lr"]
    history = first.user_attrs["history"]
    assert history[-1]["user_steps"] == 11 * len(history)  # its training_step: 11 a epoch
    assert len(lit.STEPS) == sum(11 * len(t.user_attrs["history"]) for t in study.trials)
    assert summary.choice.config["model"] == "hp_lit:Lit"


# --- the protocol from any folder -------------------------------------------------------------


def test_the_protocol_runs_outside_the_repository_from_the_installed_phase_files(project):
    done = hpsearch_command("protocol", "--to", "lr_adam", "--set", "epochs=4", cwd=project)
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.strip().splitlines()] == [
        "setup", "lr_adam"]


def test_your_studies_folder_overrides_a_phase_and_studies_says_where_each_comes_from(project):
    (project / "studies").mkdir()
    (project / "studies" / "lr_adam.yaml").write_text(
        "phase: lr\nbase: {epochs: 2, optimizer: adam}\nobjective: {metric: val_acc}\n"
        "sampler: {name: grid}\nspace:\n  lr: {values: [0.002, 0.004]}\n")
    summary = hpsearch.run_study("lr_adam", storage=url_of(project))
    assert sorted(t.params["lr"] for t in optuna.load_study(
        study_name="lr_adam", storage=url_of(project)).trials) == [0.002, 0.004]
    rows = {row["study"]: row["from"] for row in hpsearch.overview(storage=url_of(project))}
    assert rows["lr_adam"] == "studies/lr_adam.yaml" and summary.budget == 2
    assert rows["lr_sgd"] == "installed"
    listing = cli_run("studies", "--storage", url_of(project))
    row = next(line for line in listing.output.splitlines() if line.startswith("│ lr_adam "))
    assert "studies/lr_ad" in row and "2/2" in row  # (a narrow terminal folds the path)


def test_a_phase_searches_only_what_the_model_honours_and_stores_what_it_left_out(project):
    path = study_file(project, "reg", 'phase: regularization\nbase: {model: "hp_project:plain", '
                      "epochs: 2}\nobjective: {metric: val_acc}\nsampler: {name: random, seed: 0}\n"
                      "trials: 3\nspace:\n  regularizer:\n    choices: [l2, dropout]\n    when:\n"
                      "      l2: {weight_decay: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}}\n"
                      "      dropout: {dropout: {type: float, low: 0.1, high: 0.5}}\n")
    summary = hpsearch.run_study(path, storage=url_of(project))
    assert summary.not_searched == ["dropout"] and summary.counts == {"COMPLETE": 3}
    study = optuna.load_study(study_name="reg", storage=url_of(project))
    assert study.user_attrs["not_searched"] == ["dropout"]
    assert {t.params["regularizer"] for t in study.trials} == {"l2"}


def test_a_phase_with_nothing_left_to_compare_is_skipped_with_the_reason(project):
    path = study_file(project, "norms", 'phase: batchnorm\nbase: {model: "hp_project:net", '
                      "epochs: 2}\nobjective: {metric: val_acc}\nsampler: {name: grid}\n"
                      "space:\n  norm: {choices: [batch, layer]}\n")
    summary = hpsearch.run_study(path, storage=url_of(project))
    assert summary.skipped == ("model `hp_project:net` honours none of the settings this phase "
                               "searches (norm): nothing to compare")
    choice = optuna.load_study(study_name="norms", storage=url_of(project)).user_attrs["selection"]
    assert choice["skipped"] and choice["config"]["model"] == "hp_project:net"


def test_parallel_workers_import_factories_from_the_study_files_folder(project, tmp_path):
    path = study_file(project, "search", SEARCH)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = hpsearch_command("run", "--study", str(path), "--jobs", "2", "--storage",
                            url_of(project), cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    trials = optuna.load_study(study_name="search", storage=url_of(project)).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) >= 2
