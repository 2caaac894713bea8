"""What reproduces a trial besides its configuration: versions, git commit, seed, device.

PROTOCOL.md: "version model, code and configuration" [004]. The versions and the commit are
read once per process (a `git` call costs milliseconds; a trial is stored with them all).
"""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata

from hpsearch.config import TrainConfig
from hpsearch.records import Reproduction

PACKAGES = ("hpsearch", "torch", "optuna")
GIT_TIMEOUT_S = 5  # a hung git (a network file system) must not hold a trial up


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """hpsearch's, torch's, Optuna's and Python's versions."""
    found = {name: _version(name) for name in PACKAGES}
    return {**found, "python": platform.python_version()}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """(commit, uncommitted changes?) of the working directory's repository, or (None, None)
    outside one (or without git)."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    changes = _git("status", "--porcelain", "--untracked-files=no")
    return commit, None if changes is None else bool(changes)


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def reproduction(config: TrainConfig, device) -> Reproduction:
    """The record a trial stores besides its config: its seed, device, versions and commit."""
    commit, dirty = git_state()
    return Reproduction(seed=config.seed, device=str(device), versions=versions(),
                        git_commit=commit, git_dirty=dirty)
