"""The `hpsearch` command end to end: runs into real storage, budgets, refusals, help."""

from __future__ import annotations

import json

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from hpsearch.cli import cli
from hpsearch.config import TrainConfig

TINY = """\
description: tiny learning-rate search for tests
phase: lr
base: {dataset: digits, epochs: 2, batch_size: 64, width: 32}
objective: {metric: val_acc}
sampler: {name: random, seed: 0}
pruner: {name: none}
trials: 3
space:
  lr: {type: float, low: 1e-4, high: 1e-2, log: true}
"""


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def trials_of(name: str, url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials()


@pytest.fixture
def tiny(write_study, studies_dir):
    write_study("tiny", TINY)
    return ["--studies-dir", str(studies_dir)]


def test_run_trains_three_trials_into_storage(tiny, storage_url):
    result = invoke("run", "--study", "tiny", "--storage", storage_url, *tiny)
    assert result.exit_code == 0, result.output
    trials = trials_of("tiny", storage_url)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for trial in trials:
        history = trial.user_attrs["history"]
        assert [r["epoch"] for r in history] == [1, 2]
        assert set(history[0]) >= {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s"}
        assert trial.value == history[-1]["val_acc"]
        assert trial.intermediate_values == {1: history[0]["val_acc"], 2: history[1]["val_acc"]}
        assert trial.user_attrs["config"]["lr"] == trial.params["lr"]
        assert trial.user_attrs["config"]["epochs"] == 2
        assert trial.user_attrs["worker"].endswith(" cpu")
    assert "best trials of tiny" in result.output


def test_study_attributes_record_fixed_settings(tiny, storage_url):
    invoke("run", "--study", "tiny", "--storage", storage_url, "--trials", "1", *tiny)
    study = optuna.load_study(study_name="tiny", storage=storage_url)
    fixed = study.user_attrs["fixed_settings"]
    assert fixed["epochs"] == 2 and fixed["width"] == 32 and fixed["dataset"] == "digits"
    assert "lr" not in fixed  # sampled, so not a fixed setting
    assert study.metric_names == ["val_acc"]


def test_rerun_of_finished_study_runs_nothing(tiny, storage_url):
    invoke("run", "--study", "tiny", "--storage", storage_url, *tiny)
    result = invoke("run", "--study", "tiny", "--storage", storage_url, *tiny)
    assert result.exit_code == 0
    assert "already has 3 of 3 trials done; nothing to run" in result.output
    assert len(trials_of("tiny", storage_url)) == 3


def test_rerun_after_interruption_completes_the_budget(tiny, storage_url):
    invoke("run", "--study", "tiny", "--storage", storage_url, "--trials", "1", *tiny)
    study = optuna.load_study(study_name="tiny", storage=storage_url)
    interrupted = study.ask()  # a trial left behind by a crashed worker...
    study.tell(interrupted, state=TrialState.FAIL)  # ...marked FAIL by its heartbeat
    result = invoke("run", "--study", "tiny", "--storage", storage_url, *tiny)
    assert result.exit_code == 0, result.output
    states = [t.state for t in trials_of("tiny", storage_url)]
    assert states.count(TrialState.COMPLETE) == 3 and states.count(TrialState.FAIL) == 1


def test_larger_budget_extends_a_finished_study(tiny, storage_url):
    invoke("run", "--study", "tiny", "--storage", storage_url, "--trials", "2", *tiny)
    invoke("run", "--study", "tiny", "--storage", storage_url, "--trials", "4", *tiny)
    assert len(trials_of("tiny", storage_url)) == 4


def test_other_fixed_settings_are_refused(tiny, storage_url):
    invoke("run", "--study", "tiny", "--storage", storage_url, "--trials", "1", *tiny)
    result = invoke("run", "--study", "tiny", "--storage", storage_url, "--set", "epochs=3", *tiny)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: study `tiny` exists with other fixed settings: epochs (stored 2, now 3); fix: "
        "run with the stored settings to resume it, or pass --tag NAME (hpsearch run and "
        "protocol) or --name OTHER (hpsearch run) to store this run as a study of its own"
    ]
    assert len(trials_of("tiny", storage_url)) == 1
    renamed = invoke(
        "run", "--study", "tiny", "--storage", storage_url, "--set", "epochs=3",
        "--name", "tiny_3_epochs", "--trials", "1", *tiny,
    )
    assert renamed.exit_code == 0, renamed.output
    assert trials_of("tiny_3_epochs", storage_url)[0].user_attrs["config"]["epochs"] == 3


def test_set_overrides_base_and_unknown_key_is_refused(tiny, tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = invoke("run", "--study", "tiny", "--storage", url, "--set", "lrr=0.1", *tiny)
    assert result.exit_code == 2
    assert result.output.strip() == "error: --set lrr=0.1: unknown setting `lrr`; fix: did you mean lr?"
    assert not (tmp_path / "x.db").exists()


def test_bad_study_file_writes_nothing(write_study, studies_dir, tmp_path):
    write_study("broken", TINY.replace("low: 1e-4, high: 1e-2", "low: 1e-1, high: 1e-2"))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = invoke("run", "--study", "broken", "--storage", url, "--studies-dir", str(studies_dir))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "space.lr" in lines[0]
    assert not (tmp_path / "x.db").exists()


def test_unknown_study_name_lists_the_available_ones(tiny):
    result = invoke("run", "--study", "nope", *tiny)
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "tiny" in result.output


def test_unreachable_database_is_one_line_and_exit_1(tiny):
    url = "postgresql://someone:secret@127.0.0.1:1/nowhere"
    result = invoke("run", "--study", "tiny", "--storage", url, *tiny)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: cannot open storage postgresql+psycopg://someone:***@127.0.0.1:1/nowhere: ")
    assert "secret" not in result.output


def test_storage_from_environment_and_default_path(tiny, tmp_path, monkeypatch):
    result = invoke("run", "--study", "tiny", "--trials", "1", *tiny)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "storage" / "hpsearch.db").exists()  # the embedded default
    monkeypatch.setenv("HPSEARCH_STORAGE", f"sqlite:///{tmp_path / 'env.db'}")
    invoke("run", "--study", "tiny", "--trials", "1", *tiny)
    assert len(trials_of("tiny", f"sqlite:///{tmp_path / 'env.db'}")) == 1


def test_study_path_is_accepted(write_study, tmp_path):
    path = write_study("tiny", TINY)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = invoke("run", "--study", str(path), "--storage", url, "--trials", "1")
    assert result.exit_code == 0, result.output
    assert len(trials_of("tiny", url)) == 1


def test_studies_lists_files_with_progress(tiny, storage_url):
    invoke("run", "--study", "tiny", "--storage", storage_url, "--trials", "2", *tiny)
    result = invoke("studies", "--storage", storage_url, *tiny)
    assert result.exit_code == 0, result.output
    assert "tiny" in result.output and "2/3" in result.output and "lr" in result.output


def test_best_json_has_value_params_and_config(tiny, storage_url):
    invoke("run", "--study", "tiny", "--storage", storage_url, *tiny)
    result = invoke("best", "--study", "tiny", "--storage", storage_url, "--json")
    assert result.exit_code == 0, result.output
    best = json.loads(result.output)
    values = [t.value for t in trials_of("tiny", storage_url)]
    (entry,) = best["best"]
    assert entry["values"]["val_acc"] == max(values)
    assert entry["config"]["lr"] == entry["params"]["lr"]


def test_best_of_missing_study_says_how_to_create_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = invoke("best", "--study", "ghost", "--storage", url)
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: no study `ghost` in {url}; fix: run `hpsearch run --study ghost` (or "
        "`hpsearch protocol`) first, or pass the --storage that holds it"
    )
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("command", [[], ["run"], ["studies"], ["best"], ["settings"]])
def test_every_command_has_help(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert result.output.startswith("Usage: ")
    assert len(result.output.splitlines()) > 3


def test_settings_lists_every_knob_with_its_meaning_unit_and_range():
    result = invoke("settings")
    lines = result.output.splitlines()
    at = lines.index("lr                  float  default 0.001  range: 0 < lr")
    assert lines[at + 1] == "    peak learning rate; Adam start 1e-3, SGD start 0.1 [000]"
    assert "one of: sgd, adam, adamw, rmsprop, or an import path" in result.output
    assert "momentum            float  default None  range: 0 <= momentum < 1" in lines
    warmup = lines.index("warmup_epochs       float  default 0.0  range: 0 <= warmup_epochs "
                         "<= 100_000")
    assert "in epochs" in lines[warmup + 1]  # the unit
    # every setting has its meaning under it
    named = [line.split()[0] for line in lines if line and not line.startswith(" ")]
    assert len(named) == len(TrainConfig().to_dict())
    assert all(lines[lines.index(line) + 1].startswith("    ") for line in lines
               if line and not line.startswith(" "))


def test_resumed_random_study_does_not_repeat_parameters(tiny, tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    for budget in ("1", "2", "3"):  # three separate worker runs, same seed in the file
        assert invoke("run", "--study", "tiny", "--storage", url, "--trials", budget, *tiny).exit_code == 0
    lrs = [t.params["lr"] for t in trials_of("tiny", url)]
    assert len(set(lrs)) == 3


def test_diverging_trial_is_pruned_with_reason(write_study, studies_dir, tmp_path):
    write_study("hot", "base: {dataset: digits, epochs: 5, optimizer: sgd, momentum: 0.0}\n"
                "objective: {metric: val_acc}\nsampler: {name: grid}\npruner: {name: none}\n"
                "space:\n  lr: {values: [1.0e+6]}\n")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = invoke("run", "--study", "hot", "--storage", url, "--studies-dir", str(studies_dir))
    assert result.exit_code == 0, result.output
    (trial,) = trials_of("hot", url)
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["reason"] == "diverged"
    history = trial.user_attrs["history"]
    assert len(history) < 5  # ended at once, not after the remaining epochs
    assert history[-1]["train_loss"] is None  # NaN stored as JSON null


@pytest.mark.parametrize("study", ["lr_adam", "lr_sgd", "setup"])
def test_first_phases_run_on_their_own_from_the_repo_studies(study, tmp_path):
    """The README's main job: `hpsearch run --study lr_adam` on a fresh storage."""
    from tests.conftest import REPO

    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = invoke("run", "--study", study, "--storage", url, "--set", "epochs=2",
                    "--studies-dir", str(REPO / "studies"))
    assert result.exit_code == 0, result.output
    # setup: the reference, and it augmented (digits has few images per class [000])
    grid = {"lr_adam": 3, "lr_sgd": 4, "setup": 2}[study]
    assert len(trials_of(study, url)) == grid
    assert f"{study} in {url}: " in result.output


def test_pruned_trial_keeps_its_reason_and_curve(write_study, studies_dir, tmp_path):
    write_study("strict", TINY.replace("pruner: {name: none}", "pruner: {name: threshold, lower: 1.01}")
                .replace("epochs: 2", "epochs: 4"))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = invoke("run", "--study", "strict", "--storage", url, "--studies-dir", str(studies_dir))
    assert result.exit_code == 0, result.output
    for trial in trials_of("strict", url):  # no accuracy reaches 1.01: pruned after epoch 1
        assert trial.state == TrialState.PRUNED
        assert trial.user_attrs["reason"] == "pruned at epoch 1"
        assert [r["epoch"] for r in trial.user_attrs["history"]] == [1]
