"""What hpsearch stores on Optuna studies and trials: every name, a typed record for each,
and one function to write and one to read it.

Everything hpsearch keeps is JSON in Optuna's user attributes (what optuna-dashboard, a
notebook or a plain Optuna script can read). This module is their one owner: the runner, the
protocol phases, the report, the plots and the dashboard notes all go through it, so the
schema lives in one place. A record written by an earlier hpsearch loads as it was: keys it
lacks take their defaults, keys it has that this version does not know are kept.

Trial attributes                          Study attributes
  config        resolved TrainConfig        fixed_settings  what no trial varies
  history       EpochRecord per epoch       study_file, description, phase
  criteria      Criteria over the curves    not_searched    settings the model ignores
  reason        why pruned / not run        augmentation    whether setup tried it, why
  error, error_site  why and where it failed  inherited   {config, from: its parents}
  worker        host:pid device             train_longer    {from, to, patience, reason}
  reproduction  Reproduction                selection       PhaseChoice (with the chosen
  baseline, edge_step, repeats,                             trial's checkpoint)
  over_budget, twin_of                      setup_checks    the sanity checks
                                            test            TestResult (and its checkpoint)
                                            lr_range        LrRange
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol

import optuna
from optuna.trial import FrozenTrial

# --- trial attributes ------------------------------------------------------------------------
CONFIG = "config"
HISTORY = "history"
CRITERIA = "criteria"
REASON = "reason"  # why a trial was pruned: "diverged", "pruned at epoch N", over budget...
ERROR = "error"  # why a trial failed: "ExceptionType: message (at file:line, in fn)"
ERROR_SITE = "error_site"  # where: the same site failing again is the same bug
WORKER = "worker"  # host:pid and device of the worker that ran the trial
REPRODUCTION = "reproduction"  # seed, device, versions, git commit: Reproduction
BASELINE = "baseline"  # True for the inherited configuration, unchanged
EDGE_STEP = "edge_step"  # how many steps beyond its refine grid's edge
REPEATS = "repeats"  # the earlier trial of the same configuration whose outcome it took
OVER_BUDGET = "over_budget"  # created after every slot of the budget was claimed
TWIN = "twin_of"  # sampled what another worker was training
# A trial's last heartbeat through the gRPC proxy, whose protocol carries none: a system
# attribute, seconds since the epoch on the worker's clock (proxy_heartbeats.py).
PROXY_HEARTBEAT = "hpsearch:heartbeat"
# What a retried trial does not take over from the failed one (storage.queue_retry).
NOT_INHERITED_BY_RETRY = (ERROR, ERROR_SITE, HISTORY, CRITERIA, REASON)

# --- study attributes ------------------------------------------------------------------------
FIXED = "fixed_settings"
STUDY_FILE = "study_file"
DESCRIPTION = "description"
PHASE = "phase"
NOT_SEARCHED = "not_searched"  # settings of the phase's space the model does not read
AUGMENTATION = "augmentation"  # whether the setup phase tried augmentation, and why
INHERITED = "inherited"  # the configuration a phase started from, and its sources
TRAIN_LONGER = "train_longer"  # more epochs: the inherited choice was still improving
SELECTION = "selection"  # the phase's choice: PhaseChoice
SETUP_CHECKS = "setup_checks"  # the setup phase's sanity checks
TEST = "test"  # the one test evaluation of the study's choice: TestResult
LR_RANGE = "lr_range"  # recorded by `hpsearch lr-find --record`: LrRange


class AttributeWriter(Protocol):
    """A trial or study, or a batch of a running trial's writes (reports.EpochReports)."""

    def set_user_attr(self, key: str, value: Any) -> None: ...


def json_safe(record: Mapping[str, Any]) -> dict[str, Any]:
    """NaN/inf become None: strict JSON readers (the dashboard's browser side) reject them."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in record.items()}


def _known(cls, data: Mapping[str, Any]) -> dict[str, Any]:
    """`data`'s keys that are fields of `cls`; the others go to its `extra` if it has one."""
    names = {f.name for f in dataclasses.fields(cls)}
    known = {k: v for k, v in data.items() if k in names and k != "extra"}
    if "extra" in names:
        known["extra"] = {k: v for k, v in data.items() if k not in names}
    return known


def _as_dict(record) -> dict[str, Any]:
    """A record as stored: its fields, then its `extra` keys, in one flat mapping."""
    data = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)
            if f.name != "extra"}
    return {**data, **getattr(record, "extra", {})}


class Stored:
    """A record stored as one flat JSON mapping: `from_dict` takes what an earlier (or later)
    hpsearch wrote, `to_dict` gives what is stored."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        return cls(**_known(cls, data))

    def to_dict(self) -> dict[str, Any]:
        return _as_dict(self)


def _write(target: AttributeWriter, name: str, record: Stored) -> None:
    target.set_user_attr(name, record.to_dict())


def _read(holder, name: str, cls: type[Stored]):
    """The record stored under `name` on a study or trial, or None."""
    data = holder.user_attrs.get(name)
    return cls.from_dict(data) if data else None


# --- one epoch ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class EpochRecord(Stored):
    """One epoch of a trial's curves. Losses are means over the epoch's batches; accuracies are
    fractions; `lr` the rate at the epoch's end; a task without accuracy has None there."""

    epoch: int
    train_loss: float | None = None
    train_acc: float | None = None
    val_loss: float | None = None  # on the validation subset (val_subset) when there is one
    val_acc: float | None = None
    lr: float | None = None
    epoch_time_s: float | None = None
    full_val_loss: float | None = None  # the peak epoch on the whole validation split
    full_val_acc: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # metrics a Lightning run logs

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in _as_dict(self).items() if v is not None}


def write_history(target: AttributeWriter, history: Iterable[Mapping[str, Any]]) -> None:
    target.set_user_attr(HISTORY, [json_safe(record) for record in history])


def append_history(target: AttributeWriter, written: list[dict[str, Any]],
                   record: Mapping[str, Any]) -> None:
    """Write the history again with one more epoch: `written` is the history as written so
    far, extended here, each record made JSON-safe once (`write_history` every epoch made
    every record safe again: quadratic in the epochs, 20,100 records for 200 epochs). The
    list written is a copy: a storage that keeps the value as given (Optuna's in-memory
    one) must not see the next epochs appended to it."""
    written.append(json_safe(record))
    target.set_user_attr(HISTORY, list(written))


def read_history(trial: FrozenTrial) -> list[EpochRecord]:
    return [EpochRecord.from_dict(r) for r in trial.user_attrs.get(HISTORY, [])]


def epochs_run(trial: FrozenTrial) -> int:
    """How many epochs the trial trained (a pruned trial: those it ran)."""
    return len(trial.user_attrs.get(HISTORY, []))


# --- criteria ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Criteria:
    """Every criterion of PROTOCOL.md over one trial's curves (protocol/criteria.py) and every
    objective metric (metrics.py), as stored. Look one up by name with `get`."""

    values: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None else value

    @property
    def best_val_acc(self) -> float | None:
        return self.values.get("best_val_acc")

    @property
    def lr_verdict(self) -> str | None:
        return self.values.get("lr_verdict")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.values)


def write_criteria(target: AttributeWriter, criteria: Mapping[str, Any]) -> None:
    target.set_user_attr(CRITERIA, json_safe(criteria))


def read_criteria(trial: FrozenTrial) -> Criteria:
    return Criteria(dict(trial.user_attrs.get(CRITERIA) or {}))


def write_config(target: AttributeWriter, config: Mapping[str, Any]) -> None:
    target.set_user_attr(CONFIG, dict(config))


def read_config(trial: FrozenTrial) -> dict[str, Any]:
    return dict(trial.user_attrs.get(CONFIG) or {})


# --- how a trial ended, and where it ran -----------------------------------------------------
@dataclass(frozen=True)
class TrialFacts:
    """A trial's own attributes besides its config, curves and criteria."""

    reason: str | None = None
    error: str | None = None
    error_site: str | None = None
    worker: str | None = None
    baseline: bool = False
    edge_step: int | None = None
    repeats: int | None = None
    over_budget: bool = False
    twin_of: int | None = None

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialFacts:
        attrs = trial.user_attrs
        return cls(attrs.get(REASON), attrs.get(ERROR), attrs.get(ERROR_SITE),
                   attrs.get(WORKER), bool(attrs.get(BASELINE)), attrs.get(EDGE_STEP),
                   attrs.get(REPEATS), bool(attrs.get(OVER_BUDGET)), attrs.get(TWIN))

    def why(self) -> str | None:
        """Why the trial did not complete, in words: its reason, else its error."""
        return self.reason or self.error


def write_fact(target: AttributeWriter, name: str, value: Any) -> None:
    """One of TrialFacts' attributes (REASON, ERROR, WORKER, BASELINE, EDGE_STEP...)."""
    if name not in _FACTS:
        raise KeyError(f"`{name}` is not a trial fact; facts: {', '.join(sorted(_FACTS))}")
    target.set_user_attr(name, value)


_FACTS = {REASON, ERROR, ERROR_SITE, WORKER, BASELINE, EDGE_STEP, REPEATS, OVER_BUDGET, TWIN}


# --- reproduction -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reproduction(Stored):
    """What reproduces a trial besides its config: the seed, where it ran and with what code
    (PROTOCOL.md: version model, code and configuration [004]). Seeds give no exact
    reproducibility on a GPU [004]: the device is recorded for that reason."""

    seed: int | None = None
    device: str | None = None
    versions: dict[str, str] = field(default_factory=dict)  # hpsearch, torch, optuna, python
    git_commit: str | None = None  # of the working directory, when it is a repository
    git_dirty: bool | None = None  # uncommitted changes there
    extra: dict[str, Any] = field(default_factory=dict)



def write_reproduction(target: AttributeWriter, record: Reproduction) -> None:
    _write(target, REPRODUCTION, record)


def read_reproduction(trial: FrozenTrial) -> Reproduction | None:
    return _read(trial, REPRODUCTION, Reproduction)


# --- a phase's choice ---------------------------------------------------------------------------
@dataclass
class PhaseChoice(Stored):
    """What a phase chose and why: the trial (None when the phase was skipped), its resolved
    configuration and criteria, the selection's steps and runners-up, the trials it
    eliminated, whether it kept the inherited baseline, and a grid's edge extension."""

    trial: int | None
    config: dict[str, Any] = field(default_factory=dict)
    criteria: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    main_criterion: str | None = None
    skipped: bool = False
    kept_baseline: bool = False
    steps: list[str] = field(default_factory=list)  # one line per selection criterion
    why: str = ""  # the steps in words (choices stored before this have only the steps)
    runners_up: list[dict[str, Any]] = field(default_factory=list)  # {trial, criteria..., params}
    eliminated: list[dict[str, Any]] = field(default_factory=list)  # {trial, reason, params}
    extra_epochs: float | None = None  # epochs to converge beyond the baseline's
    extended: dict[str, Any] | None = None  # protocol/edges.py: the grid grown at its edge
    # The chosen trial's checkpoint (checkpoints.py): {artifact_id, store, trial, file, bytes}
    checkpoint: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


    @property
    def values(self) -> Criteria:
        return Criteria(dict(self.criteria))

    def main_value(self) -> Any:
        """The chosen trial's value of the phase's main criterion (None if unknown)."""
        return self.criteria.get(self.main_criterion) if self.main_criterion else None


def write_choice(study: optuna.Study, choice: PhaseChoice) -> None:
    _write(study, SELECTION, choice)


def read_choice(study: optuna.Study) -> PhaseChoice | None:
    return _read(study, SELECTION, PhaseChoice)


# --- the test evaluation ------------------------------------------------------------------------
@dataclass(frozen=True)
class TestResult(Stored):
    """The one evaluation of a study's choice on the test split [000]."""

    __test__ = False  # not a pytest test class, whatever its name

    test_loss: float | None
    test_acc: float | None  # None for a task without accuracy
    trial: int | None  # the chosen trial it retrained
    epochs: int | None
    config: dict[str, Any] = field(default_factory=dict)
    when: str = ""  # ISO 8601, UTC
    checkpoint: dict[str, Any] | None = None  # the tested model's, as PhaseChoice's
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestResult:
        data = {"test_loss": None, "test_acc": None, "trial": None, "epochs": None, **data}
        return cls(**_known(cls, data))

    def text(self) -> str:
        """`test accuracy 0.9516, test loss 0.2301` (the loss alone without accuracy)."""
        parts = [] if self.test_acc is None else [f"test accuracy {self.test_acc:.4f}"]
        loss = "not reported" if self.test_loss is None else f"{self.test_loss:.4g}"
        return ", ".join([*parts, f"test loss {loss}"])


def write_test(study: optuna.Study, result: TestResult) -> None:
    _write(study, TEST, result)


def read_test(study: optuna.Study) -> TestResult | None:
    return _read(study, TEST, TestResult)


# --- the LR range test -------------------------------------------------------------------------
@dataclass(frozen=True)
class LrRange(Stored):
    """A learning-rate range found by the LR range test [004], recorded on a study."""

    low: float
    suggested: float
    high: float
    extra: dict[str, Any] = field(default_factory=dict)


def write_lr_range(study: optuna.Study, found: LrRange) -> None:
    _write(study, LR_RANGE, found)


def read_lr_range(study: optuna.Study) -> LrRange | None:
    return _read(study, LR_RANGE, LrRange)


# --- what a study is ----------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyFacts:
    """A study's own description: where it came from and what it started from."""

    fixed_settings: dict[str, Any] | None = None
    study_file: str | None = None
    description: str = ""
    phase: str | None = None
    not_searched: list[str] = field(default_factory=list)
    augmentation: str | None = None
    inherited: dict[str, Any] = field(default_factory=dict)  # {config, from: [{study, trial}]}
    train_longer: dict[str, Any] | None = None  # {from, to, patience, still_improving, reason}
    setup_checks: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, study: optuna.Study) -> StudyFacts:
        attrs = study.user_attrs
        return cls(attrs.get(FIXED), attrs.get(STUDY_FILE), attrs.get(DESCRIPTION) or "",
                   attrs.get(PHASE), list(attrs.get(NOT_SEARCHED) or []),
                   attrs.get(AUGMENTATION), dict(attrs.get(INHERITED) or {}),
                   attrs.get(TRAIN_LONGER), list(attrs.get(SETUP_CHECKS) or []))

    def parents(self) -> list[str]:
        """The studies whose choices this one started from, in order."""
        return [source["study"] for source in self.inherited.get("from", [])]


def describe_study(study: optuna.Study, fixed: Mapping[str, Any], study_file: str,
                   description: str, phase: str | None) -> None:
    """What a new study is: its fixed settings, file, description and phase."""
    study.set_user_attr(FIXED, dict(fixed))
    study.set_user_attr(STUDY_FILE, study_file)
    study.set_user_attr(DESCRIPTION, description)
    study.set_user_attr(PHASE, phase)


def write_start(study: optuna.Study, inherited: Mapping[str, Any], not_searched: list[str],
                train_longer: Mapping[str, Any] | None, augmentation: str | None) -> None:
    """What a run of the study starts from (rewritten by every run: the parents may change)."""
    study.set_user_attr(INHERITED, dict(inherited))
    study.set_user_attr(NOT_SEARCHED, list(not_searched))
    study.set_user_attr(TRAIN_LONGER, dict(train_longer) if train_longer else None)
    if augmentation is not None:
        study.set_user_attr(AUGMENTATION, augmentation)


def write_setup_checks(study: optuna.Study, checks: list[dict[str, Any]]) -> None:
    study.set_user_attr(SETUP_CHECKS, checks)
