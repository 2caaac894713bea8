"""Refine grids extend at their edges.

A refine grid (`lr: {refine: lr_adam, factors: [0.5, 1, 2]}`) is centred on the parent
study's choice. When the phase's choice lands on its largest (or smallest) value, the best
value likely lies beyond it: once the grid is spent and the choice made, one more trial runs
one step beyond that edge (a step multiplies by the end factor over its neighbour: x2 for
[0.5, 1, 2]), the choice is made again, and so on while it sits on the newest value, at most
MAX_EDGE_STEPS steps. The stored choice says what was added and why (`extended`).

Each added trial carries the user attribute `edge_step` (1, 2, ...): a rerun finds the steps
already run and runs none again, and an interrupted step runs on the next run.
"""

from __future__ import annotations

from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch import records
from hpsearch.protocol.choice import choose
from hpsearch.records import PhaseChoice, TrialFacts
from hpsearch.spec._params import Edge, RefinedParam
from hpsearch.spec._refine import MAX_EDGE_STEPS
from hpsearch.storage import fail_stale_trials

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

RunTrial = Callable[[dict[str, Any], dict[str, Any]], None]  # (params, user_attrs): one trial


def extend_at_edges(
    study: optuna.Study, spec, choice: PhaseChoice | None, run: RunTrial | None
) -> PhaseChoice | None:
    """The choice once the grid is extended at the edge it sits on, with its `extended`
    record (the caller stores it); `choice` unchanged when it lies inside the grid, or the
    study has no refine grid to extend. `run` runs one trial at fixed params (None: record
    only)."""
    axis = edge_axis(spec)
    if axis is None or choice is None or not _grid_spent(study, spec):
        return choice
    if run is not None:
        # A step left RUNNING by a killed run, stale by its heartbeat, is failed (and queued
        # again) first, so it resumes instead of looking like another worker's.
        fail_stale_trials(study)
    done = _steps_done(study)
    edge = _edge(axis, choice, done)
    if edge is None:
        return choice
    ladder = (_end(axis, edge), *edge.values)  # the edge, then each step beyond it
    while run is not None and _more(edge, done) and _at(choice, axis, ladder[len(done)]):
        trial = _run_step(study, run, choice, axis, ladder[len(done) + 1], len(done) + 1)
        if trial is None:
            break
        done.append(trial)
        choice = choose(study.get_trials(deepcopy=False), spec)
    choice.extended = _record(study, axis, edge, ladder, done, choice)
    return choice


def _more(edge: Edge, done: list[FrozenTrial]) -> bool:
    return len(done) < len(edge.values)


def edge_axis(spec) -> RefinedParam | None:
    """The grid's one top-level refine axis. With two, which to extend first would change
    what the other finds: such a grid runs as written."""
    if spec.sampler.name != "grid":
        return None
    axes = [p for p in spec.chosen_space().params if isinstance(p, RefinedParam)]
    return axes[0] if len(axes) == 1 and len(axes[0].choices) > 1 else None


def _grid_spent(study: optuna.Study, spec) -> bool:
    """Every grid point has a finished trial (a `--trials` below the grid's size leaves its
    edges untried: they are no evidence of anything beyond)."""
    points = {
        tuple(sorted(t.params.items()))
        for t in study.get_trials(deepcopy=False, states=FINISHED)
        if _step_of(t) is None and not TrialFacts.of(t).baseline
    }
    return len(points) >= spec.chosen_space().grid_size()


def _steps_done(study: optuna.Study) -> list[FrozenTrial]:
    """The finished trial of step 1, 2, ... in order, up to the first step not run (the
    first of duplicates that parallel workers may have run)."""
    by_step: dict[int, FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False, states=FINISHED):
        step = _step_of(trial)
        if step is not None:
            by_step.setdefault(step, trial)
    done: list[FrozenTrial] = []
    while len(done) + 1 in by_step:
        done.append(by_step[len(done) + 1])
    return done


def _step_of(trial: FrozenTrial) -> int | None:
    return TrialFacts.of(trial).edge_step


def _edge(axis: RefinedParam, choice: PhaseChoice, done: list[FrozenTrial]) -> Edge | None:
    """The edge being extended: the side of the steps already run, else the side the choice
    sits on; None when it sits inside the grid."""
    if done:
        value = done[0].params[axis.optuna_name]
    else:
        value = choice.params.get(axis.optuna_name)
        if value not in (min(axis.choices), max(axis.choices)):
            return None
    direction = "up" if value >= max(axis.choices) else "down"
    return next(edge for edge in axis.edges if edge.direction == direction)


def _end(axis: RefinedParam, edge: Edge) -> Any:
    return max(axis.choices) if edge.direction == "up" else min(axis.choices)


def _at(choice: PhaseChoice, axis: RefinedParam, value: Any) -> bool:
    return choice.params.get(axis.optuna_name) == value


def _run_step(
    study: optuna.Study, run: RunTrial, choice: PhaseChoice, axis: RefinedParam,
    value: Any, step: int,
) -> FrozenTrial | None:
    """Run step `step`: the chosen trial's params with the axis at `value` (`run` waits for
    another worker already training it). None when it did not finish: it failed, or a worker
    that cannot be waited for (no heartbeats) is still running it."""
    run({**choice.params, axis.optuna_name: value}, {records.EDGE_STEP: step})
    return _last_of_step(study, step, FINISHED)


def _last_of_step(study: optuna.Study, step: int, states=None) -> FrozenTrial | None:
    trials = study.get_trials(deepcopy=False, states=states)
    return next((t for t in reversed(trials) if _step_of(t) == step), None)


def _record(
    study: optuna.Study, axis: RefinedParam, edge: Edge, ladder: tuple, done: list[FrozenTrial],
    choice: PhaseChoice,
) -> dict[str, Any]:
    """What the extension added and why, for the stored choice (`hpsearch best` prints it)."""
    steps = len(done)
    side = "top" if edge.direction == "up" else "bottom"
    reason = (f"the choice {ladder[0]:g} sat on the {side} edge of the grid "
              f"{_listed(sorted(axis.choices))}; extended by x{edge.step:g} {edge.direction}, "
              f"at most {MAX_EDGE_STEPS} steps")
    if done:
        reason += f": tried {', '.join(f'{v:g}' for v in ladder[1 : steps + 1])}"
    still = _at(choice, axis, ladder[steps])
    reason += "; " + (_still_why(study, axis, edge, ladder, steps) if still
                      else _inside(choice, axis))
    return {
        "setting": axis.name,
        "grid": sorted(axis.choices),
        "direction": edge.direction,
        "step": edge.step,
        "added": list(ladder[1 : steps + 1]),
        "trials": [t.number for t in done],
        "still_at_edge": still,
        "reason": reason,
    }


def _still_why(study: optuna.Study, axis: RefinedParam, edge: Edge, ladder: tuple,
               steps: int) -> str:
    if steps == MAX_EDGE_STEPS:
        return f"still at the edge after {steps} steps: widen the exploration grid"
    if steps == len(edge.values):
        return f"still at the edge: no value beyond {ladder[steps]:g} is valid for `{axis.name}`"
    last = _last_of_step(study, steps + 1)
    if last is not None and last.state == TrialState.RUNNING:
        return f"still at the edge: step {steps + 1} (trial {last.number}) is still running"
    if last is not None and last.state == TrialState.FAIL:
        error = TrialFacts.of(last).error or "unknown error"
        return (f"still at the edge: step {steps + 1} (trial {last.number}) failed: {error}; "
                "rerun to retry")
    return "still at the edge: the extension is unfinished; rerun to resume"


def _inside(choice: PhaseChoice, axis: RefinedParam) -> str:
    value = choice.params.get(axis.optuna_name)
    where = "" if value is None else f" ({axis.name} {value:g})"
    return f"the choice, trial {choice.trial}{where}, lies inside the values tried"


def _listed(values) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"
