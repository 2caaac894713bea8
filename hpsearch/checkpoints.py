"""The trained models, kept: the chosen trial of every study and the test phase's model.

A checkpoint holds what resumes or reuses a run [004]: the model's weights (at the peak
epoch the stored criteria were read on), the optimizer's and scheduler's state (at the end of
training), the resolved configuration, the epochs, and what rebuilds the model (input shape,
number of classes). It is stored through Optuna's artifact store (a folder: `--artifacts`,
else $HPSEARCH_ARTIFACTS, else `artifacts/` beside a SQLite file, else `storage/artifacts`),
so workers on several machines point it at one shared folder and optuna-dashboard offers
the files for download.

Disk use stays bounded without retraining anything. While a phase runs, a completed trial
keeps its weights only while it can still be chosen: the inherited baseline, and trials
within the first selection criterion's tolerance of the best so far (the best only gets
better, so a trial that falls out never comes back). Those candidates are plain files in
`<artifacts>/candidates/<study>/`; once the phase has chosen, the chosen one is uploaded as
the study's artifact and the candidates are deleted: one checkpoint per study (an MLP of
3x100 is ~0.4 MB; with Adam's state ~1.2 MB).
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Mapping

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch import records
from hpsearch.records import PhaseChoice
from hpsearch.storage import PROXY_SCHEME, Storage, sqlite_path, url_of

ARTIFACTS_ENV = "HPSEARCH_ARTIFACTS"
DEFAULT_ARTIFACTS = Path("storage") / "artifacts"
FORMAT = "hpsearch-checkpoint/1"
CANDIDATES = "candidates"


def artifact_dir(storage: str | Storage | None = None,
                 explicit: str | os.PathLike | None = None) -> Path:
    """Where checkpoints live: `explicit`, $HPSEARCH_ARTIFACTS, `artifacts/` beside a SQLite
    file, else storage/artifacts (a PostgreSQL storage: point every worker at one folder)."""
    if explicit or os.environ.get(ARTIFACTS_ENV):
        return Path(explicit or os.environ[ARTIFACTS_ENV]).resolve()
    url = url_of(storage)
    path = sqlite_path(url) if url and not url.startswith(PROXY_SCHEME) else None
    return (path.parent / "artifacts").resolve() if path else DEFAULT_ARTIFACTS.resolve()


def artifact_store(directory: Path):
    """Optuna's filesystem artifact store on `directory` (created)."""
    from optuna.artifacts import FileSystemArtifactStore

    directory.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(directory))


def checkpoint_content(trained, config: Mapping[str, Any], study: str, trial: int | None,
                       weights: str = "peak") -> dict[str, Any]:
    """The checkpoint of one run (train/loop.Trained): `weights` "peak" (the weights the
    criteria were read on) or "final" (the model as it ended: the test phase's)."""
    model_state = trained.best_weights() if weights == "peak" else trained.model.state_dict()
    return {
        "format": FORMAT,
        "model_state": {k: v.detach().cpu() for k, v in model_state.items()},
        "optimizer_state": trained.optimizer.state_dict() if trained.optimizer else None,
        "scheduler_state": trained.scheduler.state_dict() if trained.scheduler else None,
        "config": dict(config),
        "peak_epoch": trained.peak_epoch,
        "epochs_trained": trained.epochs,
        "weights": weights,
        "input_shape": list(trained.input_shape),
        "num_classes": trained.num_classes,
        "study": study,
        "trial": trial,
    }


def save(content: Mapping[str, Any], path: Path) -> Path:
    """Write a checkpoint file atomically (a reader never sees half a file)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.part")
    torch.save(dict(content), partial)
    os.replace(partial, path)
    return path


def load(path: str | os.PathLike, map_location: str = "cpu") -> dict[str, Any]:
    """A checkpoint file's content (tensors and plain values only: `weights_only`)."""
    import torch

    return torch.load(path, map_location=map_location, weights_only=True)


# --- candidates while a phase runs --------------------------------------------------------------
class Candidates:
    """A running study's candidate checkpoints: kept while their trial can still be chosen."""

    def __init__(self, directory: Path, study_name: str, spec) -> None:
        self.directory = directory
        self.name = _safe(study_name)
        self.folder = directory / CANDIDATES / self.name
        self.criterion = spec.selection[0] if spec.selection else None
        # Finished trials never change, and the best value only rises as trials finish: each
        # completed trial is taken in once (its value read, the best updated), and its file,
        # once dropped, is not looked at again. Reading every finished trial's criteria and
        # unlinking every lost file again at each trial cost 0.9 ms a trial at 100 trials,
        # 20 ms at 2,000 (0.03 and 0.14 ms now).
        self._taken_in: set[int] = set()
        self._best_so_far: float | None = None
        self._in_reach: dict[int, float | None] = {}  # completed, no baseline, not dropped yet

    def path(self, trial: int) -> Path:
        """Named as the dashboard offers it for download: `architecture-trial-4.pt`."""
        return self.folder / f"{self.name}-trial-{trial}.pt"

    def offer(self, trial: optuna.trial.Trial, trained, config: Mapping[str, Any],
              criteria: Mapping[str, Any], baseline: bool,
              finished: list[FrozenTrial]) -> None:
        """Keep the finishing trial's weights if it can still be chosen; drop those of
        trials that no longer can. `finished`: the study's finished trials as last read (the
        pruner's: a trial another worker finished a moment ago may be missing, which only
        keeps a file a little longer)."""
        self._take_in(finished)
        own = criteria.get(self.criterion.criterion) if self.criterion else None
        best = self._best([self._best_so_far, own])
        if baseline or self._within(own, best):
            save(checkpoint_content(trained, config, trial.study.study_name, trial.number),
                 self.path(trial.number))
        self._drop_out_of_reach(best)

    def _take_in(self, finished: list[FrozenTrial]) -> None:
        """The completed trials not seen before: their values, into the best so far."""
        for trial in finished:
            if trial.number in self._taken_in or trial.state != TrialState.COMPLETE:
                continue
            self._taken_in.add(trial.number)
            value = _value(trial, self.criterion)
            self._best_so_far = self._best([self._best_so_far, value])
            if not records.TrialFacts.of(trial).baseline:  # a baseline's weights stay
                self._in_reach[trial.number] = value

    def _best(self, values: list[float | None]) -> float | None:
        found = [v for v in values if v is not None]
        if not found or self.criterion is None:
            return None
        return max(found) if self.criterion.direction == "maximize" else min(found)

    def _within(self, value: float | None, best: float | None) -> bool:
        if self.criterion is None or best is None:
            return True
        if value is None:
            return False
        gap = best - value if self.criterion.direction == "maximize" else value - best
        return gap <= self.criterion.tolerance

    def _drop_out_of_reach(self, best: float | None) -> None:
        for number, value in list(self._in_reach.items()):
            if not self._within(value, best):
                self.path(number).unlink(missing_ok=True)
                del self._in_reach[number]

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _value(trial: FrozenTrial, criterion) -> float | None:
    return records.read_criteria(trial).get(criterion.criterion) if criterion else None


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_@." else "_" for ch in name)


# --- the chosen trial's checkpoint --------------------------------------------------------------
def keep_chosen(directory: Path, study: optuna.Study, choice: PhaseChoice,
                candidates: Candidates) -> dict[str, Any] | None:
    """The chosen trial's checkpoint, uploaded as the study's artifact once: a rerun, or
    another worker choosing the same trial, finds it stored. None when its weights were not
    kept (a skipped phase; a trial chosen on a rerun that had fallen out of reach before).
    The caller stores the choice, then clears the candidates (`Candidates.clear`): a worker
    that finds the file gone meanwhile takes the reference the other one stored."""
    if choice.trial is None:
        return None
    already = _stored_reference(study, choice.trial)
    if already is not None:
        return already
    path = candidates.path(_trained_trial(study, choice.trial))
    try:
        return upload(directory, study, path, choice.trial)
    except FileNotFoundError:
        # Never kept (a fit hook or Lightning run returns no weights to keep; a trial out of
        # reach), or another worker uploaded it, stored its choice, then cleared the
        # candidates: in that order, so its reference is stored already. No waiting (a wait
        # here held every fit-hook run 10 s at its end).
        return _stored_reference(study, choice.trial)


def _stored_reference(study: optuna.Study, trial: int) -> dict | None:
    """The checkpoint reference already stored with a choice of `trial`."""
    stored = records.read_choice(study)
    if stored and stored.checkpoint and stored.checkpoint.get("trial") == trial:
        return stored.checkpoint
    return None


def _trained_trial(study: optuna.Study, number: int) -> int:
    """The trial whose training `number` is: itself, or the one it repeats (objective.py)."""
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    repeats = records.TrialFacts.of(trial).repeats
    return number if repeats is None else repeats


def upload(directory: Path, study: optuna.Study, path: Path, trial: int | None) -> dict[str, Any]:
    """Store `path` as an artifact of `study`; the reference recorded with the choice."""
    from optuna.artifacts import upload_artifact

    size = path.stat().st_size  # before: the file may be cleared once uploaded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        artifact_id = upload_artifact(artifact_store=artifact_store(directory), file_path=str(path),
                                      study_or_trial=study,
                                      mimetype="application/octet-stream")
    return {"artifact_id": artifact_id, "store": str(directory), "trial": trial,
            "file": path.name, "bytes": size}


def artifact_path(reference: Mapping[str, Any], directory: Path | None = None) -> Path:
    """The file of a stored checkpoint reference (in `directory` when given: a moved store)."""
    return Path(directory or reference["store"]) / reference["artifact_id"]
