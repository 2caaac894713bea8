"""LightningModules trained by their own Trainer loop, reported and pruned by hpsearch."""

from __future__ import annotations

import optuna
import pytest
import torch

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError, UserCodeError
from hpsearch.train import fit, fit_and_test, load_data
from hpsearch.train.contract import contract_for
from hpsearch.train.lightning import build_module
from hpsearch.train.trainers import LIGHTNING, trainer_of
from tests.lightning_doubles import NAMES, write_lightning_project

pytest.importorskip("lightning")  # `pip install hpsearch[lightning]`; .ci/run installs it
CPU = torch.device("cpu")



@pytest.fixture(autouse=True)
def lit(tmp_path):
    return write_lightning_project(tmp_path)


def config(**changes) -> TrainConfig:
    settings = dict(model="hp_lit:Lit", epochs=3, batch_size=64, lr=0.01, logged_metrics=NAMES)
    return TrainConfig(**{**settings, **changes})


def test_a_lightning_module_is_trained_by_lightning_and_honours_its_arguments():
    assert trainer_of(config()) == LIGHTNING
    contract = contract_for(config())
    assert contract.honoured("lr") and contract.honoured("batch_size")  # hpsearch's loaders
    assert not contract.honoured("dropout") and not contract.honoured("optimizer")
    assert "does not declare that it reads `dropout`" in contract.refusal("dropout")


def test_constructors_get_the_arguments_they_name():
    settings = config(lr=0.05, model_args={"hidden": 8})
    module = build_module(settings, load_data(settings, CPU))
    assert (module.lr, module.net[1].out_features, module.net[3].out_features) == (0.05, 8, 10)
    assert module.seen_config is settings


def test_a_model_arg_the_constructor_does_not_take_is_refused():
    settings = config(model_args={"width": 8})
    with pytest.raises(ConfigError, match=r"Lit.__init__ takes no argument width; fix: use its "
                                          r"arguments \(config, num_classes, lr, hidden, fail_in\)"):
        build_module(settings, load_data(settings, CPU))


def test_the_users_training_step_runs_and_its_logged_metrics_are_the_history(lit, tmp_path):
    settings = config()
    model, history = fit(settings, load_data(settings, CPU), CPU)
    assert len(lit.STEPS) == 3 * 21  # 1,294 training digits in batches of 64, three epochs
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert {"train_loss", "val_loss", "val_acc", "lr"} <= set(history[-1])
    assert history[-1]["val_acc"] > 0.5 and history[-1]["lr"] == 0.01
    assert list(tmp_path.iterdir()) == [tmp_path / "hp_lit.py"]  # no logs, no checkpoints


def test_a_lightning_data_module_feeds_the_trainer(lit):
    settings = config(dataset="hp_lit:Data", batch_size=30)
    data = load_data(settings, CPU)
    assert contract_for(settings).honoured("batch_size")  # Data(batch_size=...)
    _, history = fit(settings, data, CPU)
    assert len(lit.STEPS) == 3 * 6  # 180 training samples, batches of 30
    model, result = fit_and_test(settings, data, CPU)
    assert result["epochs"] == 3 and 0 <= result["acc"] <= 1 and result["loss"] > 0


def test_pruning_from_the_report_stops_the_trainer(lit):
    def prune(record):
        raise optuna.TrialPruned(f"pruned at epoch {record['epoch']}")

    settings = config()
    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 1"):
        fit(settings, load_data(settings, CPU), CPU, prune)
    assert len(lit.STEPS) == 21  # one epoch only


@pytest.mark.parametrize(("where", "message"), [
    ("step", r"raised ValueError: bad batch \(at hp_lit.py:\d+, in training_step\)"),
    ("optimizers", r"raised RuntimeError: no optimizer today \(at hp_lit.py:\d+, in "
                   r"configure_optimizers\)"),
])
def test_an_exception_in_the_users_hooks_is_not_ignored(where, message):
    settings = config(model_args={"fail_in": where})
    with pytest.raises(UserCodeError, match=message):
        fit(settings, load_data(settings, CPU), CPU)


def test_a_module_logging_no_validation_metric_names_what_it_logged():
    settings = config(logged_metrics={})  # it logs my/val and my/acc, not val_loss, val_acc
    with pytest.raises(ConfigError) as caught:
        fit(settings, load_data(settings, CPU), CPU)
    assert str(caught.value).startswith(
        "LightningModule `hp_lit:Lit` logged no validation loss or accuracy this epoch (it "
        "logged: my/acc, my/train, my/val, user_steps); fix: self.log(\"val_loss\", ...)")


def test_a_required_argument_nothing_gives_is_named(lit):
    lit.Data.num_classes = None
    settings = config(dataset="hp_lit:Data")
    with pytest.raises(ConfigError, match=r"Lit.__init__ needs num_classes, which nothing gives"):
        fit(settings, load_data(settings, CPU), CPU)


def test_a_lightning_data_module_needs_a_lightning_module():
    from hpsearch.train.preflight import preflight

    settings = TrainConfig(dataset="hp_lit:Data")  # the built-in MLP cannot read it
    with pytest.raises(ConfigError, match=r"base.dataset: `hp_lit:Data` is a LightningDataModule; "
                                          r"fix: name a LightningModule as the model"):
        preflight(settings, load_data(settings, CPU), CPU, "base")


def test_a_stop_request_ends_a_lightning_run_at_its_epoch_without_sys_exit():
    """Lightning turns a KeyboardInterrupt raised in a callback into sys.exit(1): the stop
    request travels as StopRequested and reaches the objective as it is."""
    from hpsearch import interrupt

    settings = config(epochs=50)
    epochs = []

    def stop_after_two(record):
        epochs.append(record["epoch"])
        if len(epochs) == 2:
            interrupt.request_stop()

    try:
        with pytest.raises(interrupt.StopRequested):
            fit(settings, load_data(settings, CPU), CPU, on_epoch=stop_after_two)
    finally:
        interrupt.install(())  # clears the request
    assert epochs == [1, 2]
