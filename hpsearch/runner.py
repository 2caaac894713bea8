"""Running a study: validate everything first, then create or resume it and spend its budget.

The budget is a number of COMPLETE or PRUNED trials counted over the whole study, so a rerun
after an interruption finishes the rest, a rerun of a finished study runs nothing, and
several workers sharing one storage stop together once the study has enough trials.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.errors import StudyMismatchError, TrainingError
from hpsearch.objective import StudyObjective, TrialCrashed
from hpsearch.spec import StudySpec, build_pruner, build_sampler, find_study_file, load_study_spec
from hpsearch.storage import mask_url, open_storage, resolve_storage_url
from hpsearch.train import build_model, load_data, resolve_device

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# A study whose trials crash this many times in a row stops: the cause is in the code or the
# data, and running the rest of the budget would only repeat the same failure.
MAX_CONSECUTIVE_FAILURES = 3

# Study user attributes.
ATTR_FIXED = "fixed_settings"
ATTR_STUDY_FILE = "study_file"
ATTR_DESCRIPTION = "description"
ATTR_PHASE = "phase"


class RunObserver(Protocol):
    """What a front end (progress bar, notebook) hears while a study runs."""

    def on_start(self, study: optuna.Study, budget: int, finished: int) -> None: ...

    def on_trial(self, study: optuna.Study, trial: FrozenTrial) -> None: ...


@dataclass
class RunSummary:
    """The outcome of one `run_study` call."""

    study_name: str
    storage: str  # URL with the password masked
    budget: int
    finished_before: int  # COMPLETE + PRUNED trials before this run
    new_trials: list[int] = field(default_factory=list)  # numbers of the trials this run ran
    counts: dict[str, int] = field(default_factory=dict)  # whole study: state name -> count

    @property
    def nothing_to_do(self) -> bool:
        return self.finished_before >= self.budget


def resolve_spec(study: str | Path | StudySpec, studies_dir: str | Path | None) -> StudySpec:
    """A StudySpec from a spec, a study name looked up in `studies_dir`, or a YAML path."""
    if isinstance(study, StudySpec):
        return study
    return load_study_spec(find_study_file(str(study), Path(studies_dir or "studies")))


def run_study(
    study: str | Path | StudySpec,
    *,
    trials: int | None = None,
    storage: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    name: str | None = None,
    studies_dir: str | Path | None = None,
    observer: RunObserver | None = None,
) -> RunSummary:
    """Run study `study` until it has `trials` COMPLETE or PRUNED trials (default: the file's).

    Everything that can be wrong with the input (study file, overrides, model, data set) is
    checked before storage is touched, so a bad request writes nothing.
    """
    spec = resolve_spec(study, studies_dir)
    budget = spec.trials if trials is None else trials
    objective = _prepared_objective(spec, dict(overrides or {}))
    url = resolve_storage_url(storage)
    optuna_study = _open_study(spec, name or spec.name, open_storage(url), objective)
    summary = RunSummary(optuna_study.study_name, mask_url(url), budget, _finished(optuna_study))
    if not summary.nothing_to_do:
        _optimize(optuna_study, objective, budget, summary, observer)
    summary.counts = _state_counts(optuna_study)
    return summary


def _prepared_objective(spec: StudySpec, overrides: dict[str, Any]) -> StudyObjective:
    """Resolve the fixed configuration and build its data and model once, to fail early."""
    objective = StudyObjective(spec, overrides)
    config = objective.config_for({})
    objective.device = resolve_device(config.device)
    where = f"{spec.path}: base"
    data = load_data(config, objective.device, where=f"{where}.dataset")  # cached for trials
    build_model(config, data.input_shape, data.num_classes, where=f"{where}.model")
    return objective


def fixed_settings(spec: StudySpec, objective: StudyObjective) -> dict[str, Any]:
    """The settings no trial of this study varies: they define what its trials compare."""
    sampled = spec.space.sampled_settings()
    fixed = objective.config_for({}).fixed_settings(exclude=sampled)
    for name in sampled:  # `model_args.hidden` is sampled: drop that entry, keep the others
        head, _, key = name.partition(".")
        if key and head in fixed:
            fixed[head] = {k: v for k, v in fixed[head].items() if k != key}
    return fixed


def _open_study(
    spec: StudySpec, name: str, storage: optuna.storages.BaseStorage, objective: StudyObjective
) -> optuna.Study:
    fixed = fixed_settings(spec, objective)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=build_sampler(spec),
        pruner=build_pruner(spec),
        directions=list(spec.objective.directions),
        load_if_exists=True,
    )
    _reseed_on_resume(study, spec)
    stored = study.user_attrs.get(ATTR_FIXED)
    if stored is None:
        _describe_study(study, spec, fixed)
    elif stored != fixed:
        raise StudyMismatchError(_mismatch_message(name, stored, fixed))
    return study


def _reseed_on_resume(study: optuna.Study, spec: StudySpec) -> None:
    """Offset the sampler's seed by the trials already stored.

    A resumed (or second) worker seeded like the first would replay the first worker's
    random draws and duplicate its trials; seed + stored trials keeps runs reproducible
    without repeats.
    """
    stored = len(study.get_trials(deepcopy=False))
    if stored and spec.sampler.seed is not None:
        sampler = spec.sampler.model_copy(update={"seed": spec.sampler.seed + stored})
        study.sampler = build_sampler(spec.model_copy(update={"sampler": sampler}))


def _describe_study(study: optuna.Study, spec: StudySpec, fixed: dict[str, Any]) -> None:
    study.set_user_attr(ATTR_FIXED, fixed)
    study.set_user_attr(ATTR_STUDY_FILE, str(spec.path))
    study.set_user_attr(ATTR_DESCRIPTION, spec.description)
    study.set_user_attr(ATTR_PHASE, spec.phase)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(spec.objective.metrics))


def _mismatch_message(name: str, stored: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    keys = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
    diffs = ", ".join(f"{k} (stored {stored.get(k)!r}, now {now.get(k)!r})" for k in keys)
    return (
        f"study `{name}` exists with other fixed settings: {diffs}; fix: run with the stored "
        f"settings to resume it, or pass --name OTHER to store this run as a study of its own"
    )


def _optimize(
    study: optuna.Study,
    objective: StudyObjective,
    budget: int,
    summary: RunSummary,
    observer: RunObserver | None,
) -> None:
    if observer is not None:
        observer.on_start(study, budget, summary.finished_before)
    guard = _BudgetGuard(budget, summary, observer)
    study.optimize(objective, callbacks=[guard], catch=(TrialCrashed,), gc_after_trial=False)
    if guard.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
        raise TrainingError(
            f"{guard.consecutive_failures} trials in a row failed; last: {guard.last_error}; "
            "fix: correct the model or data code (the error is stored on each failed trial)"
        )


@dataclass
class _BudgetGuard:
    """Optuna callback: stop at the budget, or after repeated crashes; feed the observer."""

    budget: int
    summary: RunSummary
    observer: RunObserver | None
    consecutive_failures: int = 0
    last_error: str = ""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.summary.new_trials.append(trial.number)
        self._count_failure(trial)
        if self.observer is not None:
            self.observer.on_trial(study, trial)
        if _finished(study) >= self.budget or self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
            study.stop()

    def _count_failure(self, trial: FrozenTrial) -> None:
        if trial.state != TrialState.FAIL:
            self.consecutive_failures = 0
            return
        self.consecutive_failures += 1
        self.last_error = str(trial.user_attrs.get("error", "unknown error"))


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def _state_counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts
