"""The test phase: the chosen configuration trained once more and evaluated once on the
untouched test split (PROTOCOL.md phase 5: use the test set once, at the very end [000])."""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from hpsearch.config import resolve_config
from hpsearch.errors import UsageError
from hpsearch.protocol.chain import ATTR_SELECTION
from hpsearch.results import load_study
from hpsearch.train import evaluate, fit, load_data, resolve_device

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
            f"study `{name}` was already tested on {done['when']} (test accuracy "
            f"{done['test_acc']:.4f}); the test set is used once [000]; fix: pass --force to "
            "evaluate again anyway"
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
    if data.test is None:
        raise UsageError(
            f"study `{name}`: data set `{config.dataset}` has no test split; fix: return a "
            "`test` split from the data factory"
        )
    model, history = fit(config, data, device)
    test_loss, test_acc = evaluate(model, data.test, config, device)
    return {
        "test_loss": test_loss,
        "test_acc": test_acc,
        "trial": choice.get("trial"),
        "val_acc": history[-1]["val_acc"] if history else None,
        "epochs": len(history),
        "config": config.to_dict(),
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
