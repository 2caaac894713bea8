"""hpsearch: Optuna-driven hyperparameter search for PyTorch, one protocol phase per study.

The notebook API: everything the CLI does is one call here.

    import hpsearch
    hpsearch.run_study("lr_adam", trials=3)          # hpsearch run --study lr_adam
    hpsearch.best("lr_adam")                         # hpsearch best --study lr_adam
    hpsearch.trials("lr_adam"); hpsearch.curves("lr_adam")   # pandas DataFrames
    hpsearch.run_protocol(trials_scale=0.5, tag="small")     # hpsearch protocol ... --tag small
    hpsearch.summary(tag="small")                    # one row per phase, in protocol order
    hpsearch.run_test("final", tag="small")          # hpsearch test --study final --tag small
    hpsearch.load_model("final", tag="small")        # the chosen model, ready in eval mode
    hpsearch.lr_find_for_study("lr_adam", record=True)   # hpsearch lr-find --record
    hpsearch.run_workers("optimizer", jobs=4, devices=["cuda:0", "cuda:1"])

Everywhere a study is named, `tag=` and a study file's path are accepted too. Register your
own model or data set by name with the decorators `@hpsearch.model("name")` and
`@hpsearch.dataset("name")`, or name a factory by import path in a study file;
`@hpsearch.declare(space=..., honours=[...])` says which knobs it has and which settings it
reads.

Names are imported when first used: reading results (`best`, `trials`, `summary`) never
imports torch, so a command that only reads answers at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that defines it
_EXPORTS = {
    "TrainConfig": "hpsearch.config",
    "parse_set_options": "hpsearch.config",
    "resolve_config": "hpsearch.config",
    "HpsearchError": "hpsearch.errors",
    "best": "hpsearch.results",
    "curves": "hpsearch.results",
    "open_study": "hpsearch.results",
    "overview": "hpsearch.results",
    "summary": "hpsearch.results",
    "trials": "hpsearch.results",
    "plot_curves": "hpsearch.results",
    "plot_optuna": "hpsearch.results",
    "write_report": "hpsearch.results",
    "load_model": "hpsearch.results.artifacts",
    "export_model": "hpsearch.results.artifacts",
    "lr_find_for_study": "hpsearch.phases.lr_range",
    "run_protocol": "hpsearch.phases.protocol",
    "run_test": "hpsearch.phases.test_set",
    "RunSummary": "hpsearch.runner",
    "run_study": "hpsearch.runner",
    "StudySpec": "hpsearch.spec",
    "load_study_spec": "hpsearch.spec",
    "DataSplits": "hpsearch.train",
    "TensorSplit": "hpsearch.train",
    "dataset": "hpsearch.train",
    "declare": "hpsearch.train",
    "model": "hpsearch.train",
    "run_workers": "hpsearch.workers",
}
_RENAMED = {"lr_find_for_study": "find_for_study"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hpsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), _RENAMED.get(name, name))
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and editors: the same names, imported eagerly
    # ruff: noqa: F401
    from hpsearch.config import TrainConfig, parse_set_options, resolve_config
    from hpsearch.errors import HpsearchError
    from hpsearch.phases.lr_range import find_for_study as lr_find_for_study
    from hpsearch.phases.protocol import run_protocol
    from hpsearch.phases.test_set import run_test
    from hpsearch.results import (
        best,
        curves,
        open_study,
        overview,
        plot_curves,
        plot_optuna,
        summary,
        trials,
        write_report,
    )
    from hpsearch.results.artifacts import export_model, load_model
    from hpsearch.runner import RunSummary, run_study
    from hpsearch.spec import StudySpec, load_study_spec
    from hpsearch.train import DataSplits, TensorSplit, dataset, declare, model
    from hpsearch.workers import run_workers
