"""Everything resolved and checked before a study runs a trial.

In order: the inherited configuration (earlier phases' choices), the search space for this
model (adapt.py: family, declared knobs, honoured settings, refinements), `--set` against
it, the fixed configuration's data and one training step (to fail early), then the stored
study: created, or resumed when its fixed settings match. Bad input raises before storage is
written.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna

from hpsearch import records
from hpsearch.adapt import Adapted, adapt, check_overrides, check_task, try_augmentation
from hpsearch.checkpoints import Candidates, artifact_dir
from hpsearch.config import resolve_config
from hpsearch.errors import StudyMismatchError, UsageError
from hpsearch.objective import StudyObjective
from hpsearch.protocol.chain import Inheritance, merge
from hpsearch.protocol.longer import LongerTraining, longer_training
from hpsearch.records import PhaseChoice
from hpsearch.spec import StudySpec, build_pruner, build_sampler
from hpsearch.storage import Storage, connect, find_study, study_name
from hpsearch.train import load_data, resolve_device
from hpsearch.train.contract import contract_for
from hpsearch.train.preflight import preflight
from hpsearch.train.registry import add_import_root


@dataclass
class PreparedStudy:
    """A study ready to run: its resolved spec, objective, stored study and inheritance."""

    spec: StudySpec
    objective: StudyObjective
    study: optuna.Study
    inheritance: Inheritance
    skip: str | None = None  # why the phase has nothing to search for this model
    not_searched: list[str] = field(default_factory=list)  # settings the model ignores
    longer: LongerTraining | None = None  # more epochs: the inherited choice is undertrained
    augmentation: str | None = None  # whether the phase tries augmentation, and why


def stored_name_function(tag: str | None) -> Callable[[str], str]:
    """Study names in storage: `lr_adam`, or `lr_adam@TAG` for a tagged protocol run."""
    return lambda name: study_name(name, tag)


def stored_choice(storage: Storage | None, name: str) -> PhaseChoice | None:
    """The choice stored on study `name`, or None if it has none (or does not exist)."""
    study = find_study(storage, name) if storage is not None else None
    return records.read_choice(study) if study is not None else None


def inherit(spec: StudySpec, storage: Storage | None, stored_name: Callable[[str], str]
            ) -> Inheritance:
    """What `spec` starts from: its parents' choices merged in order; `inherits_if_run`
    parents only once they have a choice. A required parent without one is an error."""
    parents = []
    for parent in spec.parents():
        name = stored_name(parent)
        choice = stored_choice(storage, name)
        if choice is None and parent in spec.inherits_if_run:
            continue  # not run yet: the phase starts from its own base
        if choice is None:
            raise UsageError(
                f"{spec.path}: inherits `{name}`, which has no chosen trial yet; fix: run "
                f"`hpsearch run --study {parent}` (or `hpsearch protocol`) first"
            )
        parents.append((name, choice))
    return merge(parents)


def prepare_study(
    spec: StudySpec,
    storage: str | Storage | None,
    overrides: Mapping[str, Any],
    name: str | None = None,
    tag: str | None = None,
    worker: int = 0,
    artifacts: str | Path | None = None,
) -> PreparedStudy:
    """Resolve, validate, then create or resume the stored study (`worker`: see workers.py;
    `artifacts`: where checkpoints go, checkpoints.artifact_dir)."""
    stored_name = stored_name_function(tag)
    if spec.path is not None:
        add_import_root(spec.path.parent)  # factories resolve from the study file's folder
    existing = connect(storage, create=False)
    inheritance = inherit(spec, existing, stored_name)
    objective = StudyObjective(spec, dict(overrides), inherited=inheritance.config)
    adapted = _adapted(spec, objective, existing, stored_name)
    spec = objective.spec = adapted.spec
    longer = longer_training(spec, inheritance, objective.config_for({}).epochs)
    objective.longer = longer.settings() if longer else {}
    if adapted.skip is None:
        _build_once(spec, objective)
    backend = existing or connect(storage)  # created only now that the input is valid
    study = _open_study(spec, name or stored_name(spec.name), backend, objective)
    objective.candidates = Candidates(artifact_dir(storage, artifacts), study.study_name, spec)
    spec = _with_recorded_lr_range(spec, study)
    objective.spec = spec
    study.sampler = (optuna.samplers.RandomSampler() if adapted.skip
                     else _sampler_for(spec, study, worker))
    records.write_start(study, inheritance.to_dict(), adapted.not_searched,
                        longer.to_dict() if longer else None, adapted.augmentation)
    return PreparedStudy(spec, objective, study, inheritance, adapted.skip, adapted.not_searched,
                         longer, adapted.augmentation)


def _adapted(spec, objective, storage, stored_name) -> Adapted:
    """The spec for this model (adapt.py), `--set` checked against what it searches."""
    config = resolve_config(
        ("inherited configuration", objective.inherited),
        (f"{spec.path}: base", spec.base),
        ("--set", objective.overrides),
    )  # the space is not chosen yet: it depends on the model
    contract = contract_for(config, f"{spec.file}: base.model")

    def chosen(parent: str) -> PhaseChoice | None:
        return stored_choice(storage, stored_name(parent))

    def data():  # the data are cached: trials load them again free
        return load_data(config, resolve_device(config.device))

    # `--set model=...` pins the model: a phase that may choose the family then does not.
    pinned = "model" in objective.overrides
    adapted = adapt(spec, config, contract, chosen,
                    None if pinned else (lambda: data().input_shape))
    if adapted.skip is None:
        adapted.spec, adapted.augmentation = try_augmentation(
            adapted.spec, objective.overrides, data)
    check_overrides(adapted.spec, objective.overrides, contract)
    return adapted


def _build_once(spec: StudySpec, objective: StudyObjective) -> None:
    """Load the data, build the model and take one training step with the fixed
    configuration: errors every trial would raise surface now, before storage is written."""
    config = objective.config_for({})
    objective.device = resolve_device(config.device)
    where = f"{spec.path}: base"
    data = load_data(config, objective.device, where=f"{where}.dataset")  # cached for trials
    check_task(spec, config, data)
    preflight(config, data, objective.device, where)


def fixed_settings(spec: StudySpec, objective: StudyObjective) -> dict[str, Any]:
    """The settings no trial of this study varies: they define what its trials compare."""
    sampled = spec.space.sampled_settings()
    fixed = objective.config_for({}).fixed_settings(exclude=sampled)
    for name in sampled:  # `model_args.hidden` is sampled: drop that entry, keep the others
        head, _, key = name.partition(".")
        if key and head in fixed:
            fixed[head] = {k: v for k, v in fixed[head].items() if k != key}
    return fixed


def _open_study(spec, name, storage, objective) -> optuna.Study:
    fixed = fixed_settings(spec, objective)
    study = _load_or_create(name, storage, build_pruner(spec), list(spec.objective.directions))
    stored = records.StudyFacts.of(study).fixed_settings
    if stored is None:
        _describe_study(study, spec, fixed)
    elif stored != fixed:
        raise StudyMismatchError(_mismatch_message(name, stored, fixed))
    return study


def _load_or_create(name: str, storage, pruner: optuna.pruners.BasePruner,
                    directions: list[str]) -> optuna.Study:
    """The stored study, else a new one. Loaded first: Optuna's create-or-load inserts the
    study's row and catches the duplicate key, which PostgreSQL logs as an ERROR (three lines
    in the server's log) at every run of every worker on a study that exists."""
    try:
        return optuna.load_study(study_name=name, storage=storage, pruner=pruner)
    except KeyError:  # not stored: of two workers creating it at once, one inserts, one loads
        return optuna.create_study(study_name=name, storage=storage, pruner=pruner,
                                   directions=directions, load_if_exists=True)


def _describe_study(study: optuna.Study, spec: StudySpec, fixed: dict[str, Any]) -> None:
    records.describe_study(study, fixed, str(spec.path), spec.description, spec.phase)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(spec.objective.metrics))


def _mismatch_message(name: str, stored: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    keys = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
    diffs = ", ".join(f"{k} (stored {stored.get(k)!r}, now {now.get(k)!r})" for k in keys)
    return (
        f"study `{name}` exists with other fixed settings: {diffs}; fix: run with the stored "
        "settings to resume it, or pass --tag NAME (hpsearch run and protocol) or --name OTHER "
        "(hpsearch run) to store this run as a study of its own"
    )


def _with_recorded_lr_range(spec: StudySpec, study: optuna.Study) -> StudySpec:
    """Use the LR range recorded by `hpsearch lr-find --record` for the `lr` parameter."""
    found = records.read_lr_range(study)
    if not found or "lr" not in spec.space.sampled_settings():
        return spec
    low, suggested, high = found.low, found.suggested, found.high
    if spec.sampler.name == "grid":
        raw = {"values": sorted({low, suggested, high})}
    else:
        raw = {"type": "float", "low": low, "high": high, "log": True}
    return spec.with_space(spec.space.replace("lr", raw))


# Seed distance between parallel workers started together (they see the same stored count).
WORKER_SEED_STRIDE = 100_003


def _sampler_for(
    spec: StudySpec, study: optuna.Study, worker: int = 0
) -> optuna.samplers.BaseSampler:
    """The study file's sampler, its seed offset by the trials already stored and the worker.

    A resumed (or second) worker seeded like the first would replay the first worker's
    random draws and duplicate its trials; seed + stored trials (+ a stride per parallel
    worker) keeps runs reproducible without repeats.
    """
    offset = len(study.get_trials(deepcopy=False)) + WORKER_SEED_STRIDE * worker
    if offset and spec.sampler.seed is not None:
        sampler = spec.sampler.model_copy(update={"seed": spec.sampler.seed + offset})
        spec = spec.model_copy(update={"sampler": sampler})
    return build_sampler(spec)
