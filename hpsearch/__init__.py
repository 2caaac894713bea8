"""hpsearch: Optuna-driven hyperparameter search for PyTorch, one protocol phase per study.

The notebook API: everything the CLI does is one call here.

    import hpsearch
    hpsearch.run_study("lr_adam", trials=3)          # hpsearch run --study lr_adam
    hpsearch.best("lr_adam")                         # hpsearch best --study lr_adam
    hpsearch.trials("lr_adam"); hpsearch.curves("lr_adam")   # pandas DataFrames
    hpsearch.run_protocol(trials_scale=0.5)          # hpsearch protocol --trials-scale 0.5
    hpsearch.run_test("final")                       # hpsearch test --study final
    hpsearch.lr_find_for_study("lr_adam", record=True)   # hpsearch lr-find --record
    hpsearch.run_workers("optimizer", jobs=4, devices=["cuda:0", "cuda:1"])

Register your own model or data set by name with the decorators `@hpsearch.model("name")`
and `@hpsearch.dataset("name")`, or name a factory by import path in a study file;
`@hpsearch.declare(space=..., honours=[...])` says which knobs it has and which settings it
reads.
"""

from hpsearch.config import TrainConfig, parse_set_options, resolve_config
from hpsearch.errors import HpsearchError
from hpsearch.results import best, curves, load_study, overview, trials
from hpsearch.protocol.lr_find_study import find_for_study as lr_find_for_study
from hpsearch.protocol.run import run_protocol
from hpsearch.protocol.test_phase import run_test
from hpsearch.runner import RunSummary, run_study
from hpsearch.spec import StudySpec, load_study_spec
from hpsearch.train import DataSplits, TensorSplit, dataset, declare, model
from hpsearch.workers import run_workers

__all__ = [
    "DataSplits",
    "HpsearchError",
    "RunSummary",
    "StudySpec",
    "TensorSplit",
    "TrainConfig",
    "best",
    "curves",
    "dataset",
    "declare",
    "load_study",
    "load_study_spec",
    "lr_find_for_study",
    "model",
    "overview",
    "parse_set_options",
    "resolve_config",
    "run_protocol",
    "run_study",
    "run_test",
    "run_workers",
    "trials",
]
