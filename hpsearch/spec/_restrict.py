"""Narrowing a search space to the settings a model honours (train/contract.py).

A protocol phase written for every model searches, for a given model, only what reaches it:
the regularization phase drops its `dropout` choice for a model that does not read
`config.dropout`, the optimizer options phase drops `momentum` for a Lightning module that
configures its own optimizer. A parameter inside a branch goes alone; a selector's choice
whose branch loses every parameter goes with it (it would only rerun the baseline), while a
setting's choice (`optimizer: sgd`) stays, since the choice itself is a setting.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from hpsearch.spec._params import ChoiceParam, Param

Keep = Callable[[str], bool]  # setting name -> whether the model honours it


def restrict(params: tuple[Param, ...], keep: Keep) -> tuple[tuple[Param, ...], list[str]]:
    """(the parameters `keep` accepts, narrowed inside; the settings dropped, in order)."""
    kept: list[Param] = []
    dropped: list[str] = []
    for param in params:
        narrowed, lost = _restrict_one(param, keep)
        dropped += [name for name in lost if name not in dropped]
        if narrowed is not None:
            kept.append(narrowed)
    return tuple(kept), dropped


def _restrict_one(param: Param, keep: Keep) -> tuple[Param | None, list[str]]:
    if not isinstance(param, ChoiceParam):
        return (param, []) if keep(param.name) else (None, [param.name])
    if not param.selector and not keep(param.name):
        return None, [param.name]
    branches, choices, dropped = {}, [], []
    for choice in param.choices:
        original = param.branches.get(choice, ())
        branch, lost = restrict(original, keep)
        dropped += [name for name in lost if name not in dropped]
        if param.selector and original and not branch:
            continue  # nothing of this branch reaches the model: the choice would be a no-op
        choices.append(choice)
        if choice in param.branches:
            branches[choice] = branch
    if not choices:
        return None, dropped
    return dataclasses.replace(param, choices=tuple(choices), branches=branches), dropped

