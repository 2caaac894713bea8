"""Named user factories, what user code declares about itself, and `pkg.mod:attr` import paths.

A study file names a model or data set by a string. Besides the built-ins, that string may be
a name registered with `@hpsearch.model("tiny")` / `@hpsearch.dataset("toy")` in code the
process imported, or an import path `"pkg.module:function"` loaded on demand. Losses,
optimizers and fit hooks are named by import path only.

Import paths resolve like pytest's and Hydra's: from the study file's folder and the working
directory (added to `sys.path`, first), then from installed packages. A console script, unlike
`python -m`, does not put the working directory on the path by itself.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Callable, Iterable, Literal

from hpsearch.config import is_setting, unknown_setting_error
from hpsearch.errors import ConfigError

Kind = Literal["model", "dataset"]

_REGISTRY: dict[str, dict[str, Callable]] = {"model": {}, "dataset": {}}

# Names the training code builds itself; listed in error messages, never shadowed.
BUILTINS: dict[str, tuple[str, ...]] = {
    "model": ("mlp", "cnn", "torchvision:NAME"),
    "dataset": ("digits", "mnist", "fashion_mnist", "cifar10"),
}

# Attributes under which user code declares itself (set by `declare`, or by hand):
# its architecture knobs, a search space in study-file grammar over its keyword arguments,
# searched by the protocol's architecture phase...
SPACE_ATTRIBUTE = "search_space"
# ...and the standard settings it reads from `config` (dropout, norm, lr...): only those are
# searched for it (train/contract.py).
HONOURS_ATTRIBUTE = "honours"

# Folders added to sys.path for import paths: study files' folders, in the order seen.
_IMPORT_ROOTS: list[Path] = []


def declare(space: dict | None = None, honours: Iterable[str] = ()) -> Callable:
    """Declare what a model factory, LightningModule or fit hook takes, without registering it.

        @hpsearch.declare(space={"hidden": {"type": "int", "low": 16, "high": 256}},
                          honours=["dropout"])
        def build_net(config, input_shape, num_classes, hidden=64): ...

    `space`: its own knobs (names of its keyword arguments); `honours`: the settings it reads
    from `config`. The same as setting `fn.search_space` and `fn.honours` by hand.
    """
    names = _setting_names(honours)

    def decorator(target: Callable) -> Callable:
        if space is not None:
            setattr(target, SPACE_ATTRIBUTE, space)
        if names:
            setattr(target, HONOURS_ATTRIBUTE, names)
        return target

    return decorator


def model(
    name: str, space: dict | None = None, honours: Iterable[str] = ()
) -> Callable[[Callable], Callable]:
    """Register a model factory `fn(config, input_shape, num_classes, **model_args)` as `name`.

    `space` declares the factory's own architecture knobs (study-file grammar, names of its
    keyword arguments), e.g. `{"hidden": {"type": "int", "low": 16, "high": 256}}`;
    `honours` the standard settings it reads from `config`, e.g. `["dropout"]`.
    """
    register = _register("model", name)
    declaration = declare(space, honours)
    return lambda fn: register(declaration(fn))


def declared_space(target: Callable) -> dict | None:
    """The architecture knobs a model factory (or class) declares, if any."""
    return getattr(target, SPACE_ATTRIBUTE, None)


def declared_honours(target: Callable) -> tuple[str, ...]:
    """The settings a factory, class or hook declares it reads from `config`."""
    return tuple(getattr(target, HONOURS_ATTRIBUTE, ()) or ())


def dataset(name: str) -> Callable[[Callable], Callable]:
    """Register a data factory `fn(config, **dataset_args)` as `name`."""
    return _register("dataset", name)


def registered(kind: Kind) -> list[str]:
    """The names registered so far for `kind`, sorted."""
    return sorted(_REGISTRY[kind])


def _setting_names(honours: Iterable[str]) -> tuple[str, ...]:
    names = (honours,) if isinstance(honours, str) else tuple(honours)
    for setting in names:
        if not is_setting(setting):
            raise unknown_setting_error(setting, "honours")
    return names


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


def add_import_root(folder: str | Path) -> None:
    """Resolve import paths from `folder` too (a study file's folder), before installed code."""
    path = Path(folder).resolve()
    if path not in _IMPORT_ROOTS:
        _IMPORT_ROOTS.append(path)


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
    factory = load_import_path(spec, f"{kind} factory", where)
    _check_call(factory, kind, spec, where)
    return factory


# How each kind of factory is called (besides its `*_args` keywords).
_CALLS: dict[str, tuple[str, ...]] = {
    "model": ("config", "input_shape", "num_classes"),
    "dataset": ("config",),
}


def _check_call(factory: Callable, kind: str, spec: str, where: str) -> None:
    """A function that cannot take a factory's arguments (`os:system`) is refused before it
    is called: an import path runs the user's code, so it must at least be a factory. A
    class is built its own way (an nn.Module, a LightningModule, a data module)."""
    arguments = _CALLS.get(kind)
    if arguments is None or isinstance(factory, type):
        return
    try:
        inspect.signature(factory).bind(*arguments)
        return
    except (TypeError, ValueError) as err:  # ValueError: a builtin without a signature
        problem = str(err) or "no signature"
    call = f"{', '.join(arguments)}, **{kind}_args"
    raise ConfigError(
        f"{where}: {kind} factory `{spec}` is not a factory ({problem}); fix: point to a "
        f"function called as fn({call}) that returns the {kind}, or to a class"
    )


def load_import_path(spec: str, noun: str, where: str) -> Callable:
    """The callable `"pkg.mod:attr"` names (a function or a class); `noun` ("loss", "fit
    hook"...) and `where` name it in the one-line ConfigError of every failure."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"{where}: {noun} `{spec}` is not a valid import path; "
            f"fix: write it as package.module:function"
        )
    target = _MISSING
    module = _import(module_name, spec, noun, where)
    for part in attr.split("."):  # `pkg.mod:Outer.method` reaches nested attributes
        target = getattr(module if target is _MISSING else target, part, _MISSING)
        if target is _MISSING:
            raise ConfigError(
                f"{where}: {noun} `{spec}`: module `{module_name}` has no attribute `{attr}`; "
                f"fix: define `{attr}` in {module_name} or correct the name after the colon"
            )
    if not callable(target):
        raise ConfigError(
            f"{where}: {noun} `{spec}`: `{attr}` is not callable "
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


def _import(module_name: str, spec: str, noun: str, where: str):
    _use_import_roots()
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing `module_name` (or a parent package) is "not found"; a module that
        # exists but imports something missing is a failure inside the user's module.
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            searched = ", ".join(str(p) for p in _searched_roots())
            raise ConfigError(
                f"{where}: {noun} `{spec}`: module `{module_name}` not found (looked in "
                f"{searched} and the installed packages); fix: put {module_name} there, "
                f"install it, or correct the path before the colon"
            ) from None
        raise _import_failed(exc, module_name, spec, noun, where) from exc
    except Exception as exc:  # SyntaxError, an error raised at import time...
        raise _import_failed(exc, module_name, spec, noun, where) from exc


def _searched_roots() -> list[Path]:
    """Study files' folders, then the working directory: each once."""
    return list(dict.fromkeys([*_IMPORT_ROOTS, Path.cwd().resolve()]))


def _use_import_roots() -> None:
    """Put the roots first on sys.path (as pytest's rootdir insertion does), each once."""
    for root in reversed(_searched_roots()):
        text = str(root)
        if text not in sys.path:
            sys.path.insert(0, text)
            importlib.invalidate_caches()


def _import_failed(exc: Exception, module_name: str, spec: str, noun: str, where: str):
    from hpsearch.train.user_code import user_site

    detail = " ".join(str(exc).split())
    site = user_site(exc)
    at = f" at {site}" if site else ""
    return ConfigError(
        f"{where}: {noun} `{spec}`: importing `{module_name}` failed "
        f"({type(exc).__name__}: {detail}{at}); fix: correct the error in {module_name}"
    )
