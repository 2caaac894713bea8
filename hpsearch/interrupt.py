"""Stopping a run cleanly: a signal asks, the run stops at its next safe point.

A signal handler that raises `KeyboardInterrupt` at once can land anywhere: inside Optuna's
`tell` (a trial half finished, left RUNNING), or inside a garbage-collector callback, where
Python prints "Exception ignored in ..." and swallows it (the worker then trains on). So the
first SIGINT or SIGTERM only records the request, and the run checks it where stopping is
safe: between training batches and at each reported epoch (inside the objective, where
Optuna fails the trial through its ordinary path), and after each finished trial. A second
signal raises at once, for code that never reaches a safe point (a user's own loop).

Parallel workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group; the
parent alone decides) and stop on the one SIGTERM their parent sends, or when the parent
itself dies.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import signal
import threading

EXIT_INTERRUPTED = 130  # the shell's convention for a run ended by SIGINT
_requested = threading.Event()


class StopRequested(Exception):
    """Raised at a safe point after a stop request. An Exception, not a KeyboardInterrupt:
    Lightning turns a KeyboardInterrupt raised in a callback into `sys.exit(1)`, and passes
    other exceptions on. The objective turns it into a KeyboardInterrupt for Optuna, which
    then marks the trial FAIL and re-raises."""


class Interrupted(KeyboardInterrupt):
    """The run stopped on a signal; what it left in storage, read back from storage."""

    def __init__(self, study: str = "", failed: list[int] | None = None,
                 running: list[int] | None = None):
        super().__init__(study)
        self.study, self.failed, self.running = study, failed or [], running or []

    def line(self) -> str:
        """The one line the CLI prints."""
        failed = f"{_trials(self.failed)} marked FAIL; " if self.failed else ""
        if self.running:
            left = (f"{_trials(self.running)} still RUNNING in storage (the next run fails "
                    "it once its heartbeat is stale)")
        else:
            left = "no trial of this run is left RUNNING"
        where = f" in study `{self.study}`" if self.study else ""
        return f"interrupted{where}; {failed}{left}; fix: rerun the same command to finish the budget"


def install(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
    """Route `signals` to a stop request (a second one interrupts at once)."""
    _requested.clear()
    for signum in signals:
        signal.signal(signum, _on_signal)


def install_in_worker() -> None:
    """A worker process: SIGINT ignored, SIGTERM a stop request, and a stop when the
    parent process dies (its workers must not train on past the budget)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    install((signal.SIGTERM,))
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_stop_when_dead, args=(parent,), daemon=True).start()


def request_stop() -> None:
    _requested.set()


def requested() -> bool:
    return _requested.is_set()


def check() -> None:
    """Raise `StopRequested` here if a stop was asked for (a safe point)."""
    if _requested.is_set():
        raise StopRequested("stop requested")


def _on_signal(signum, frame) -> None:
    if _requested.is_set():
        raise KeyboardInterrupt  # the second signal: stop now, wherever this is
    _requested.set()


def _stop_when_dead(parent) -> None:
    multiprocessing.connection.wait([parent.sentinel])
    _requested.set()


def _trials(numbers: list[int]) -> str:
    """"trial 3" or "trials 3, 5"."""
    numbers = sorted(numbers)
    return ("trial " if len(numbers) == 1 else "trials ") + ", ".join(map(str, numbers))
