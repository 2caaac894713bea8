"""Reading results back as tables: the protocol's summary, trials, learning curves, the best
trial and the choice. For the CLI, the report, the plots and notebooks.

Everything here reads storage (through records.py) and writes nothing, so it is safe while
workers are running, and it imports no torch: reading answers at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from hpsearch import records
from hpsearch.errors import UsageError
from hpsearch.records import PhaseChoice, TestResult
from hpsearch.spec import catalog, load_study_spec
from hpsearch.spec.catalog import BUNDLED
from hpsearch.spec.catalog import PHASES as PHASE_ORDER
from hpsearch.storage import Storage, connect, find_study, load_study, study_name

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def open_study(study: str, storage: str | Storage | None = None,
               tag: str | None = None) -> optuna.Study:
    """Study `study` (a name, NAME@TAG, or a study file's path) as stored, with `tag`."""
    return load_study(connect(storage, create=False) or storage, study_name(study, tag))


# --- the best trial and the choice ------------------------------------------------------------
@dataclass
class TrialSummary:
    trial: int
    values: dict[str, float | None]
    params: dict[str, Any]
    config: dict[str, Any]
    epochs: int


@dataclass
class Best:
    """A study's best trial(s) on the objective and the protocol's choice, which may differ
    (criteria with tolerances, the baseline rule): the choice is what later phases inherit."""

    study: str
    metrics: list[str]
    directions: list[str]
    best: list[TrialSummary] = field(default_factory=list)  # the Pareto front if several
    choice: PhaseChoice | None = None
    test: TestResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "metrics": self.metrics, "directions": self.directions,
                "best": [vars(b) for b in self.best],
                "choice": self.choice.to_dict() if self.choice else None,
                "test": self.test.to_dict() if self.test else None}


def best(study: str, storage: str | Storage | None = None, *, tag: str | None = None) -> Best:
    """The best trial (or the Pareto front, for several objectives) and the protocol's choice."""
    stored = open_study(study, storage, tag)
    metrics = stored.metric_names or ["value"]
    directions = [d.name.lower() for d in stored.directions]
    completed = stored.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    choice, test = records.read_choice(stored), records.read_test(stored)
    if not completed and choice is None:
        raise _nothing_completed(stored.study_name)
    top = [] if not completed else (stored.best_trials if len(stored.directions) > 1
                                    else [stored.best_trial])
    return Best(stored.study_name, metrics, directions,
                [_trial_summary(t, metrics) for t in top], choice, test)


def _nothing_completed(name: str) -> UsageError:
    base, _, tag = name.partition("@")
    tagged = f" --tag {tag}" if tag else ""
    return UsageError(f"study `{name}` has no completed trial yet; fix: run `hpsearch run "
                      f"--study {base}{tagged}`")


def _trial_summary(trial: FrozenTrial, metrics: list[str]) -> TrialSummary:
    return TrialSummary(trial.number, dict(zip(metrics, trial.values)), dict(trial.params),
                        records.read_config(trial), records.epochs_run(trial))


def runners_up(choice: PhaseChoice) -> pd.DataFrame:
    """The choice's runners-up: trial, its criteria values and its parameters, one row each."""
    rows = [{"trial": r["trial"], **{k: v for k, v in r.items() if k not in ("trial", "params")},
             **{f"param:{k}": v for k, v in (r.get("params") or {}).items()}}
            for r in choice.runners_up]
    return pd.DataFrame(rows)


# --- trials and curves --------------------------------------------------------------------------
def trials(study: str, storage: str | Storage | None = None, *,
           tag: str | None = None) -> pd.DataFrame:
    """One row per trial: number, state, objective value(s), `param:` columns, epochs run,
    duration, why it did not complete, `chosen` and `baseline` flags, then every criterion."""
    stored = open_study(study, storage, tag)
    return trials_frame(stored)


def trials_frame(stored: optuna.Study) -> pd.DataFrame:
    metrics = stored.metric_names or ["value"]
    choice = records.read_choice(stored)
    chosen = choice.trial if choice else None
    rows = [_trial_row(t, metrics, chosen) for t in stored.get_trials(deepcopy=False)]
    return pd.DataFrame(rows)


def _trial_row(trial: FrozenTrial, metrics: list[str], chosen: int | None) -> dict[str, Any]:
    facts = records.TrialFacts.of(trial)
    values = trial.values or [None] * len(metrics)
    row: dict[str, Any] = {"trial": trial.number, "state": trial.state.name}
    row.update(dict(zip(metrics, values)))
    row.update({f"param:{k}": v for k, v in trial.params.items()})
    row["epochs"] = records.epochs_run(trial)
    row["duration_s"] = trial.duration.total_seconds() if trial.duration else None
    row["reason"] = facts.why()
    row["chosen"] = trial.number == chosen
    row["baseline"] = facts.baseline
    criteria = records.read_criteria(trial).to_dict()
    row.update({k: v for k, v in criteria.items() if k not in row})
    return row


def curves(study: str, storage: str | Storage | None = None, *,
           tag: str | None = None) -> pd.DataFrame:
    """Learning curves of every trial in long form: one row per (trial, epoch)."""
    return curves_frame(open_study(study, storage, tag))


def curves_frame(stored: optuna.Study) -> pd.DataFrame:
    rows = [{"trial": t.number, "state": t.state.name, **record.to_dict()}
            for t in stored.get_trials(deepcopy=False) for record in records.read_history(t)]
    return pd.DataFrame(rows)


# --- the protocol as a whole ------------------------------------------------------------------
def summary(storage: str | Storage | None = None, *, tag: str | None = None) -> pd.DataFrame:
    """One row per protocol phase in order: its study, status, the choice and its main
    criterion, trials run, why it was skipped, and the test result (the test phase's row)."""
    backend = connect(storage, create=False)
    rows = [_phase_row(phase, backend, tag) for phase in PHASE_ORDER]
    return pd.DataFrame(rows)


def _phase_row(phase: str, backend: Storage | None, tag: str | None) -> dict[str, Any]:
    name = study_name(phase, tag)
    row: dict[str, Any] = {"phase": phase, "study": name, "status": "not run", "trial": None,
                           "criterion": None, "value": None, "trials": 0, "skipped": None,
                           "test_acc": None, "params": {}}
    if phase == "test":
        return _test_row(row, backend, tag)
    stored = find_study(backend, name) if backend is not None else None
    if stored is None:
        return row
    choice = records.read_choice(stored)
    row["trials"] = len(stored.get_trials(deepcopy=False, states=FINISHED))
    if choice is None:
        row["status"] = "no choice" if row["trials"] else "not run"
        return row
    row.update(status="skipped" if choice.skipped else
               ("kept baseline" if choice.kept_baseline else "chose"),
               trial=choice.trial, criterion=choice.main_criterion, value=choice.main_value(),
               params=choice.params, skipped=choice.reason if choice.skipped else None)
    return row


def _test_row(row: dict[str, Any], backend: Storage | None, tag: str | None) -> dict[str, Any]:
    """The test phase stores its result on the study it tested (`final`)."""
    tested = find_study(backend, study_name("final", tag)) if backend is not None else None
    result = records.read_test(tested) if tested is not None else None
    if result is not None:
        row.update(study=tested.study_name, status="tested", trial=result.trial,
                   criterion="test_acc", value=result.test_acc, test_acc=result.test_acc)
    return row


def overview(studies_dir: str | Path | None = None,
             storage: str | Storage | None = None, *, tag: str | None = None) -> list[dict]:
    """Each study file (the user's, then the installed phases: spec/catalog.py) with where it
    comes from, its phase, description and, from storage, trials done and best value (of
    its `NAME@TAG` study with `tag`)."""
    summaries = _summaries(connect(storage, create=False))
    rows = []
    for entry in catalog(studies_dir):
        spec = load_study_spec(entry.path)
        stored = summaries.get(study_name(spec.name, tag))
        rows.append({
            "study": spec.name,
            "from": str(entry.path) if entry.source != BUNDLED else BUNDLED,
            "phase": spec.phase or "",
            "description": spec.description,
            "done": stored["done"] if stored else 0,
            "budget": "once" if spec.phase == "test" else spec.trials,
            "best": stored["best"] if stored else None,
            "choice": stored["choice"] if stored else "",
        })
    return rows


def _summaries(backend: Storage | None) -> dict[str, dict[str, Any]]:
    if backend is None:
        return {}  # reading must not create an empty database file
    found = {}
    for name in optuna.get_all_study_names(backend):
        stored = optuna.load_study(study_name=name, storage=backend)
        finished = stored.get_trials(deepcopy=False, states=FINISHED)
        found[name] = {"done": len(finished), "best": _best_value(stored),
                       "choice": choice_word(records.read_choice(stored))}
    return found


def choice_word(choice: PhaseChoice | None) -> str:
    """`trial 4`, `baseline (trial 0)` or `skipped`: the protocol's choice in a word or two."""
    if not choice:
        return ""
    if choice.skipped:
        return "skipped"
    prefix = "baseline " if choice.kept_baseline else ""
    return f"{prefix}trial {choice.trial}"


def _best_value(stored: optuna.Study) -> float | None:
    if len(stored.directions) > 1:
        return None
    try:
        value = stored.best_value
    except ValueError:  # no completed trial
        return None
    return None if value is None or math.isnan(value) else value
