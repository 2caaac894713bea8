"""A phase's choice (protocol/choice.py) reads the same whoever reads it."""

from __future__ import annotations

from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import create_trial

from hpsearch.protocol.choice import choose
from hpsearch.spec import parse_study_spec
from hpsearch.spec.yaml_loader import load_yaml_text

STUDY = (
    "objective: {metric: best_val_acc}\nsampler: {name: tpe, seed: 0}\n"
    "pruner: {name: none}\nspace: {model: {values: [mlp]}, depth: {type: int, low: 1, high: 4}}\n"
)
DISTRIBUTIONS = {"model": CategoricalDistribution(["mlp"]), "depth": IntDistribution(1, 4)}


def _trial(number: int, params: dict, peak: float):
    trial = create_trial(params=params, distributions=DISTRIBUTIONS, value=peak,
                         user_attrs={"criteria": {"best_val_acc": peak}})
    trial.number = number
    return trial


def test_two_workers_reading_a_trials_params_in_other_orders_store_the_same_choice():
    """The worker that ran a trial holds its parameters in the order sampled; another reads
    them in the order their rows were stored: `hpsearch protocol` in two terminals printed
    `chose trial 3 (depth=2, width=100, model=mlp)` and `(model=mlp, depth=2, width=100)`."""
    spec = parse_study_spec(load_yaml_text(STUDY), "studies/s.yaml", "s")
    runner_up = ({"depth": 1, "model": "mlp"}, {"model": "mlp", "depth": 1})
    here = choose([_trial(0, {"model": "mlp", "depth": 2}, 0.97),
                   _trial(1, runner_up[0], 0.969)], spec)
    there = choose([_trial(0, {"depth": 2, "model": "mlp"}, 0.97),
                    _trial(1, runner_up[1], 0.969)], spec)
    assert here.trial == there.trial == 0
    assert list(here.params.items()) == list(there.params.items())
    assert [list(r["params"].items()) for r in here.runners_up] == [
        list(r["params"].items()) for r in there.runners_up] != []
