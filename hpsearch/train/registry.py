"""Named user factories for models and data sets, and the lookup of `pkg.mod:fn` import paths.

A study file names a model or data set by a string. Besides the built-ins, that string may be
a name registered with `@hpsearch.model("tiny")` / `@hpsearch.dataset("toy")` in code the
process imported, or an import path `"pkg.module:function"` loaded on demand.
"""

from __future__ import annotations

import importlib
from typing import Callable, Literal

from hpsearch.errors import ConfigError

Kind = Literal["model", "dataset"]

_REGISTRY: dict[str, dict[str, Callable]] = {"model": {}, "dataset": {}}

# Names the training code builds itself; listed in error messages, never shadowed.
BUILTINS: dict[str, tuple[str, ...]] = {
    "model": ("mlp", "cnn", "torchvision:NAME"),
    "dataset": ("digits", "mnist", "fashion_mnist", "cifar10"),
}


# Attribute under which a model factory declares its architecture knobs: a search space in
# study-file grammar over its keyword arguments, used by the protocol's architecture phase.
SPACE_ATTRIBUTE = "search_space"


def model(name: str, space: dict | None = None) -> Callable[[Callable], Callable]:
    """Register a model factory `fn(config, input_shape, num_classes, **model_args)` as `name`.

    `space` declares the factory's own architecture knobs (study-file grammar, names of its
    keyword arguments), e.g. `{"hidden": {"type": "int", "low": 16, "high": 256}}`.
    """
    register = _register("model", name)

    def decorator(fn: Callable) -> Callable:
        if space is not None:
            setattr(fn, SPACE_ATTRIBUTE, space)
        return register(fn)

    return decorator


def declared_space(factory: Callable) -> dict | None:
    """The architecture knobs a model factory declares, if any."""
    return getattr(factory, SPACE_ATTRIBUTE, None)


def dataset(name: str) -> Callable[[Callable], Callable]:
    """Register a data factory `fn(config, **dataset_args)` as `name`."""
    return _register("dataset", name)


def registered(kind: Kind) -> list[str]:
    """The names registered so far for `kind`, sorted."""
    return sorted(_REGISTRY[kind])


def _register(kind: Kind, name: str) -> Callable[[Callable], Callable]:
    if not isinstance(name, str) or not name or ":" in name:
        raise ConfigError(
            f"@hpsearch.{kind}({name!r}): a {kind} name must be a non-empty string without ':'; "
            f"fix: pick a plain name such as \"tiny\""
        )
    if name in BUILTINS[kind]:
        raise ConfigError(
            f"@hpsearch.{kind}({name!r}): `{name}` is a built-in {kind}; fix: pick another name"
        )

    def decorator(fn: Callable) -> Callable:
        # Re-registering replaces the old entry: re-running a notebook cell must not fail.
        _REGISTRY[kind][name] = fn
        return fn

    return decorator


def resolve_factory(spec: str, kind: Kind, where: str) -> Callable:
    """Return the factory a registered name or a `"pkg.mod:attr"` import path points to.

    `where` names the setting in messages (e.g. "studies/x.yaml: base.model"). Every failure is
    a one-line `ConfigError` saying what failed and how to fix it.
    """
    found = _REGISTRY[kind].get(spec)
    if found is not None:
        return found
    if ":" not in spec:
        raise unknown_name_error(spec, kind, where)
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"{where}: {kind} `{spec}` is not a valid import path; "
            f"fix: write it as package.module:function"
        )
    target = getattr(_import(module_name, spec, kind, where), attr, _MISSING)
    if target is _MISSING:
        raise ConfigError(
            f"{where}: {kind} factory `{spec}`: module `{module_name}` has no attribute `{attr}`; "
            f"fix: define `{attr}` in {module_name} or correct the name after the colon"
        )
    if not callable(target):
        raise ConfigError(
            f"{where}: {kind} factory `{spec}`: `{attr}` is not callable "
            f"(got {type(target).__name__}); fix: point to a function or class"
        )
    return target


def unknown_name_error(spec: str, kind: Kind, where: str) -> ConfigError:
    """The one message for a name that is neither built-in, registered nor an import path."""
    known = ", ".join(BUILTINS[kind] + tuple(registered(kind)))
    return ConfigError(
        f"{where}: unknown {kind} `{spec}`; fix: use one of {known}, "
        f"a name registered with @hpsearch.{kind}(...), or an import path package.module:function"
    )


_MISSING = object()


def _import(module_name: str, spec: str, kind: Kind, where: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing `module_name` (or a parent package) is "not found"; a module that
        # exists but imports something missing is a failure inside the user's module.
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(
                f"{where}: {kind} factory `{spec}`: module `{module_name}` not found; "
                f"fix: make it importable (install it or add its folder to PYTHONPATH) "
                f"or correct the path before the colon"
            ) from None
        raise _import_failed(exc, module_name, spec, kind, where) from exc
    except Exception as exc:  # SyntaxError, an error raised at import time...
        raise _import_failed(exc, module_name, spec, kind, where) from exc


def _import_failed(exc: Exception, module_name: str, spec: str, kind: Kind, where: str):
    detail = " ".join(str(exc).split())
    return ConfigError(
        f"{where}: {kind} factory `{spec}`: importing `{module_name}` failed "
        f"({type(exc).__name__}: {detail}); fix: correct the error in {module_name}"
    )
