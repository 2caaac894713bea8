"""Named domain errors. The CLI turns each into one `error: ...` line and an exit code.

Exit codes follow the issue tracker's contract: 2 for bad input (study files, `--set`,
unknown names, missing data), 1 for failures at run time (storage, training crashes).
"""

from __future__ import annotations

from typing import Any


class HpsearchError(Exception):
    """Base class of every error hpsearch expects and reports without a traceback."""

    exit_code = 1


class UsageError(HpsearchError):
    """The user's input is wrong; nothing was written to storage."""

    exit_code = 2


class SpecError(UsageError):
    """A study file breaks a rule: names the file, the field path, the bad value and the fix."""

    def __init__(self, file: str, field: str, problem: str, value: Any = None, fix: str = ""):
        self.file, self.field, self.problem, self.value, self.fix = file, field, problem, value, fix
        super().__init__(format_problem(file, field, problem, value, fix))


class ConfigError(UsageError):
    """A training setting is unknown or has the wrong type (`--set`, `base`, a factory)."""


class DataError(UsageError):
    """A data set is missing or malformed; the message says which files to put where."""


class StudyMismatchError(UsageError):
    """A stored study was created with other fixed settings than the ones asked for now."""


class StorageError(HpsearchError):
    """The storage cannot be reached or used."""


class TrainingError(HpsearchError):
    """Training failed in a way that is not the user's input (e.g. a model crashed)."""


def format_problem(file: str, field: str, problem: str, value: Any = None, fix: str = "") -> str:
    """One line: `FILE: FIELD: PROBLEM (got VALUE); fix: FIX`."""
    where = ": ".join(part for part in (file, field) if part)
    got = "" if value is None else f" (got {value!r})"
    tail = f"; fix: {fix}" if fix else ""
    return f"{where}: {problem}{got}{tail}"


class UserCodeError(UsageError):
    """The user's own code (a factory, a model, a loss, a fit hook) raised an exception.

    `site` names where (`ValueError at my_nets.py:12, in build_net`): the same site failing
    again is the same bug, so a study stops instead of repeating it.
    """

    def __init__(self, message: str, site: str = ""):
        super().__init__(message)
        self.site = site
