"""What `hpsearch protocol` checks on every phase before it runs the first one.

A request that some phase will refuse must stop before any phase stores a trial: otherwise
the phases before it are stored under the new settings and block the next default run.
Two such refusals are known up front: `--set` on a setting a phase searches, and a phase
already stored with other fixed settings than the ones its file and `--set` give now.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from hpsearch import records
from hpsearch.adapt import refuse_searched, searched_for, without_pinned_augment
from hpsearch.config import RUNTIME_ONLY_KEYS, resolve_config
from hpsearch.errors import StudyMismatchError
from hpsearch.spec import StudySpec
from hpsearch.storage import Storage, connect, find_study, study_name


def refuse_searched_overrides(specs: Sequence[StudySpec], overrides: Mapping[str, Any]) -> None:
    """`--set lr=...` would fight the LR phases: refuse it before any phase runs. The model
    is the one `--set` names, else the phase's base (the protocol's LR phases set the MLP)."""
    for spec in specs:
        model = overrides.get("model") or spec.base.get("model") or "mlp"
        chosen = searched_for(spec, str(model)) if spec.phase != "test" else None
        if chosen is not None:
            refuse_searched(without_pinned_augment(chosen, overrides), overrides)


def refuse_stored_conflicts(
    specs: Sequence[StudySpec], storage: str | Storage | None, overrides: Mapping[str, Any],
    tag: str | None,
) -> None:
    """Refuse, naming every phase at once, a run whose phase file or `--set` fixes a setting
    to another value than the phase's stored study has (e.g. `--set epochs=5` over phases
    stored at 20 epochs). Only the settings the request itself fixes (the file's base and
    `--set`) are known before the parents run; an inherited setting that changes is still
    refused when its phase starts."""
    backend = connect(storage, create=False)
    if backend is None:
        return
    conflicts = []
    for spec in specs:
        name = study_name(spec.name, tag)
        stored = find_study(backend, name) if spec.phase != "test" else None
        if stored is None:
            continue
        diffs = _differences(records.StudyFacts.of(stored).fixed_settings or {}, spec, overrides)
        if diffs:
            conflicts.append(f"`{name}` ({diffs})")
    if conflicts:
        raise StudyMismatchError(_conflict_message(conflicts, tag))


def _differences(stored: Mapping[str, Any], spec: StudySpec, overrides: Mapping[str, Any]) -> str:
    requested = resolve_config((f"{spec.path}: base", spec.base), ("--set", overrides)).to_dict()
    keys = {k.partition(".")[0] for k in (*spec.base, *overrides)} - RUNTIME_ONLY_KEYS
    if spec.train_longer is not None:  # the phase sets these itself from what it inherits
        keys -= {"epochs", "patience"}
    differing = sorted(k for k in keys if k in stored and stored[k] != requested.get(k))
    return ", ".join(f"{k} stored {stored[k]!r}, now {requested.get(k)!r}" for k in differing)


def _conflict_message(conflicts: list[str], tag: str | None) -> str:
    fix_tag = "another --tag" if tag else "--tag NAME (e.g. --tag quick)"
    return (
        f"stored phases have other fixed settings than this run: {'; '.join(conflicts)}; "
        f"nothing was run; fix: pass {fix_tag} to store this run's phases apart, or rerun "
        "with the stored settings to resume them"
    )
