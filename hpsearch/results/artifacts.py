"""The trained models a person takes away: a study's chosen model, or the one the test phase
tested, exported as a file or loaded ready to use (checkpoints.py keeps them).

    model = hpsearch.load_model("final", tag="small")   # nn.Module, eval mode
    model.hpsearch_config                               # its TrainConfig
    hpsearch export --study final --tag small --out model.pt
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from hpsearch import records
from hpsearch.checkpoints import artifact_path, load
from hpsearch.errors import UsageError
from hpsearch.results.frames import open_study
from hpsearch.storage import Storage

WHICH = ("chosen", "tested")


def checkpoint_file(study: str, storage: str | Storage | None = None, *,
                    tag: str | None = None, which: str = "chosen",
                    artifacts: str | os.PathLike | None = None) -> Path:
    """The checkpoint file of study `study`'s chosen trial, or of its tested model (`which`);
    `artifacts`: the store's folder when it moved since the run. One clear error when there
    is none, saying why."""
    if which not in WHICH:
        raise UsageError(f"--which: `{which}` is not one of {', '.join(WHICH)}; fix: pass "
                         "chosen (the phase's choice) or tested (the test phase's model)")
    stored = open_study(study, storage, tag)
    reference = _reference(stored, which)
    path = artifact_path(reference, Path(artifacts) if artifacts else None)
    if not path.exists():
        raise UsageError(
            f"study `{stored.study_name}`: the checkpoint file {path} is missing; fix: pass "
            "--artifacts with the folder the workers kept it in (or rerun the phase)")
    return path


def _reference(stored, which: str) -> dict[str, Any]:
    name = stored.study_name
    if which == "tested":
        result = records.read_test(stored)
        if result is None or not result.checkpoint:
            raise UsageError(f"study `{name}` has no tested model; fix: run `hpsearch test "
                             f"--study {name}` (it trains and keeps one)")
        return result.checkpoint
    choice = records.read_choice(stored)
    if choice is None:
        raise UsageError(f"study `{name}` has no choice yet: there is no chosen model; fix: "
                         "run the phase first")
    if not choice.checkpoint and choice.skipped:
        raise UsageError(f"study `{name}` was skipped ({choice.reason.removeprefix('skipped: ')})"
                         " and its configuration is not its parent's; fix: export the phase it "
                         "inherits")
    if not choice.checkpoint:
        raise UsageError(
            f"study `{name}`: trial {choice.trial}'s weights were not kept (a study stored "
            f"before checkpoints, or a model its training did not return); fix: rerun it "
            f"under a new --tag, or run `hpsearch test --study {name}` for a tested model")
    return choice.checkpoint


def export_model(study: str, out: str | os.PathLike, storage: str | Storage | None = None, *,
                 tag: str | None = None, which: str = "chosen",
                 artifacts: str | os.PathLike | None = None) -> Path:
    """Copy the checkpoint to `out`: a torch file with the weights, optimizer and scheduler
    state, the resolved configuration and what rebuilds the model (`load_model` reads it)."""
    source = checkpoint_file(study, storage, tag=tag, which=which, artifacts=artifacts)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def load_model(study: str | os.PathLike, storage: str | Storage | None = None, *,
               tag: str | None = None, which: str = "chosen",
               artifacts: str | os.PathLike | None = None, device: str = "cpu"):
    """Study `study`'s chosen (or tested) model, or an exported file's: an `nn.Module` in eval
    mode with the checkpoint's weights, its `TrainConfig` as `.hpsearch_config` and the whole
    checkpoint (optimizer and scheduler state included) as `.hpsearch_checkpoint`."""
    path = Path(study)
    if not (path.suffix == ".pt" and path.exists()):
        path = checkpoint_file(str(study), storage, tag=tag, which=which, artifacts=artifacts)
    content = load(path, map_location=device)
    model = _rebuild(content)
    model.load_state_dict(content["model_state"])
    model.to(device).eval()
    model.hpsearch_checkpoint = content
    return model


def _rebuild(content: dict[str, Any]):
    """The model the checkpoint's configuration builds, as the trial built it."""
    from hpsearch.config import resolve_config
    from hpsearch.train.models import build_model
    from hpsearch.train.trainers import LIGHTNING, trainer_of

    config = resolve_config(("checkpoint", content["config"]))
    shape, classes = tuple(content["input_shape"]), int(content["num_classes"])
    if trainer_of(config) == LIGHTNING:
        from hpsearch.train.lightning import build_module
        from hpsearch.train.splits import DataSplits

        model = build_module(config, DataSplits(None, None, None, classes, shape))
    else:
        model = build_model(config, shape, classes)
    model.hpsearch_config = config
    return model
