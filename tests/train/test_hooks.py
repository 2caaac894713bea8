"""Fit hooks: the user's own training, reported epoch by epoch, pruned through `report`."""

from __future__ import annotations

import optuna
import pytest
import torch

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError, UserCodeError
from hpsearch.train import Diverged, fit, fit_and_test, load_data

CPU = torch.device("cpu")

HOOKS = '''
import math, torch

def good(config, data, device, report):
    for epoch in range(1, config.epochs + 1):
        report(epoch, train_loss=1.0 / epoch, val_loss=torch.tensor(2.0 / epoch),
               val_acc=0.5 + 0.1 * epoch, gan_loss=3.0, val_size=len(data.val))
    return "the model"

def silent(config, data, device, report):
    return None

def broken(config, data, device, report):
    report(1, train_loss=1.0)
    raise KeyError("generator")

def swallows(config, data, device, report):
    try:
        report(1, train_loss=1.0, val_loss=1.0)
    except Exception:
        raise RuntimeError("wrapped by the user")

def twice(config, data, device, report):
    report(1, train_loss=1.0)
    report(1, train_loss=0.5)

def text(config, data, device, report):
    report(1, train_loss="low")

def nan(config, data, device, report):
    report(1, train_loss=math.nan)
'''


@pytest.fixture(autouse=True)
def hooks(tmp_path, monkeypatch):
    (tmp_path / "hp_hooks.py").write_text(HOOKS)
    monkeypatch.syspath_prepend(str(tmp_path))


def run(hook: str, on_epoch=None, epochs: int = 3):
    config = TrainConfig(fit=f"hp_hooks:{hook}", epochs=epochs)
    return fit(config, load_data(config, CPU), CPU, on_epoch)


def test_a_hook_reports_its_own_metrics_and_returns_its_model():
    seen = []
    model, history = run("good", seen.append)
    assert model == "the model" and history == seen
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[1]["val_loss"] == 1.0 and history[2]["gan_loss"] == 3.0  # tensors as floats
    assert all(r["epoch_time_s"] >= 0 for r in history)


def test_pruning_raised_in_report_passes_through_the_hook():
    def prune_at_two(record):
        if record["epoch"] == 2:
            raise optuna.TrialPruned("pruned at epoch 2")

    with pytest.raises(optuna.TrialPruned):
        run("good", prune_at_two)


def test_our_exception_stays_ours_even_if_the_hook_wraps_it():
    def prune(record):
        raise optuna.TrialPruned()

    with pytest.raises(UserCodeError, match="wrapped by the user"):  # the user changed it
        run("swallows", prune)


def test_an_exception_in_the_hook_names_its_line():
    with pytest.raises(UserCodeError) as caught:
        run("broken")
    assert str(caught.value) == (
        "fit hook `hp_hooks:broken` raised KeyError: 'generator' (at hp_hooks.py:15, in broken); "
        "fix: correct the code there (rerun with --debug for the whole traceback)")


def test_a_hook_that_never_reports_is_refused():
    with pytest.raises(UserCodeError, match=r"returned without calling report\(epoch, ...\)"):
        run("silent")


@pytest.mark.parametrize(("hook", "message"), [
    ("twice", r"report\(epoch=1, ...\) after epoch 1; fix: report each epoch once"),
    ("text", r"report\(..., train_loss='low'\): a metric must be a number"),
])
def test_bad_reports_are_one_line(hook, message):
    with pytest.raises(ConfigError, match=message):
        run(hook)


def test_a_non_finite_train_loss_is_a_divergence():
    with pytest.raises(Diverged):
        run("nan")


def test_the_test_phase_gives_the_hook_the_test_split_as_val():
    config = TrainConfig(fit="hp_hooks:good", epochs=2)
    data = load_data(config, CPU)
    model, result = fit_and_test(config, data, CPU)
    assert result == {"loss": 1.0, "acc": 0.7, "epochs": 2}
    _, history = fit(config, data, CPU)
    assert history[0]["val_size"] == len(data.val) != len(data.test)
