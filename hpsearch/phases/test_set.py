"""The test phase: the chosen configuration trained once more and evaluated once on the
untouched test split (PROTOCOL.md phase 5: use the test set once, at the very end [000])."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import torch

from hpsearch import notes, records
from hpsearch.checkpoints import artifact_dir, checkpoint_content, save, upload
from hpsearch.config import resolve_config
from hpsearch.errors import UsageError
from hpsearch.records import PhaseChoice, TestResult
from hpsearch.storage import Storage, connect, load_study, study_name
from hpsearch.train import DataSplits, fit_and_test, load_data, resolve_device
from hpsearch.train.loop import Trained


def run_test(
    study: str,
    storage: str | Storage | None = None,
    *,
    force: bool = False,
    overrides: Mapping[str, Any] | None = None,
    tag: str | None = None,
    artifacts: str | Path | None = None,
) -> TestResult:
    """Train study `study`'s chosen configuration, evaluate it on the test split, store it
    with the tested model's checkpoint (in `artifacts`: checkpoints.artifact_dir).

    `overrides` may only change where it runs (`device`, `data_dir`). A second call is
    refused unless `force`: looking at the test set twice turns it into a validation set.
    """
    name = study_name(study, tag)
    stored = load_study(connect(storage, create=False) or storage, name)
    done = records.read_test(stored)
    if done and not force:
        raise UsageError(
            f"study `{name}` was already tested on {done.when} ({done.text()}); the "
            "test set is used once [000]; fix: pass --force to evaluate again anyway"
        )
    choice = records.read_choice(stored)
    if not choice:
        raise UsageError(
            f"study `{name}` has no chosen trial to test; fix: run `hpsearch run --study "
            f"{name}`"
        )
    result = _train_and_test(choice, dict(overrides or {}), name,
                             artifact_dir(storage, artifacts), stored)
    records.write_test(stored, result)
    notes.annotate(stored)
    return result


def _train_and_test(choice: PhaseChoice, overrides: dict, name: str, directory: Path,
                    stored) -> TestResult:
    config = resolve_config(("chosen configuration", choice.config), ("--set", overrides))
    device = resolve_device(config.device)
    data = load_data(config, device)
    if isinstance(data, DataSplits) and data.test is None:
        raise UsageError(
            f"study `{name}`: data set `{config.dataset}` has no test split; fix: return a "
            "`test` split from the data factory"
        )
    trained: list[Trained] = []
    model, result = fit_and_test(config, data, device, on_trained=trained.append)
    return TestResult(
        test_loss=result["loss"],
        test_acc=result["acc"],  # None for a task without accuracy (regression)
        trial=choice.trial,
        epochs=result["epochs"],
        config=config.to_dict(),
        when=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        checkpoint=_keep_tested(directory, stored, model, trained, config, data),
    )


def _keep_tested(directory: Path, stored, model, trained: list, config, data) -> dict | None:
    """The tested model (its weights as tested), uploaded as the study's artifact."""
    if not isinstance(model, torch.nn.Module):
        return None  # a fit hook that returned no model
    run = trained[0] if trained else Trained(model, None, None, 0)
    if not run.input_shape and isinstance(data, DataSplits):
        run = replace(run, input_shape=tuple(data.input_shape), num_classes=data.num_classes)
    content = checkpoint_content(run, config.to_dict(), stored.study_name, None,
                                 weights="final")
    path = save(content, directory / "tested" / f"{stored.study_name}-tested.pt")
    reference = upload(directory, stored, path, None)
    path.unlink(missing_ok=True)
    return reference
