"""The Optuna objective: the only place that calls `suggest_*`, `report` and `should_prune`.

It samples a trial's parameters from the study's search space, resolves the full training
configuration, trains (the training loop knows nothing of Optuna) and returns the study's
metric(s). Every trial stores its resolved configuration and its whole per-epoch history as
user attributes, so curves can be drawn and any run reproduced from storage alone.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch import interrupt, records
from hpsearch.checkpoints import Candidates
from hpsearch.config import TrainConfig, resolve_config
from hpsearch.errors import HpsearchError, TrainingError, UserCodeError
from hpsearch.metrics import METRICS, metric_value, require_metric
from hpsearch.protocol.criteria import all_criteria
from hpsearch.repeats import TrainedConfigurations
from hpsearch.reports import AttributeBatch, EpochReports, params_held
from hpsearch.spec import StudySpec
from hpsearch.storage import count_trials
from hpsearch.train import Diverged, load_data, train
from hpsearch.train.user_code import crash_site, describe
from hpsearch.versions import reproduction

# Twins in a row after which a worker trains the point anyway: on a space so small that
# other workers hold every point, reseeding cannot help, and a repeat beats an endless loop.
MAX_TWINS_IN_A_ROW = 3
# Trials that hold a slot of the budget: finished ones, and those running or queued to run.
CLAIMS = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def _running_twin(trial: optuna.trial.Trial, trials: list[FrozenTrial]) -> FrozenTrial | None:
    """Another worker process's RUNNING trial with the same sampled parameters: workers
    started apart on an empty study (two terminals, compose replicas) get the same sampler
    seed, so they would train the same points in lockstep."""
    if not trial.params or trial.user_attrs.get(records.BASELINE):
        return None
    ours = _process(trial.user_attrs.get(records.WORKER))
    for other in (t for t in trials if t.state == TrialState.RUNNING):
        worker = _process(records.TrialFacts.of(other).worker)
        if (other.number != trial.number and other.params == trial.params
                and worker and worker != ours):
            return other
    return None


def _from_another_process(earlier: FrozenTrial, trial: optuna.trial.Trial) -> bool:
    theirs = _process(records.TrialFacts.of(earlier).worker)
    return bool(theirs) and theirs != _process(trial.user_attrs.get(records.WORKER))


def _process(worker: str | None) -> str:
    """`host:pid` of a trial's `worker` record (`host:pid device`), or ""."""
    return str(worker or "").partition(" ")[0]


class OverBudget(TrainingError):
    """Every slot of the budget was claimed by earlier trials (other workers) before this
    trial was created: it ends at once, FAIL, marked `over_budget`, and its worker stops."""


def claims_before(study: optuna.Study, number: int) -> int:
    """How many trials numbered below `number` hold a slot of the budget. Trial numbers are
    given out by the storage one by one, so they order the claims of every worker on every
    machine: the trial that comes after the last slot sees it taken."""
    return count_trials(study, CLAIMS, number_below=number)


class TwinTrial(TrainingError):
    """This trial sampled what another worker is training: it ends at once, FAIL, marked
    `twin_of`, and this worker's sampler is reseeded so the two go apart."""


class TrialCrashed(TrainingError):
    """A trial raised an unexpected exception; the study goes on with the next trial."""

    def __init__(self, message: str, site: str):
        super().__init__(message)
        self.site = site


@dataclass
class StudyObjective:
    """Callable objective for `study.optimize`, bound to one study file and its overrides."""

    spec: StudySpec
    overrides: Mapping[str, Any] = field(default_factory=dict)  # --set, highest precedence
    device: Any = "cpu"  # torch.device the worker trains on
    inherited: Mapping[str, Any] = field(default_factory=dict)  # earlier phases' choice
    # The phase's own epochs when its inherited choice is undertrained (protocol/longer.py).
    longer: Mapping[str, Any] = field(default_factory=dict)
    # Trials this process started, in order: what an interrupted run reports on.
    started: list[int] = field(default_factory=list)
    # The study's budget while workers search (None: a queued trial that runs regardless).
    budget: int | None = None
    # (claimed slots, highest trial number) as counted after this worker's last trial
    # (runner.py): the next trial's claim reuses it when no trial was created in between.
    claims_counted: tuple[int, int] | None = None
    # While a queued trial is run (baseline, grid extension): the user attributes it was
    # queued with. A trial without them is a fresh one, created because another worker ran
    # the queued trial first: it ends at once instead of training a random sample.
    queued: Mapping[str, Any] | None = None
    twins_in_a_row: int = 0
    # What the study's finished trials trained: a new trial that repeats one is not retrained.
    trained: TrainedConfigurations = field(default_factory=TrainedConfigurations)
    # Where a completed trial's weights are kept while it can still be chosen (None: not).
    candidates: Candidates | None = None
    # Hears each epoch of the trial this process trains (a progress bar): (trial, record).
    epoch_listener: Callable[[int, dict], None] | None = None
    # TensorBoard event files of every trial go under this folder (None: none are written).
    tensorboard: Path | None = None

    def config_for(self, sampled: Mapping[str, Any], longer: bool = True) -> TrainConfig:
        """defaults < inherited < study base (+ fixed values) < sampled < --set < longer
        training (unless `longer` is False: what the phase starts from)."""
        return resolve_config(
            ("inherited configuration", self.inherited),
            (f"{self.spec.path}: base", self.spec.fixed_values()),
            (f"{self.spec.path}: space", sampled),
            ("--set", self.overrides),
            (f"{self.spec.path}: train_longer", self.longer if longer else {}),
        )

    def __call__(self, trial: optuna.trial.Trial) -> float | list[float]:
        self.started.append(trial.number)
        try:
            interrupt.check()  # asked to stop while Optuna created this trial
            self._claim(trial)
            return self._run(trial)
        except interrupt.StopRequested:
            raise KeyboardInterrupt from None  # Optuna marks the trial FAIL and re-raises
        except UserCodeError as err:  # raised in the user's code: this trial fails, not all
            raise self._crashed(trial, str(err), err.site) from err
        except (optuna.TrialPruned, HpsearchError, KeyboardInterrupt) as err:
            if isinstance(err, HpsearchError):
                records.write_fact(trial, records.ERROR, str(err))
            raise
        except Exception as err:  # a crash in the model's forward, CUDA out of memory...
            raise self._crashed(trial, describe(err), crash_site(err)) from err

    def _claim(self, trial: optuna.trial.Trial) -> None:
        """Go on only if a slot of the budget is left for this trial: `--trials 12` gives 12,
        however many workers ask at once (Optuna's own count overshoots by up to jobs - 1)."""
        if self.queued is not None:
            if any(trial.user_attrs.get(k) != v for k, v in self.queued.items()):
                records.write_fact(trial, records.OVER_BUDGET, True)
                records.write_fact(trial, records.REASON, "the queued trial it was to run was "
                                                          "run by another worker")
                raise OverBudget(f"trial {trial.number}: another worker ran the queued trial")
            return
        if self.budget is None or trial.user_attrs.get(records.BASELINE):
            return
        taken = self._claims_before(trial)
        if taken >= self.budget:
            records.write_fact(trial, records.OVER_BUDGET, True)
            records.write_fact(trial, records.REASON, f"over budget: {taken} of {self.budget} "
                                                      "slots were taken by earlier trials")
            raise OverBudget(f"trial {trial.number}: the budget of {self.budget} is taken")

    def _claims_before(self, trial: optuna.trial.Trial) -> int:
        """The claims of the trials numbered below this one. When this trial's number
        follows the last one counted after this worker's previous trial, the trials below it
        are exactly the ones counted then; a trial can leave the claims since (fail) but
        never join them (a retry is a new trial, with a new number), so that count is an
        upper bound of today's: under the budget, the slot is free. (At the budget it is
        counted again: a slot may have been freed since.) One count a trial instead of two,
        each a round trip on PostgreSQL (benchmarks/storage_overhead.py)."""
        counted, self.claims_counted = self.claims_counted, None
        if (counted is not None and trial.number == counted[1] + 1
                and counted[0] < self.budget):
            return counted[0]
        return claims_before(trial.study, trial.number)

    def baseline_coordinates(self) -> dict[str, Any]:
        """Where the configuration this phase starts from sits in its space ({} when no point
        holds it). The baseline trial is enqueued there, so its params are recorded and the
        sampler learns from it like from any trial: the phase's search is warm-started with
        the inherited choice."""
        return self.spec.space.coordinates(self.config_for({}).to_dict()) or {}

    def _sampled(self, trial: optuna.trial.Trial) -> dict[str, Any]:
        """The sampled settings. The baseline trial is the inherited configuration unchanged:
        it suggests only at its enqueued coordinates, where the space holds it."""
        if not trial.user_attrs.get(records.BASELINE):
            return self.spec.space.suggest(trial)
        if not self.baseline_coordinates():
            return {}
        sampled = self.spec.space.suggest(trial)  # the enqueued values: the inherited ones
        if self.config_for(sampled) != self.config_for({}):  # queued before the space held it
            records.write_fact(trial, records.BASELINE, False)
        return sampled

    @staticmethod
    def _twin(trial: optuna.trial.Trial, twin: FrozenTrial) -> TwinTrial:
        trial.study.sampler.reseed_rng()  # from the OS: this process's sequence is its own now
        records.write_fact(trial, records.TWIN, twin.number)
        records.write_fact(trial, records.REASON, f"twin of trial {twin.number} (another worker "
                                                  "with the same sampler seed); sampler reseeded")
        return TwinTrial(f"trial {trial.number} repeats running trial {twin.number}")

    @staticmethod
    def _crashed(trial: optuna.trial.Trial, message: str, site: str) -> TrialCrashed:
        records.write_fact(trial, records.ERROR, message)
        records.write_fact(trial, records.ERROR_SITE, site)
        return TrialCrashed(f"trial {trial.number} failed: {message}", site)

    def _run(self, trial: optuna.trial.Trial) -> float | list[float]:
        with params_held(trial):  # the parameters and start facts: one transaction
            config = self.config_for(self._sampled(trial))
            start = AttributeBatch(trial)  # stored before the twin check reads
            records.write_config(start, config.to_dict())
            records.write_fact(start, records.WORKER, f"{socket.gethostname()}:{os.getpid()} "
                                                      f"{self.device}")
            records.write_reproduction(start, reproduction(config, self.device))
            start.write()
        trials = trial.study.get_trials(deepcopy=False)  # one read for both checks below
        twin = (_running_twin(trial, trials) if self.twins_in_a_row < MAX_TWINS_IN_A_ROW
                else None)
        if twin is not None:
            self.twins_in_a_row += 1
            raise self._twin(trial, twin)
        self.twins_in_a_row = 0
        earlier = self.trained.same_as(trial, config, trials)
        if earlier is not None:
            if _from_another_process(earlier, trial):
                trial.study.sampler.reseed_rng()  # a twin that was faster: go apart now
            return self._repeat(trial, earlier)
        data = load_data(config, self.device)  # cached per worker process
        reports = EpochReports(trial, trials)
        try:
            return self._train(trial, config, data, reports)
        finally:
            reports.flush(last=True)  # however the trial ends, stored with its end

    def _train(self, trial: optuna.trial.Trial, config: TrainConfig, data,
               reports: EpochReports) -> float | list[float]:
        history: list[dict] = []
        trained: list = []  # what a checkpoint needs, given once the run ended normally
        try:
            train(config, data, self.device, on_epoch=self._reporter(reports, history),
                  on_trained=trained.append if self.candidates else None,
                  tensorboard=self._run_folder(trial))
        except Diverged as diverged:
            records.write_history(reports, diverged.history)
            records.write_criteria(reports, trial_criteria(diverged.history))
            records.write_fact(reports, records.REASON, "diverged")
            raise optuna.TrialPruned(f"diverged: non-finite train loss at epoch {diverged.epoch}")
        criteria = trial_criteria(history)
        records.write_criteria(reports, criteria)
        self._eliminate(reports, criteria)
        # A metric the history never reports (a hook without val_acc) is an error, not NaN.
        values = [require_metric(name, history) for name in self.spec.objective.metrics]
        if trained:
            baseline = bool(trial.user_attrs.get(records.BASELINE))
            self.candidates.offer(trial, trained[0], config.to_dict(), criteria, baseline,
                                  reports.finished())
        return values[0] if len(values) == 1 else values

    def _run_folder(self, trial: optuna.trial.Trial) -> Path | None:
        """This trial's TensorBoard folder: <tensorboard>/<study>/trial-<N> [001]."""
        if self.tensorboard is None:
            return None
        study = "".join(c if c.isalnum() or c in "-_@." else "_" for c in trial.study.study_name)
        return self.tensorboard / study / f"trial-{trial.number}"

    def _repeat(self, trial: optuna.trial.Trial, earlier: FrozenTrial) -> float | list[float]:
        """The outcome of the earlier trial, without training: the seed is part of the
        configuration, so training again would only repeat it (TPE proposes a point again
        once it is sure of it, most often on a small categorical space: 2-3 of 12 trials
        in a refine-style search). The trial records which it repeats and has no curve."""
        records.write_fact(trial, records.REPEATS, earlier.number)
        if earlier.state == TrialState.PRUNED:
            records.write_fact(trial, records.REASON, f"repeats trial {earlier.number}, pruned")
            raise optuna.TrialPruned(f"repeats trial {earlier.number}, which was pruned")
        records.write_criteria(trial, records.read_criteria(earlier).to_dict())
        return earlier.values[0] if len(earlier.values) == 1 else list(earlier.values)

    def _eliminate(self, reports: EpochReports, criteria: Mapping[str, Any]) -> None:
        """PROTOCOL.md's eliminatory criteria: prune the trial with the verdict as reason."""
        verdict = criteria.get("lr_verdict")
        if verdict is not None and verdict in self.spec.eliminate:
            records.write_fact(reports, records.REASON, verdict)
            raise optuna.TrialPruned(f"eliminated: {verdict}")

    def _reporter(self, reports: EpochReports, history: list[dict]):
        metrics = self.spec.objective.metrics
        single = len(metrics) == 1  # Optuna cannot prune multi-objective trials
        prunable = single and self.spec.pruner.name != "none"

        written: list[dict] = []  # the history as written (JSON-safe)

        def on_epoch(record: dict) -> None:
            interrupt.check()  # a user's fit hook or Lightning: the epoch is the safe point
            history.append(record)
            records.append_history(reports, written, record)  # written with the next flush
            if self.epoch_listener is not None:
                self.epoch_listener(reports.trial.number, record)
            if not single:
                return
            epoch = int(record["epoch"])
            reports.report(epoch, metric_value(metrics[0], history))
            if prunable and reports.should_prune():
                records.write_fact(reports, records.REASON, f"pruned at epoch {epoch}")
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        return on_epoch


def trial_criteria(history: list[dict]) -> dict[str, Any]:
    """Every metric and criterion of the protocol over one history, JSON-safe."""
    values: dict[str, Any] = dict(all_criteria(history))
    for name in METRICS:
        values[name] = metric_value(name, history)
    return records.json_safe(values)
