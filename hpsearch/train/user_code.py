"""Calling the user's code: an exception raised there becomes one line that names the
user's file and line, not a traceback through hpsearch, torch and click.

`--debug` (or HPSEARCH_DEBUG=1) shows the whole traceback: the original exception is kept as
the `__cause__` of the `UserCodeError`.
"""

from __future__ import annotations

import sysconfig
import traceback
from pathlib import Path
from typing import Any, Callable

from hpsearch import interrupt
from hpsearch.errors import UserCodeError

# Frames in these folders are not the user's: hpsearch itself, the standard library and
# installed packages (torch, lightning...). The innermost remaining frame is where it broke.
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_NOT_USER = tuple(sorted(  # the deepest first: site-packages before the lib/ around it
    (str(Path(p).resolve()) for p in {
        str(_PACKAGE_DIR),
        *(sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")),
    }), key=len, reverse=True))


def call_user(what: str, function: Callable, *args: Any, **kwargs: Any) -> Any:
    """`function(*args, **kwargs)`; an exception it raises becomes a `UserCodeError` saying
    `what` failed (e.g. "model factory `my_nets:build_net`"), where, and why."""
    try:
        return function(*args, **kwargs)
    except (UserCodeError, interrupt.StopRequested):
        raise
    except Exception as exc:
        raise user_error(what, exc) from exc


def user_error(what: str, exc: BaseException) -> UserCodeError:
    """The one-line error for `exc`, raised in the user's code while doing `what`."""
    return UserCodeError(f"{what} raised {describe(exc)}; fix: correct the code there "
                         "(rerun with --debug for the whole traceback)", site=crash_site(exc))


def describe(exc: BaseException) -> str:
    """`ValueError: bad width (at my_nets.py:12, in build_net)`: type, message, user frame."""
    message = " ".join(str(exc).split())
    site = user_site(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return f"{text} (at {site})" if site else text


def crash_site(exc: BaseException) -> str:
    """Where `exc` came from, as a key: a failure at the same site again is the same bug."""
    return f"{type(exc).__name__} at {user_site(exc) or _last_site(exc)}"


def user_site(exc: BaseException) -> str:
    """`my_nets.py:12, in build_net`: the innermost frame of the user's code, or ''."""
    frames = [f for f in _frames(exc) if _is_user_file(f.filename)]
    return _site(frames[-1]) if frames else ""


def _last_site(exc: BaseException) -> str:
    frames = _frames(exc)
    return _site(frames[-1]) if frames else "?"


def _frames(exc: BaseException) -> list[traceback.FrameSummary]:
    return list(traceback.extract_tb(exc.__traceback__))


def _is_user_file(filename: str) -> bool:
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return False
    resolved = str(Path(filename).resolve())
    return not resolved.startswith(_NOT_USER)


def _site(frame: traceback.FrameSummary) -> str:
    """`my_nets.py:12, in build_net`: relative to the working directory, or to the folder of
    installed packages (`torch/nn/modules/linear.py:134`) when no frame is the user's."""
    path = Path(frame.filename).resolve()
    for root in (Path.cwd().resolve(), *map(Path, _NOT_USER)):
        if path.is_relative_to(root):
            path = path.relative_to(root)
            break
    return f"{path}:{frame.lineno}, in {frame.name}"
