"""Study files: load and validate YAML into typed specs, search spaces, samplers and pruners.

    spec = load_study_spec("studies/optimizer.yaml")
    study = optuna.create_study(sampler=build_sampler(spec), pruner=build_pruner(spec),
                                directions=spec.objective.directions)
    settings = spec.space.suggest(trial)   # inside the objective
"""

from hpsearch.spec._sections import ObjectiveSpec
from hpsearch.spec.samplers import PrunerSpec, SamplerSpec, build_pruner, build_sampler
from hpsearch.spec.space import SearchSpace, parse_space
from hpsearch.spec.study_file import (
    StudySpec,
    find_study_file,
    list_study_files,
    load_study_spec,
    parse_study_spec,
)

__all__ = [
    "ObjectiveSpec",
    "PrunerSpec",
    "SamplerSpec",
    "SearchSpace",
    "StudySpec",
    "build_pruner",
    "build_sampler",
    "find_study_file",
    "list_study_files",
    "load_study_spec",
    "parse_space",
    "parse_study_spec",
]
