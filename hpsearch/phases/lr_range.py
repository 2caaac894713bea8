"""`hpsearch lr-find`: the LR range test on a study's configuration, recorded on the study.

The range test starts from the configuration the study's trials would start from (its
inherited choice, its base, `--set`), so it answers "which LR for this phase" [004].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from hpsearch import records
from hpsearch.errors import UsageError
from hpsearch.preparation import prepare_study
from hpsearch.protocol.lr_find import lr_find, plot_lr_find
from hpsearch.records import LrRange
from hpsearch.runner import resolve_spec
from hpsearch.storage import Storage
from hpsearch.train import load_data
from hpsearch.train.trainers import HPSEARCH, trainer_of

PLOTS_DIR = Path("storage") / "plots"


@dataclass(frozen=True)
class LrRangeFound:
    """What `hpsearch lr-find` found for a study: the range, why it stopped, the plot."""

    study: str
    range: LrRange
    reason: str  # why the ramp stopped
    steps: int  # batches it trained
    plot: Path
    recorded: bool  # stored on the study, for its LR search to use


def find_for_study(
    study: str,
    *,
    storage: str | Storage | None = None,
    overrides: Mapping[str, Any] | None = None,
    studies_dir: str | Path | None = None,
    plot: str | Path | None = None,
    record: bool = False,
    tag: str | None = None,
) -> LrRangeFound:
    """Run the LR range test for `study`; write the plot; with `record`, store the range."""
    spec = resolve_spec(study, studies_dir)
    prepared = prepare_study(spec, storage, overrides or {}, tag=tag)
    if record:
        _refuse_recording_on_trials(prepared.study, study, tag)
    objective = prepared.objective
    config = objective.config_for({})
    kind = trainer_of(config)
    if kind != HPSEARCH:
        raise UsageError(
            f"lr-find: the LR range test runs hpsearch's own training loop, but the {kind} "
            f"`{config.fit or config.model}` trains itself; fix: search `lr` with a study "
            "instead (e.g. {type: float, low: 1.0e-5, high: 1.0, log: true})"
        )
    result = lr_find(config, load_data(config, objective.device), objective.device)
    name = prepared.study.study_name
    path = plot_lr_find(result, Path(plot) if plot else PLOTS_DIR / f"lr_find_{_safe(name)}.png")
    found = LrRange.from_dict(result.to_dict())
    if record:
        records.write_lr_range(prepared.study, found)
    return LrRangeFound(name, found, result.reason, result.steps, path, record)


def _refuse_recording_on_trials(stored, study: str, tag: str | None) -> None:
    """A recorded range only shapes the trials a study has not run yet: a grid already spent
    on the file's values would ignore it, so recording it there would mislead."""
    ran = len(stored.get_trials(deepcopy=False))
    if not ran:
        return
    fresh = "another --tag" if tag else "--tag NAME"
    raise UsageError(
        f"lr-find --record: study `{stored.study_name}` already has {ran} trial(s) on its "
        f"file's learning rates, so a range recorded now would not be used; fix: record it on "
        f"a new study with {fresh} (then `hpsearch run --study {study} --tag NAME` searches "
        "it), or drop --record to only see the range and the plot"
    )


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
