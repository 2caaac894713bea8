"""Reading results back: best trials, trial tables and learning curves, for the CLI and notebooks.

Everything here reads storage and writes nothing, so it is safe while workers are running.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from hpsearch.errors import UsageError
from hpsearch.objective import ATTR_CONFIG, ATTR_ERROR, ATTR_HISTORY, ATTR_REASON
from hpsearch.protocol.chain import ATTR_SELECTION
from hpsearch.runner import FINISHED
from hpsearch.spec import catalog, load_study_spec
from hpsearch.spec.catalog import BUNDLED
from hpsearch.storage import mask_url, open_storage, resolve_storage_url, storage_exists


def load_study(name: str, storage: str | None = None) -> optuna.Study:
    """The stored study `name`, or a UsageError saying how to create it."""
    url = resolve_storage_url(storage)
    if storage_exists(url):
        storage = open_storage(url)
        if name in optuna.get_all_study_names(storage):
            return optuna.load_study(study_name=name, storage=storage)
    raise UsageError(
        f"no study `{name}` in {mask_url(url)}; fix: run `hpsearch run --study {name}` first, "
        "or pass the --storage that holds it"
    )


def best(name: str, storage: str | None = None) -> dict[str, Any]:
    """The best trial (or the Pareto front, for several objectives) with its configuration."""
    study = load_study(name, storage)
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed and study.user_attrs.get(ATTR_SELECTION):
        return {"study": name, "metrics": study.metric_names or ["value"], "best": [],
                "choice": study.user_attrs[ATTR_SELECTION]}  # a skipped phase
    if not completed:
        raise UsageError(
            f"study `{name}` has no completed trial yet; fix: run `hpsearch run --study {name}`"
        )
    metrics = study.metric_names or ["value"]
    chosen = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    return {
        "study": name,
        "metrics": metrics,
        "directions": [d.name.lower() for d in study.directions],
        "best": [_trial_summary(t, metrics) for t in chosen],
        # The protocol's choice (criteria with tolerances, baseline) and why: what later
        # phases inherit. It may differ from Optuna's best on the objective alone.
        "choice": study.user_attrs.get(ATTR_SELECTION),
    }


def _trial_summary(trial: FrozenTrial, metrics: list[str]) -> dict[str, Any]:
    return {
        "trial": trial.number,
        "values": dict(zip(metrics, trial.values)),
        "params": trial.params,
        "config": trial.user_attrs.get(ATTR_CONFIG, {}),
        "epochs": len(trial.user_attrs.get(ATTR_HISTORY, [])),
    }


def trials(name: str, storage: str | None = None) -> pd.DataFrame:
    """One row per trial: number, state, value(s), parameters, epochs run, reason/error."""
    study = load_study(name, storage)
    metrics = study.metric_names or ["value"]
    rows = [_trial_row(t, metrics) for t in study.get_trials(deepcopy=False)]
    return pd.DataFrame(rows)


def _trial_row(trial: FrozenTrial, metrics: list[str]) -> dict[str, Any]:
    values = trial.values or [None] * len(metrics)
    row: dict[str, Any] = {"trial": trial.number, "state": trial.state.name}
    row.update(dict(zip(metrics, values)))
    row.update({f"param:{k}": v for k, v in trial.params.items()})
    row["epochs"] = len(trial.user_attrs.get(ATTR_HISTORY, []))
    row["reason"] = trial.user_attrs.get(ATTR_REASON) or trial.user_attrs.get(ATTR_ERROR)
    row["duration_s"] = trial.duration.total_seconds() if trial.duration else None
    return row


def curves(name: str, storage: str | None = None) -> pd.DataFrame:
    """Learning curves of every trial in long form: one row per (trial, epoch)."""
    study = load_study(name, storage)
    rows = [
        {"trial": t.number, "state": t.state.name, **record}
        for t in study.get_trials(deepcopy=False)
        for record in t.user_attrs.get(ATTR_HISTORY, [])
    ]
    return pd.DataFrame(rows)


def overview(studies_dir: str | Path | None = None, storage: str | None = None) -> list[dict]:
    """Each study file (the user's, then the installed phases: spec/catalog.py) with where it
    comes from, its phase, description and, from storage, trials done and best value."""
    url = resolve_storage_url(storage)
    summaries = _summaries(url)
    rows = []
    for entry in catalog(studies_dir):
        spec = load_study_spec(entry.path)
        stored = summaries.get(spec.name)
        rows.append(
            {
                "study": spec.name,
                "from": str(entry.path) if entry.source != BUNDLED else BUNDLED,
                "phase": spec.phase or "",
                "description": spec.description,
                "done": stored["done"] if stored else 0,
                "budget": "once" if spec.phase == "test" else spec.trials,
                "best": stored["best"] if stored else None,
                "choice": stored["choice"] if stored else "",
            }
        )
    return rows


def _summaries(url: str) -> dict[str, dict[str, Any]]:
    if not storage_exists(url):
        return {}  # reading must not create an empty database file
    storage = open_storage(url)
    found = {}
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        finished = study.get_trials(deepcopy=False, states=FINISHED)
        found[name] = {
            "done": len(finished),
            "best": _best_value(study),
            "choice": _choice_text(study.user_attrs.get(ATTR_SELECTION)),
        }
    return found


def _choice_text(choice: dict | None) -> str:
    """`trial 4`, `baseline (trial 0)` or `skipped`: the protocol's choice in a word or two."""
    if not choice:
        return ""
    if choice.get("skipped"):
        return "skipped"
    prefix = "baseline " if choice.get("kept_baseline") else ""
    return f"{prefix}trial {choice['trial']}"


def _best_value(study: optuna.Study) -> float | None:
    if len(study.directions) > 1:
        return None
    try:
        value = study.best_value
    except ValueError:  # no completed trial
        return None
    return None if value is None or math.isnan(value) else value

