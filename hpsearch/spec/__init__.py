"""Study files: load and validate YAML into typed specs, search spaces, samplers and pruners.

    spec = load_study_spec("studies/optimizer.yaml")
    study = optuna.create_study(sampler=build_sampler(spec), pruner=build_pruner(spec),
                                directions=spec.objective.directions)
    settings = spec.space.suggest(trial)   # inside the objective

A file with `spaces:` (one per model family) or `refine` nodes is narrowed first:
    spec = spec.with_space_for(model)                       # the model family's space
    spec = spec.with_space(spec.space.resolve_refinements(chosen))
"""

from hpsearch.spec._families import MODEL_FAMILIES, MissingSpace
from hpsearch.spec._protocol_fields import (
    ELIMINATION_REASONS,
    PRECONDITIONS,
    SelectionSpec,
)
from hpsearch.spec._sections import ObjectiveSpec
from hpsearch.spec.catalog import StudyFile, catalog, find_study_file, list_study_files
from hpsearch.spec.samplers import PrunerSpec, SamplerSpec, build_pruner, build_sampler
from hpsearch.spec.space import Refinement, SearchSpace, parse_space
from hpsearch.spec.study_file import StudySpec, load_study_spec, parse_study_spec

__all__ = [
    "ELIMINATION_REASONS",
    "MODEL_FAMILIES",
    "MissingSpace",
    "PRECONDITIONS",
    "ObjectiveSpec",
    "PrunerSpec",
    "Refinement",
    "SamplerSpec",
    "SearchSpace",
    "SelectionSpec",
    "StudyFile",
    "StudySpec",
    "build_pruner",
    "build_sampler",
    "catalog",
    "find_study_file",
    "list_study_files",
    "load_study_spec",
    "parse_space",
    "parse_study_spec",
]
