"""Refine grids extend at their edges (protocol/edges.py): the step and its bound, the
ladder walked over stored trials (no training), then end to end on digits."""

from __future__ import annotations

import math

import optuna
import pytest
from click.testing import CliRunner
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState, create_trial

import hpsearch
from hpsearch import records, runner
from hpsearch.cli import cli
from hpsearch.protocol.choice import choose
from hpsearch.protocol.edges import extend_at_edges
from hpsearch.spec import build_sampler, parse_space, parse_study_spec
from hpsearch.spec._params import ChoiceParam, RefinedParam
from hpsearch.spec._refine import MAX_EDGE_STEPS
from hpsearch.spec.yaml_loader import load_yaml_text

optuna.logging.set_verbosity(optuna.logging.WARNING)

GRID = [0.0015, 0.003, 0.006]  # Adam 3e-3 refined by [0.5, 1, 2]


def resolved(text: str, value: float, edge_steps: int = MAX_EDGE_STEPS):
    space = parse_space(load_yaml_text(text), "studies/s.yaml")
    return space.resolve_refinements(lambda parent, setting: value, edge_steps)


def edges_of(text: str, value: float) -> dict:
    (param,) = resolved(text, value).params
    return {edge.direction: (edge.step, edge.values) for edge in param.edges}


# --- the step and the bound ------------------------------------------------------------

def test_a_step_is_the_end_factor_over_its_neighbour_and_the_bound_is_two_steps():
    assert MAX_EDGE_STEPS == 2
    assert edges_of("lr: {refine: p, factors: [0.5, 1, 2]}", 3e-3) == {
        "up": (2.0, (0.012, 0.024)), "down": (0.5, (0.00075, 0.000375))}


def test_steps_and_values_keep_6_significant_digits():
    # SGD's [0.67, 1, 1.67] around 0.1: 0.1 * 1.67**2 = 0.27889, * 1.67**3 = 0.465746...
    assert edges_of("lr: {refine: p, factors: [1.67, 1, 0.67]}", 0.1) == {
        "up": (1.67, (0.27889, 0.465746)), "down": (0.67, (0.04489, 0.0300763))}


def test_an_int_ladder_stops_where_rounding_adds_nothing_new():
    assert edges_of("epochs: {refine: p, factors: [0.5, 1, 2]}", 1) == {
        "up": (2.0, (4, 8)), "down": (0.5, ())}


def test_the_range_holds_the_grid_and_every_extension_while_the_grid_keeps_its_points():
    space = resolved("lr: {refine: p, factors: [0.5, 1, 2]}", 3e-3)
    assert space.grid() == {"lr": GRID}
    assert space.distributions() == {"lr": FloatDistribution(0.000375, 0.024, log=True)}
    ints = resolved("epochs: {refine: p, factors: [0.5, 1, 2]}", 10)
    assert ints.grid() == {"epochs": [5, 10, 20]}
    assert ints.distributions() == {"epochs": IntDistribution(1, 80, log=True)}  # 10 * 0.5**3 -> 1


def test_only_a_grid_top_level_numeric_refine_can_extend():
    assert isinstance(resolved("lr: {refine: p, factors: [0.5, 1, 2]}", 3e-3).params[0],
                      RefinedParam)
    assert isinstance(resolved("lr: {refine: p, factors: [0.5, 1, 2]}", 3e-3, 0).params[0],
                      ChoiceParam)  # not a grid: the categorical as before
    assert type(resolved("lr: {refine: p, factors: [1]}", 3e-3).params[0]) is ChoiceParam
    branch = resolved("optimizer: {choices: [adam], when: {adam: "
                      "{lr: {refine: p, factors: [0.5, 1, 2]}}}}", 3e-3)
    assert branch.distributions()["lr[adam]"] == CategoricalDistribution(GRID)


def test_the_grid_sampler_runs_its_points_through_the_range():
    spec = grid_spec()
    study = optuna.create_study(sampler=build_sampler(spec))
    study.optimize(lambda trial: spec.space.suggest(trial)["lr"], n_trials=3)
    assert sorted(t.params["lr"] for t in study.trials) == GRID


# --- the ladder over stored trials -------------------------------------------------------

GRID_STUDY = (
    "objective: {metric: train_loss_area}\nsampler: {name: grid, seed: 0}\n"
    "pruner: {name: none}\nspace: {lr: {refine: lr_adam, factors: [0.5, 1, 2]}}\n"
)


def grid_spec():
    spec = parse_study_spec(load_yaml_text(GRID_STUDY), "studies/s.yaml", "s")
    return spec.with_space(spec.space.resolve_refinements(lambda p, s: 3e-3, MAX_EDGE_STEPS))


def add(study, spec, lr, loss, **attrs):
    """A finished trial at `lr` whose train-loss area is `loss(lr)`."""
    value = loss(lr)
    study.add_trial(create_trial(
        params={"lr": lr}, distributions={"lr": spec.space.params[0].distribution},
        value=value, user_attrs={"criteria": {"train_loss_area": value}, **attrs}))


class Runs:
    """The runner's `run` callable, recording the values it ran; `fail` makes one fail."""

    def __init__(self, study, spec, loss, fail=None):
        self.study, self.spec, self.loss, self.fail, self.values = study, spec, loss, fail, []

    def __call__(self, params, user_attrs):
        self.values.append(params["lr"])
        if params["lr"] == self.fail:
            self.study.add_trial(create_trial(state=TrialState.FAIL, user_attrs=user_attrs))
            return
        add(self.study, self.spec, params["lr"], self.loss, **user_attrs)


def best_at(best):
    return lambda lr: abs(math.log(lr / best))


def graded(loss, points=GRID):
    spec = grid_spec()
    study = optuna.create_study()
    for lr in points:
        add(study, spec, lr, loss)
    return study, spec, Runs(study, spec, loss)


def extend(study, spec, run):
    """As the runner does: choose, extend at the edge, store the choice."""
    choice = extend_at_edges(study, spec, choose(study.get_trials(deepcopy=False), spec), run)
    records.write_choice(study, choice)
    return choice


def test_a_choice_on_the_top_edge_walks_up_to_the_bound_and_says_to_widen_the_grid():
    study, spec, run = graded(best_at(1.0))
    choice = extend(study, spec, run)
    assert run.values == [0.012, 0.024]
    assert choice.params["lr"] == 0.024
    record = choice.extended
    assert {k: record[k] for k in ("setting", "grid", "direction", "step", "added")} == {
        "setting": "lr", "grid": GRID, "direction": "up", "step": 2.0, "added": [0.012, 0.024]}
    assert record["still_at_edge"] is True
    assert record["reason"] == (
        "the choice 0.006 sat on the top edge of the grid [0.0015, 0.003, 0.006]; extended by "
        "x2 up, at most 2 steps: tried 0.012, 0.024; still at the edge after 2 steps: widen "
        "the exploration grid")
    assert study.user_attrs["selection"] == choice.to_dict()
    assert [t.user_attrs.get(records.EDGE_STEP) for t in study.trials] == [None] * 3 + [1, 2]


def test_the_walk_stops_once_the_choice_is_back_inside():
    study, spec, run = graded(best_at(0.012))
    choice = extend(study, spec, run)
    assert run.values == [0.012, 0.024]  # 0.012 was the new edge: one more step checked it
    assert choice.params["lr"] == 0.012 and choice.extended["still_at_edge"] is False
    assert choice.extended["reason"].endswith(
        f"tried 0.012, 0.024; the choice, trial {choice.trial} (lr 0.012), lies inside "
        "the values tried")


def test_a_choice_on_the_bottom_edge_walks_down():
    study, spec, run = graded(best_at(1.2e-3))  # 0.0015 beats 0.00075
    choice = extend(study, spec, run)
    assert run.values == [0.00075]
    assert choice.params["lr"] == 0.0015
    assert choice.extended["direction"] == "down"
    assert choice.extended["reason"].startswith(
        "the choice 0.0015 sat on the bottom edge of the grid [0.0015, 0.003, 0.006]; extended "
        "by x0.5 down, at most 2 steps: tried 0.00075; ")


def test_an_interior_choice_extends_nothing():
    study, spec, run = graded(best_at(3e-3))
    choice = extend(study, spec, run)
    assert run.values == [] and choice.extended is None


def test_a_grid_not_spent_extends_nothing():
    study, spec, run = graded(best_at(1.0), points=GRID[1:])  # `--trials 2`
    assert extend(study, spec, run).extended is None and run.values == []


def test_a_rerun_runs_no_step_again_and_keeps_the_choice():
    study, spec, run = graded(best_at(1.0))
    first = extend(study, spec, run)
    again = Runs(study, spec, best_at(1.0))
    assert extend(study, spec, again) == first and again.values == []


def test_an_interrupted_extension_resumes_at_its_step():
    study, spec, run = graded(best_at(1.0))
    run.fail = 0.024
    choice = extend(study, spec, run)
    assert choice.extended["added"] == [0.012]
    assert choice.extended["reason"].endswith("still at the edge: step 2 (trial 4) failed: "
                                                 "unknown error; rerun to retry")
    resumed = Runs(study, spec, best_at(1.0))
    assert extend(study, spec, resumed).extended["added"] == [0.012, 0.024]
    assert resumed.values == [0.024]


def test_a_pass_that_may_run_nothing_records_what_is_left():
    study, spec, _ = graded(best_at(1.0))
    choice = extend(study, spec, None)  # the workers' summary pass: a zero budget
    assert choice.extended["added"] == []
    assert choice.extended["reason"].endswith(
        "still at the edge: the extension is unfinished; rerun to resume")


# --- end to end on digits ----------------------------------------------------------------

# SGD at a rate far too small: every larger rate lowers the train-loss area, so the choice
# lands on the top edge of the refinement, and on each step beyond it.
TINY_LR = ("base: {dataset: digits, epochs: 3, optimizer: sgd, momentum: 0.0}\n"
           "objective: {metric: train_loss_area}\nsampler: {name: grid}\npruner: {name: none}\n"
           "space:\n  lr: {values: [1.0e-4]}\n")
REFINE = ("inherits: [lr_tiny]\nobjective: {metric: train_loss_area}\n"
          "selection: [{criterion: train_loss_area}]\n"
          "sampler: {name: grid}\npruner: {name: none}\n"
          "space:\n  lr: {refine: lr_tiny, factors: FACTORS}\n")


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'edges.db'}"


@pytest.fixture
def run(write_study, studies_dir, url):
    write_study("lr_tiny", TINY_LR)

    def run_refine(factors: str):
        write_study("lr_refine", REFINE.replace("FACTORS", factors))
        hpsearch.run_study("lr_tiny", storage=url, studies_dir=studies_dir)
        return hpsearch.run_study("lr_refine", storage=url, studies_dir=studies_dir)

    return run_refine


class Observer:
    def __init__(self):
        self.calls = []

    def on_start(self, study, budget, finished):
        self.calls.append(("start", budget, finished))

    def on_trial(self, study, trial):
        self.calls.append(("trial", trial.number))


def interrupt_at_step_2(monkeypatch):
    """Queue step 2, then stop as Ctrl-C would: the rerun must run that trial, not another."""
    original = runner._run_enqueued

    def run_enqueued(study, objective, guard, params, user_attrs, **waiting):
        if user_attrs.get(records.EDGE_STEP) == 2:
            study.enqueue_trial(params, user_attrs=user_attrs)
            raise KeyboardInterrupt
        original(study, objective, guard, params, user_attrs, **waiting)

    monkeypatch.setattr(runner, "_run_enqueued", run_enqueued)


def test_a_refinement_chosen_at_its_edge_runs_the_steps_beyond(run, url, studies_dir,
                                                                 monkeypatch):
    with monkeypatch.context() as patched:
        interrupt_at_step_2(patched)
        with pytest.raises(KeyboardInterrupt):
            run("[0.5, 1, 2]")
    observer = Observer()
    summary = hpsearch.run_study("lr_refine", storage=url, studies_dir=studies_dir,
                                 observer=observer)
    study = optuna.load_study(study_name="lr_refine", storage=url)
    assert summary.new_trials == [4] and not summary.nothing_to_do  # step 2 resumed
    assert observer.calls == [("start", 3, 4), ("trial", 4)]
    lrs = {t.user_attrs.get(records.EDGE_STEP): t.params["lr"] for t in study.trials}
    assert sorted(t.params["lr"] for t in study.trials) == [5e-5, 1e-4, 2e-4, 4e-4, 8e-4]
    assert (lrs[1], lrs[2]) == (4e-4, 8e-4)
    assert summary.choice.config["lr"] == 8e-4
    assert summary.choice.extended["added"] == [4e-4, 8e-4]
    assert summary.choice.extended["reason"].endswith("widen the exploration grid")
    assert study.user_attrs["selection"] == summary.choice.to_dict()

    again = hpsearch.run_study("lr_refine", storage=url, studies_dir=studies_dir)
    assert again.nothing_to_do and again.new_trials == []
    assert again.choice == summary.choice
    assert len(optuna.load_study(study_name="lr_refine", storage=url).trials) == 5
    shown = CliRunner().invoke(cli, ["best", "--study", "lr_refine", "--storage",
                                     url]).output
    assert "grid extended: the choice 0.0002 sat on the top edge of the grid [5e-05, 0.0001, " \
           "0.0002]; extended by x2 up, at most 2 steps: tried 0.0004, 0.0008" in shown


def test_a_refinement_chosen_inside_its_grid_runs_nothing_more(run, url):
    summary = run("[1, 100, 10000]")  # 1e-4, 1e-2, 1: 1e-2 wins at 3 epochs
    study = optuna.load_study(study_name="lr_refine", storage=url)
    assert len(study.trials) == 3 and summary.choice.extended is None
    assert summary.choice.config["lr"] == 0.01
