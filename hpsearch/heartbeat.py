"""One heartbeat thread a process, beating for every trial the process runs.

Optuna starts a thread for each trial and joins it when the trial ends (`_run_trial`), and
that thread writes the trial's first beat while the trial starts. Each start and join is a
hand-over between threads: with a training process on every core (`--jobs N` on N cores)
each waits for a time slice, 9.4 ms a trial on a 2-core machine against 0.3-0.5 ms for the
beat's write itself (README, "Storage": the trial overhead). Here one daemon thread of the
process beats for every trial the process runs: the first beat as the trial starts, then one
at least every heartbeat interval; a trial's start and end only add it to the thread's list
and take it off.

The guarantees are Optuna's: a trial's first beat is written as it starts, by another thread
(so the trial of a worker that dies is found stale; `runner.FIRST_HEARTBEAT_S` waits for a
beat on its way), and a newer one comes at least every interval while it runs. A beat that
fails (the database away longer than the storage retries) is tried again an interval later,
where Optuna's thread ended with a traceback; the trial's own writes report the failure. A
beat may land just after its trial ended: the stale check reads RUNNING trials only.

`install()` hands Optuna this heartbeat in place of its own for the storages hpsearch opens;
any other storage (a user's own, in the same notebook) keeps Optuna's thread.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

import optuna.study._optimize as _optuna_optimize
from optuna.storages._heartbeat import (
    BaseHeartbeat,
    BaseHeartbeatThread,
    get_heartbeat_thread,
    is_heartbeat_enabled,
)


class _Beater:
    """The process's beating thread and the trials it beats for: (id of the storage, trial
    id) -> (the next beat's due time in monotonic seconds, the storage)."""

    def __init__(self) -> None:
        self._due: dict[tuple[int, int], tuple[float, BaseHeartbeat]] = {}
        self._wake = threading.Condition()
        self._pid: int | None = None  # the thread does not survive a fork: one per process

    def add(self, storage: BaseHeartbeat, trial_id: int, due: float) -> None:
        with self._wake:
            if self._pid != os.getpid():  # the first trial, or the first since a fork
                self._pid = os.getpid()
                self._due.clear()  # a forked parent's trials are its own to beat for
                threading.Thread(target=self._run, name="hpsearch-heartbeat",
                                 daemon=True).start()
            self._due[(id(storage), trial_id)] = (due, storage)
            self._wake.notify()

    def discard(self, storage: BaseHeartbeat, trial_id: int) -> None:
        with self._wake:
            self._due.pop((id(storage), trial_id), None)

    def _run(self) -> None:
        while True:
            for key, storage in self._wait_for_due():
                _beat(storage, trial_id=key[1])  # one that fails: tried again an interval later
                with self._wake:
                    if key in self._due:  # not ended meanwhile
                        interval = storage.get_heartbeat_interval()  # set: Optuna checked it
                        self._due[key] = (time.monotonic() + interval, storage)

    def _wait_for_due(self) -> list[tuple[tuple[int, int], BaseHeartbeat]]:
        with self._wake:
            while True:
                now = time.monotonic()
                due = [(key, storage) for key, (when, storage) in self._due.items()
                       if when <= now]
                if due:
                    return due
                soonest = min((when for when, _ in self._due.values()), default=None)
                self._wake.wait(None if soonest is None else soonest - now)


_BEATER = _Beater()


def _beat(storage: BaseHeartbeat, trial_id: int) -> None:
    try:
        storage.record_heartbeat(trial_id)
    except Exception:  # noqa: BLE001 - tried again next interval; the trial's writes report it
        pass


class SharedHeartbeat(BaseHeartbeatThread):
    """What Optuna enters around a trial: its beats, the first at once, by the process's
    thread."""

    def __init__(self, trial_id: int, storage: BaseHeartbeat) -> None:
        self._trial_id = trial_id
        self._storage = storage

    def start(self) -> None:
        _BEATER.add(self._storage, self._trial_id, due=time.monotonic())  # its first beat now

    def join(self) -> None:
        _BEATER.discard(self._storage, self._trial_id)


def _heartbeat_for(optuna_default: Callable[..., BaseHeartbeatThread],
                   owned: Callable[[Any], bool]) -> Callable[..., BaseHeartbeatThread]:
    def heartbeat(trial_id: int, storage: Any) -> BaseHeartbeatThread:
        if is_heartbeat_enabled(storage) and owned(storage):
            return SharedHeartbeat(trial_id, storage)
        return optuna_default(trial_id, storage)
    return heartbeat


def install(owned: Callable[[Any], bool]) -> None:
    """Optuna's trials on the storages `owned` says are hpsearch's beat through this module.
    Once per process; a later Optuna that no longer looks the thread up there keeps its own."""
    if getattr(_optuna_optimize, "get_heartbeat_thread", None) is get_heartbeat_thread:
        _optuna_optimize.get_heartbeat_thread = _heartbeat_for(get_heartbeat_thread, owned)
