"""Where study files come from: the user's folder first, then the phase files that install
with hpsearch, so `hpsearch protocol` runs from any working directory.

The user's folder is `--studies-dir`, else $HPSEARCH_STUDIES_DIR, else `./studies` when it
exists; a file there overrides the installed phase of the same name (a project's own
`architecture.yaml`, say). The installed files are the package `hpsearch.studies`, built
from the repository's top-level `studies/` (pyproject.toml maps one onto the other).
"""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path

from hpsearch.errors import UsageError, format_problem
from hpsearch.spec._messages import did_you_mean

STUDIES_DIR_ENV = "HPSEARCH_STUDIES_DIR"
DEFAULT_USER_DIR = Path("studies")
STUDY_SUFFIXES = (".yaml", ".yml")
BUNDLED = "installed"  # a phase file installed with hpsearch

# The installed phases in the order `hpsearch protocol` runs them (and reports and notebooks
# list them), PROTOCOL.md's: setup, learning rate (explore then refine), model (architecture,
# regularization, BatchNorm), micro-optimisation (optimizer, its options, scheduler), the
# final configuration trained longer while its curves still rise, and the test set once at
# the very end [000, 001, 004]. The model phases start from Adam (it converges faster
# [000]), so Adam's two LR steps run first. SGD's feed only phase 4's comparison of
# optimizers ("another optimizer: redo the two LR steps" [000]; no phase inherits from
# them), so they run there, just before `optimizer`: the model phases, where most of the
# gain is, start ~160 epochs sooner. Measured (three MNIST seeds, MLP space,
# benchmarks/search_quality.py): the best validation accuracy at 25% of the budget went
# from 0.9549 to 0.9628 on the mean, every choice unchanged
# (docs/results/mnist_mlp_sgd_lr_late_s*.json).
PHASES = (
    "setup",
    "lr_adam",
    "lr_adam_refine",
    "architecture",
    "regularization",
    "batchnorm",
    "lr_sgd",
    "lr_sgd_refine",
    "optimizer",
    "optimizer_options",
    "scheduler",
    "final",
    "test",
)


@dataclass(frozen=True)
class StudyFile:
    """One study file and where it comes from: the user's folder or hpsearch's own."""

    name: str
    path: Path
    source: str  # the user's folder as given (`studies`), or BUNDLED


def bundled_dir() -> Path:
    """The folder of the phase files installed with hpsearch."""
    return Path(str(importlib.resources.files("hpsearch.studies")))


def user_dir(studies_dir: str | Path | None = None) -> Path | None:
    """The user's study folder: the one given, $HPSEARCH_STUDIES_DIR, or ./studies if any."""
    given = studies_dir or os.environ.get(STUDIES_DIR_ENV)
    if given is None:
        return DEFAULT_USER_DIR if DEFAULT_USER_DIR.is_dir() else None
    folder = Path(given)
    if not folder.is_dir():
        raise UsageError(format_problem(
            str(folder), "", "no such folder of study files", None,
            f"create it, or pass an existing --studies-dir (or set {STUDIES_DIR_ENV})"))
    return folder


def list_study_files(folder: Path) -> list[Path]:
    """The study files in `folder`, sorted by name (none if it does not exist)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in STUDY_SUFFIXES and p.is_file())


def catalog(studies_dir: str | Path | None = None) -> list[StudyFile]:
    """Every study by name, the user's file winning over the installed one, sorted by name."""
    found = {p.stem: StudyFile(p.stem, p, BUNDLED) for p in list_study_files(bundled_dir())}
    mine = user_dir(studies_dir)
    if mine is not None and not _same_folder(mine, bundled_dir()):
        found.update({p.stem: StudyFile(p.stem, p, str(mine)) for p in list_study_files(mine)})
    return [found[name] for name in sorted(found)]


def find_study_file(name_or_path: str, studies_dir: str | Path | None = None) -> Path:
    """`NAME` -> the user's NAME.yaml (or .yml), else the installed one; an existing
    .yaml/.yml path is taken as it is."""
    given = Path(name_or_path)
    if given.suffix in STUDY_SUFFIXES and given.is_file():
        return given
    entries = {entry.name: entry for entry in catalog(studies_dir)}
    if given.stem in entries and (given.suffix in STUDY_SUFFIXES or given.name == given.stem):
        return entries[given.stem].path
    raise _not_found(name_or_path, given.stem, list(entries), user_dir(studies_dir))


def _not_found(asked: str, stem: str, names: list[str], mine: Path | None) -> UsageError:
    where = str(mine) if mine is not None else "studies"
    fix = f"{did_you_mean(stem, names)}available studies: {', '.join(names)}"
    if Path(asked).suffix in STUDY_SUFFIXES:
        fix = f"check the path, or {fix}"
    return UsageError(format_problem(where, "", f"no study file `{asked}`", None, fix))


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
