"""The test phase: the chosen configuration trained once more and evaluated once on the
untouched test split (PROTOCOL.md phase 5: use the test set once, at the very end [000])."""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from hpsearch.config import resolve_config
from hpsearch.errors import UsageError
from hpsearch.protocol.chain import ATTR_SELECTION
from hpsearch.results import load_study
from hpsearch.train import DataSplits, fit_and_test, load_data, resolve_device

ATTR_TEST = "test"  # study attribute: the one test evaluation of the study's choice


def run_test(
    name: str,
    storage: str | None = None,
    *,
    force: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train study `name`'s chosen configuration, evaluate it on the test split, store it.

    `overrides` may only change where it runs (`device`, `data_dir`). A second call is
    refused unless `force`: looking at the test set twice turns it into a validation set.
    """
    study = load_study(name, storage)
    done = study.user_attrs.get(ATTR_TEST)
    if done and not force:
        raise UsageError(
            f"study `{name}` was already tested on {done['when']} ({result_text(done)}); the "
            "test set is used once [000]; fix: pass --force to evaluate again anyway"
        )
    choice = study.user_attrs.get(ATTR_SELECTION)
    if not choice:
        raise UsageError(
            f"study `{name}` has no chosen trial to test; fix: run `hpsearch run --study {name}`"
        )
    result = _train_and_test(choice, dict(overrides or {}), name)
    study.set_user_attr(ATTR_TEST, result)
    return result


def _train_and_test(choice: Mapping[str, Any], overrides: dict, name: str) -> dict[str, Any]:
    config = resolve_config(("chosen configuration", choice["config"]), ("--set", overrides))
    device = resolve_device(config.device)
    data = load_data(config, device)
    if isinstance(data, DataSplits) and data.test is None:
        raise UsageError(
            f"study `{name}`: data set `{config.dataset}` has no test split; fix: return a "
            "`test` split from the data factory"
        )
    _, result = fit_and_test(config, data, device)  # whoever trains: hpsearch, a hook, Lightning
    return {
        "test_loss": result["loss"],
        "test_acc": result["acc"],  # None for a task without accuracy (regression)
        "trial": choice.get("trial"),
        "epochs": result["epochs"],
        "config": config.to_dict(),
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def result_text(result: Mapping[str, Any]) -> str:
    """`test accuracy 0.9516, test loss 0.2301`, or the loss alone for a task without
    accuracy (`test loss` None: the hook or module reported none)."""
    parts = []
    if result.get("test_acc") is not None:
        parts.append(f"test accuracy {result['test_acc']:.4f}")
    loss = result.get("test_loss")
    parts.append("test loss " + ("not reported" if loss is None else f"{loss:.4g}"))
    return ", ".join(parts)
