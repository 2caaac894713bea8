"""`hpsearch protocol` end to end on digits with tiny budgets: chaining, refinement,
preconditions, baselines, the single test evaluation, and no work done twice."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
from click.testing import CliRunner
from optuna.trial import TrialState

import hpsearch
from hpsearch.cli import cli
from hpsearch.errors import UsageError
from hpsearch.phases.protocol import PHASES, run_protocol
from hpsearch.phases.test_set import run_test
from tests.conftest import REPO

STUDIES = REPO / "studies"
# digits, 4 epochs a trial, the MLP family: the whole protocol in about a minute. (When the
# architecture phase may choose a CNN it does on digits, and every later phase then trains
# CNNs on the CPU: 12 minutes.)
TINY = {"epochs": 4, "model": "mlp"}


def load(name, url):
    return optuna.load_study(study_name=name, storage=url)


@pytest.fixture(scope="module")
def protocol_url(tmp_path_factory):
    """One tiny protocol run shared by the tests that only read its results."""
    url = f"sqlite:///{tmp_path_factory.mktemp('protocol') / 'p.db'}"
    outcomes = run_protocol(studies_dir=STUDIES, storage=url, overrides=TINY, trials_scale=0.15)
    return url, outcomes


def test_every_phase_runs_in_order(protocol_url):
    _, outcomes = protocol_url
    assert [o.phase for o in outcomes] == list(PHASES)
    assert all(o.status in {"ran", "skipped", "tested"} for o in outcomes)
    assert outcomes[-1].status == "tested" and 0.5 < outcomes[-1].test.test_acc <= 1.0


def test_running_it_twice_does_no_work_twice(protocol_url):
    url, _ = protocol_url
    before = {n: len(load(n, url).trials) for n in optuna.get_all_study_names(url)}
    again = run_protocol(studies_dir=STUDIES, storage=url, overrides=TINY, trials_scale=0.15)
    assert {o.status for o in again} <= {"done", "skipped"}
    assert {n: len(load(n, url).trials) for n in before} == before


def test_architecture_trains_with_the_lr_the_lr_phase_chose(protocol_url):
    url, _ = protocol_url
    chosen_lr = load("lr_adam_refine", url).user_attrs["selection"]["config"]["lr"]
    architecture = load("architecture", url)
    assert architecture.user_attrs["inherited"]["from"][0]["study"] == "lr_adam_refine"
    inheriting = [t for t in architecture.trials if not any(k.startswith("lr") for k in t.params)]
    assert inheriting  # the MLP branch (the CNN searches its own rate)
    for trial in inheriting:
        assert trial.user_attrs["config"]["lr"] == chosen_lr


def grid_lrs(study):
    """The learning rates of a refine grid's own trials (not those extending its edges)."""
    return sorted(t.params["lr"] for t in study.trials if "edge_step" not in t.user_attrs)


def test_refinement_grid_is_built_around_the_parent_choice(protocol_url):
    url, _ = protocol_url
    explored = load("lr_adam", url).user_attrs["selection"]["config"]["lr"]
    refine = load("lr_adam_refine", url)
    assert grid_lrs(refine) == pytest.approx([explored * 0.5, explored, explored * 2])
    # 4 epochs favour the largest rate: the grid extends up (protocol/edges.py)
    extended = refine.user_attrs["selection"].get("extended")
    added = sorted(t.params["lr"] for t in refine.trials if "edge_step" in t.user_attrs)
    assert added == sorted(extended["added"] if extended else [])


def test_every_trial_stores_all_criteria(protocol_url):
    url, _ = protocol_url
    for trial in load("lr_sgd", url).trials:
        criteria = trial.user_attrs["criteria"]
        for key in ("train_loss_area", "final_plateau", "best_val_acc", "overfitting_gap",
                    "stability", "convergence_epochs", "lr_verdict"):
            assert key in criteria


def test_regularization_runs_against_its_baseline_whatever_the_gap(protocol_url):
    """The gap is read on augmented images and understates overfitting: the phase runs, and
    the inherited configuration runs as its baseline trial."""
    url, outcomes = protocol_url
    regularization = load("regularization", url)
    assert regularization.trials and regularization.trials[0].user_attrs.get("baseline")
    assert not regularization.user_attrs["selection"]["skipped"]


def test_a_phase_whose_precondition_fails_is_skipped_and_says_why():
    from hpsearch.protocol.chain import merge, precondition_failure
    from hpsearch.records import PhaseChoice

    inheritance = merge([("architecture", PhaseChoice(
        trial=3, criteria={"overfitting_gap": 0.011, "overfits": False,
                           "overfitting_gap_kind": "accuracy"}))])
    assert precondition_failure("overfits", inheritance) == (
        "the inherited choice does not overfit (train-val accuracy gap 0.011 <= 0.05); "
        "regularization applies only when overfitting [003]")


def test_technique_phase_runs_the_baseline_first(protocol_url):
    url, _ = protocol_url
    first = load("batchnorm", url).trials[0]
    assert first.user_attrs["baseline"] is True and first.params == {}
    assert first.user_attrs["config"]["norm"] == "none"
    choice = load("batchnorm", url).user_attrs["selection"]
    assert choice["kept_baseline"] == (choice["trial"] == 0)


def test_best_shows_the_choice_and_why(protocol_url):
    url, _ = protocol_url
    result = CliRunner().invoke(cli, ["best", "--study", "lr_sgd", "--storage", url, "--json"])
    assert result.exit_code == 0, result.output
    choice = json.loads(result.output)["choice"]
    assert choice["reason"].startswith(f"trial {choice['trial']} (train_loss_area ")
    assert choice["steps"][0].startswith("train_loss_area: best ")
    assert len(choice["runners_up"]) + len(choice["eliminated"]) == 3  # 4 grid points
    for gone in choice["eliminated"]:
        assert gone["reason"] in {"diverged", "oscillating", "underfitting"}
    text = CliRunner().invoke(cli, ["best", "--study", "lr_sgd", "--storage", url]).output
    assert "protocol choice" in text
    assert "runners-up" in text or "eliminated: trial" in text


def test_test_phase_runs_once(protocol_url):
    url, _ = protocol_url
    with pytest.raises(UsageError, match="already tested .* the test set is used once"):
        run_test("final", url)
    refused = CliRunner().invoke(cli, ["test", "--study", "final", "--storage", url])
    assert refused.exit_code == 2 and refused.output.startswith("error: study `final` was already tested")
    forced = CliRunner().invoke(cli, ["test", "--study", "final", "--storage", url, "--force"])
    assert forced.exit_code == 0 and "test accuracy" in forced.output


def test_phase_without_its_parent_names_the_command(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(cli, ["run", "--study", "architecture", "--storage", url,
                                      "--studies-dir", str(STUDIES)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {STUDIES / 'architecture.yaml'}: inherits `lr_adam_refine`, which has no chosen "
        "trial yet; fix: run `hpsearch run --study lr_adam_refine` (or `hpsearch protocol`) first"
    )
    assert not (tmp_path / "x.db").exists()


def test_from_and_to_select_phases_and_tags_separate_runs(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    outcomes = run_protocol(studies_dir=STUDIES, storage=url, overrides=TINY,
                            start="lr_adam", stop="lr_adam_refine", tag="small")
    assert [o.phase for o in outcomes] == ["lr_adam", "lr_adam_refine"]
    assert {"lr_adam@small", "lr_adam_refine@small"} <= set(optuna.get_all_study_names(url))
    inherited = load("lr_adam_refine@small", url).user_attrs["inherited"]["from"]
    assert inherited[0]["study"] == "lr_adam@small"
    with pytest.raises(UsageError, match="unknown phase `nope`"):
        run_protocol(studies_dir=STUDIES, storage=url, start="nope")


def test_eliminated_trials_are_pruned_with_their_reason(write_study, studies_dir, tmp_path):
    write_study("lr_edges", "base: {dataset: digits, epochs: 6, optimizer: sgd, momentum: 0.9}\n"
                "objective: {metric: train_loss_area}\n"
                "eliminate: [diverged, oscillating, underfitting]\n"
                "sampler: {name: grid}\npruner: {name: none}\n"
                "space:\n  lr: {values: [1.0e+4, 1.0e-7, 0.1]}\n")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    summary = hpsearch.run_study("lr_edges", storage=url, studies_dir=studies_dir)
    reasons = {t.params["lr"]: (t.state, t.user_attrs.get("reason")) for t in load("lr_edges", url).trials}
    assert reasons[1e4] == (TrialState.PRUNED, "diverged")
    assert reasons[1e-7] == (TrialState.PRUNED, "underfitting")
    assert reasons[0.1][0] == TrialState.COMPLETE
    assert summary.choice.config["lr"] == 0.1


def test_failed_setup_check_stops_the_protocol(tmp_path):
    @hpsearch.dataset("raw_pixels")
    def raw_pixels(config):  # not normalised: the setup phase must refuse it
        generator = torch.Generator().manual_seed(0)
        x = torch.rand(400, 1, 8, 8, generator=generator) * 255
        y = torch.randint(0, 3, (400,), generator=generator)
        return {"train": (x[:300], y[:300]), "val": (x[300:], y[300:])}

    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(cli, ["protocol", "--storage", url, "--studies-dir", str(STUDIES),
                                      "--set", "dataset=raw_pixels", "--set", "epochs=2"])
    assert result.exit_code == 1
    assert result.output.startswith("error: setup check failed: ✗ normalisation: ")
    assert "lr_sgd" not in optuna.get_all_study_names(url)
    checks = load("setup", url).user_attrs["setup_checks"]
    assert {c["name"]: c["passed"] for c in checks}["normalisation"] is False


def test_lr_find_records_a_range_the_lr_phase_then_uses(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    args = ["--storage", url, "--studies-dir", str(STUDIES), "--set", "epochs=2"]
    assert CliRunner().invoke(cli, ["run", "--study", "setup", *args]).exit_code == 0
    found = CliRunner().invoke(cli, ["lr-find", "--study", "lr_adam", "--record", *args])
    assert found.exit_code == 0, found.output
    assert found.output.startswith("lr_adam: suggested lr ") and "recorded on the study" in found.output
    assert (tmp_path / "storage" / "plots" / "lr_find_lr_adam.png").read_bytes()[:4] == b"\x89PNG"
    recorded = load("lr_adam", url).user_attrs["lr_range"]
    assert recorded["low"] < recorded["suggested"] <= recorded["high"]
    assert CliRunner().invoke(cli, ["run", "--study", "lr_adam", *args]).exit_code == 0
    tried = sorted(t.params["lr"] for t in load("lr_adam", url).trials)
    assert tried == sorted({recorded["low"], recorded["suggested"], recorded["high"]})


def test_lr_find_refuses_to_record_on_a_study_that_has_trials(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    args = ["--storage", url, "--studies-dir", str(STUDIES), "--set", "epochs=2"]
    assert CliRunner().invoke(cli, ["run", "--study", "lr_adam", *args]).exit_code == 0
    refused = CliRunner().invoke(cli, ["lr-find", "--study", "lr_adam", "--record", *args])
    assert refused.exit_code == 2
    assert refused.output.strip() == (
        "error: lr-find --record: study `lr_adam` already has 3 trial(s) on its file's learning "
        "rates, so a range recorded now would not be used; fix: record it on a new study with "
        "--tag NAME (then `hpsearch run --study lr_adam --tag NAME` searches it), or drop "
        "--record to only see the range and the plot")
    assert "lr_range" not in load("lr_adam", url).user_attrs
    tagged = CliRunner().invoke(cli, ["lr-find", "--study", "lr_adam", "--record", "--tag", "lrf",
                                      *args])
    assert tagged.exit_code == 0, tagged.output
    assert CliRunner().invoke(cli, ["run", "--study", "lr_adam", "--tag", "lrf", *args]).exit_code == 0
    recorded = load("lr_adam@lrf", url).user_attrs["lr_range"]
    assert {t.params["lr"] for t in load("lr_adam@lrf", url).trials} == {
        recorded["low"], recorded["suggested"], recorded["high"]}


@pytest.mark.parametrize("command", [["protocol"], ["test"], ["lr-find"]])
def test_protocol_commands_have_help(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0 and result.output.startswith("Usage: ")


def test_baseline_with_a_one_point_grid(write_study, studies_dir, tmp_path):
    write_study("norm_only", "base: {dataset: digits, epochs: 2}\nobjective: {metric: best_val_acc}\n"
                "baseline: true\nsampler: {name: grid}\npruner: {name: none}\n"
                "space:\n  norm: {choices: [batch]}\n")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    summary = hpsearch.run_study("norm_only", storage=url, studies_dir=studies_dir)
    trials = load("norm_only", url).trials
    assert [t.user_attrs.get("baseline", False) for t in trials] == [True, False]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert summary.budget == 2
    again = hpsearch.run_study("norm_only", storage=url, studies_dir=studies_dir)
    assert again.nothing_to_do and len(load("norm_only", url).trials) == 2


def test_a_baseline_the_space_holds_is_recorded_at_its_coordinates(write_study, studies_dir,
                                                                   tmp_path):
    # A warm start: the inherited choice runs first, and TPE learns from it like from any trial.
    write_study("rates", "base: {dataset: digits, epochs: 2}\nobjective: {metric: best_val_acc}\n"
                "sampler: {name: grid}\npruner: {name: none}\nspace: {lr: {values: [0.003, 0.01]}}\n")
    write_study("around", "inherits: [rates]\nbaseline: true\nobjective: {metric: best_val_acc}\n"
                "sampler: {name: tpe, seed: 0, n_startup_trials: 1}\npruner: {name: none}\n"
                "trials: 3\nspace:\n  lr: {refine: rates, factors: [0.5, 1, 2]}\n"
                "  width: {values: [50, 100]}\n")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    hpsearch.run_study("rates", storage=url, studies_dir=studies_dir)
    hpsearch.run_study("around", storage=url, studies_dir=studies_dir)
    chosen = load("rates", url).user_attrs["selection"]["config"]
    baseline, *searched = load("around", url).trials
    assert baseline.user_attrs["baseline"] is True
    assert baseline.params == {"lr": chosen["lr"], "width": chosen["width"]}  # 100: the default
    assert baseline.user_attrs["config"] == chosen
    assert len(searched) == 2 and not any(t.user_attrs.get("baseline") for t in searched)


def test_a_configuration_already_run_is_not_trained_again(write_study, studies_dir, tmp_path):
    write_study("two_points", "base: {dataset: digits, epochs: 2}\nobjective: {metric: best_val_acc}\n"
                "sampler: {name: tpe, seed: 0, n_startup_trials: 1}\npruner: {name: none}\n"
                "trials: 5\nspace: {lr: {values: [0.003, 0.01]}}\n")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    hpsearch.run_study("two_points", storage=url, studies_dir=studies_dir)
    trials = load("two_points", url).trials
    repeats = [t for t in trials if "repeats" in t.user_attrs]
    trained = [t for t in trials if "repeats" not in t.user_attrs]
    assert len(trials) == 5 and len(trained) == 2  # two points: three trials repeat them
    for repeat in repeats:
        earlier = trials[repeat.user_attrs["repeats"]]
        assert repeat.params == earlier.params and repeat.value == earlier.value
        assert repeat.user_attrs["criteria"] == earlier.user_attrs["criteria"]
        assert "history" not in repeat.user_attrs  # nothing trained: no epochs spent


def test_the_repeat_check_reads_each_finished_trial_once_and_finds_the_earliest(monkeypatch):
    """Each new trial checks whether a finished one trained its configuration already: done
    afresh each time, that rebuilt every finished trial's configuration (7 ms a trial at 400
    trials, growing with the study). Finished trials are indexed as they are first seen;
    the earliest of equal ones is found, whichever finished first (parallel workers)."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from hpsearch import records, repeats
    from hpsearch.config import resolve_config

    def finished(number, lr, state=TrialState.COMPLETE, **facts):
        config = resolve_config(("test", {"dataset": "digits", "lr": lr, "device": "cpu",
                                          "num_workers": number % 2}))  # runtime-only: ignored
        trial = create_trial(state=state, value=None if state != TrialState.COMPLETE else 0.9,
                             params={"lr": lr}, distributions={"lr": FloatDistribution(1e-5, 1)},
                             user_attrs={records.CONFIG: config.to_dict(), **facts})
        trial.number = number
        return trial

    reads = []
    read_config = records.read_config
    monkeypatch.setattr(records, "read_config", lambda t: reads.append(t.number) or read_config(t))
    index = repeats.TrainedConfigurations()
    new_trial = type("Trial", (), {"params": {"lr": 0.01}})()
    wanted = resolve_config(("test", {"dataset": "digits", "lr": 0.01, "device": "cpu"}))
    trials = [finished(2, 0.01), finished(3, 0.02, TrialState.PRUNED),
              finished(4, 0.01, repeats=2), finished(5, 0.03, TrialState.RUNNING)]
    assert index.same_as(new_trial, wanted, trials).number == 2
    trials.insert(0, finished(1, 0.01))  # a worker that started earlier finished later
    assert index.same_as(new_trial, wanted, trials).number == 1
    assert sorted(reads) == [1, 2, 3]  # once each; the repeat (4) and the running trial (5): not
    reads.clear()
    for _ in range(20):
        index.same_as(new_trial, wanted, trials)
    assert reads == []  # nothing is read again: the index answers
    assert index.same_as(new_trial, resolve_config(("test", {"dataset": "digits", "lr": 0.5,
                                                             "device": "cpu"})), trials) is None


def test_a_repeat_of_a_pruned_configuration_is_pruned(write_study, studies_dir, tmp_path):
    write_study("one_point", "base: {dataset: digits, epochs: 3}\nobjective: {metric: best_val_acc}\n"
                "sampler: {name: tpe, seed: 0}\npruner: {name: threshold, lower: 1.01}\n"
                "trials: 2\nspace: {lr: {values: [0.01]}}\n")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    hpsearch.run_study("one_point", storage=url, studies_dir=studies_dir)
    first, second = load("one_point", url).trials
    assert first.state == second.state == TrialState.PRUNED
    assert first.user_attrs["reason"] == "pruned at epoch 1"
    assert second.user_attrs["reason"] == "repeats trial 0, pruned"


def test_a_phase_whose_trials_are_all_eliminated_stops_the_protocol(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    common = ["protocol", "--storage", url, "--studies-dir", str(STUDIES), "--set", "epochs=2"]
    assert CliRunner().invoke(cli, [*common, "--to", "setup"]).exit_code == 0
    # Plain SGD without momentum barely moves in 2 epochs: every grid point underfits.
    result = CliRunner().invoke(cli, [*common, "--from", "lr_sgd", "--to", "lr_sgd",
                                       "--set", "momentum=0.0"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "error: phase `lr_sgd`: no trial survived (underfitting x4); fix: train longer "
        "(--set epochs=N) or widen the phase's search space, then rerun (its budget counts "
        "pruned trials: raise it with --trials-scale)")


def test_an_eliminated_branch_stops_only_the_phases_that_inherit_from_it(tmp_path):
    """SGD's LR steps run just before `optimizer`, which does not inherit from them: every
    SGD rate underfitting (plain SGD at tiny rates, 2 epochs) blocks only `lr_sgd_refine`."""
    folder = tmp_path / "studies"
    folder.mkdir()
    (folder / "lr_sgd.yaml").write_text(
        (STUDIES / "lr_sgd.yaml").read_text().replace("values: [1.0e-1, 3.0e-2, 1.0e-2, 3.0e-3]",
                                                      "values: [1.0e-5, 3.0e-6]"))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(cli, [
        "protocol", "--storage", url, "--studies-dir", str(folder), "--set", "epochs=2",
        "--to", "optimizer", "--trials-scale", "0.15"])
    assert result.exit_code == 0, result.output
    status = {line.split()[0]: line.split()[1] for line in result.output.splitlines()
              if line.split() and line.split()[0] in PHASES}
    assert status == {"setup": "ran", "lr_adam": "ran", "lr_adam_refine": "ran",
                      "architecture": "ran", "regularization": "ran", "batchnorm": "ran",
                      "lr_sgd": "eliminated", "lr_sgd_refine": "blocked", "optimizer": "ran"}
    assert "lr_sgd             eliminated no trial survived (underfitting x2)" in result.output
    assert ("not run: it inherits `lr_sgd`, which has no choice (no trial survived "
            "(underfitting x2))") in result.output
    assert "lr_sgd_refine" not in optuna.get_all_study_names(url)  # nothing stored for it
    assert load("batchnorm", url).user_attrs["selection"]["trial"] is not None


def test_stored_phases_with_other_settings_are_refused_before_any_phase_runs(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    common = ["protocol", "--storage", url, "--studies-dir", str(STUDIES)]
    assert CliRunner().invoke(cli, [*common, "--set", "epochs=4", "--to", "lr_adam"]).exit_code == 0
    stored = sorted(optuna.get_all_study_names(url))
    trials = {name: len(load(name, url).trials) for name in stored}
    result = CliRunner().invoke(cli, [*common, "--set", "epochs=5", "--to", "lr_adam_refine"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: stored phases have other fixed settings than this run: `setup` (epochs stored "
        "4, now 5); `lr_adam` (epochs stored 4, now 5); nothing was run; fix: pass --tag NAME "
        "(e.g. --tag quick) to store this run's phases apart, or rerun with the stored "
        "settings to resume them"]
    assert sorted(optuna.get_all_study_names(url)) == stored  # no phase ran, none was created
    assert {name: len(load(name, url).trials) for name in stored} == trials
    tagged = CliRunner().invoke(cli, [*common, "--set", "epochs=5", "--to", "lr_adam",
                                      "--tag", "quick"])
    assert tagged.exit_code == 0, tagged.output
    assert "lr_adam@quick" in optuna.get_all_study_names(url)


def test_architecture_phase_searches_a_user_models_declared_knobs(tmp_path):
    @hpsearch.model("declared_mlp", space={"hidden": {"type": "int", "low": 8, "high": 64, "log": True}})
    def declared_mlp(config, input_shape, num_classes, hidden=32):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, hidden),
                                   torch.nn.ReLU(), torch.nn.Linear(hidden, num_classes))

    url = f"sqlite:///{tmp_path / 'x.db'}"
    overrides = {"epochs": 3, "model": "declared_mlp"}
    run_protocol(studies_dir=STUDIES, storage=url, overrides=overrides, start="lr_adam",
                 stop="architecture", trials_scale=0.2)
    trials = load("architecture", url).trials
    assert trials and all(set(t.params) == {"model_args.hidden"} for t in trials)
    for trial in trials:
        assert 8 <= trial.user_attrs["config"]["model_args"]["hidden"] <= 64


def test_chaining_through_every_storage_backend(storage_url):
    """Choices and inheritance live in storage: the same chain on SQLite and PostgreSQL."""
    run_protocol(studies_dir=STUDIES, storage=storage_url, overrides={"epochs": 3},
                 start="lr_adam", stop="lr_adam_refine")
    parent = load("lr_adam", storage_url).user_attrs["selection"]
    child = load("lr_adam_refine", storage_url)
    assert child.user_attrs["inherited"]["from"] == [
        {"study": "lr_adam", "trial": parent["trial"], "reason": parent["reason"]}]
    assert grid_lrs(child) == pytest.approx([parent["config"]["lr"] * f for f in (0.5, 1, 2)])


def test_test_phase_must_name_what_it_tests(write_study, studies_dir, tmp_path):
    write_study("test", "phase: test\nobjective: {metric: best_val_acc}\nspace: {}\n")
    with pytest.raises(UsageError) as caught:
        run_protocol(studies_dir=studies_dir, storage=f"sqlite:///{tmp_path / 'x.db'}", start="test")
    assert str(caught.value) == (
        f"{studies_dir / 'test.yaml'}: inherits: the test phase must name the study to test")
